//go:build linux

// Tests of the TPACKET_V2 ring walk over a fake ring: an anonymous mapping
// laid out and filled the way the kernel fills a real one, so every status
// bit and the wrap-around can be set up exactly, without root or a kernel.
package afpacket

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/ffi"
	"golang.org/x/sys/unix"
)

// fakeV2 is a port whose ring is a mapping of slots FrameSize bytes each.
type fakeV2 struct {
	p *Port
}

func newFakeV2(t *testing.T, slots int) *fakeV2 {
	t.Helper()
	o := Options{RxRing: RxRingV2, FrameSize: 2048, BlockSize: 4096, BlockCount: slots / 2}.withDefaults("fake")
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	ring, err := unix.Mmap(-1, 0, o.FrameSize*slots, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(ring) })
	return &fakeV2{p: &Port{name: "fake", opts: o, fd: -1, netns: -1, ring: ring, slots: slots}}
}

// kernelMac is where the kernel puts an Ethernet frame in a V2 slot of a
// SOCK_RAW socket: TPACKET_ALIGN(TPACKET2_HDRLEN + 16) minus the 14-byte
// header.
const kernelMac = 66

// put fills slot i as the kernel would: frame at kernelMac, snaplen cut to
// the slot, VLAN tag apart when tci != 0, the status word last.
func (f *fakeV2) put(i int, frame []byte, status uint32, tci, tpid uint16) {
	fs := f.p.opts.FrameSize
	s := f.p.ring[i*fs : (i+1)*fs]
	snap := min(len(frame), fs-kernelMac)
	copy(s[kernelMac:], frame[:snap])
	ne.PutUint32(s[ffi.V2LenOff:], uint32(len(frame)))
	ne.PutUint32(s[ffi.V2SnaplenOff:], uint32(snap))
	ne.PutUint16(s[ffi.V2MacOff:], kernelMac)
	ne.PutUint16(s[ffi.V2VlanTCIOff:], tci)
	ne.PutUint16(s[ffi.V2VlanTPIDOff:], tpid)
	if tci != 0 {
		status |= unix.TP_STATUS_VLAN_VALID
		if tpid != 0 {
			status |= unix.TP_STATUS_VLAN_TPID_VALID
		}
	}
	ffi.StoreUint32(f.p.ring, i*fs+ffi.V2StatusOff, status|unix.TP_STATUS_USER)
}

func (f *fakeV2) status(i int) uint32 {
	return ffi.LoadUint32(f.p.ring, i*f.p.opts.FrameSize+ffi.V2StatusOff)
}

func rxAll(t *testing.T, p *Port, pool *dataplane.Pool, max int) [][]byte {
	t.Helper()
	pkts := make([]*dataplane.Packet, max)
	n, err := p.RxBurst(pool, pkts)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for _, pk := range pkts[:n] {
		got = append(got, bytes.Clone(pk.Head))
		pk.Free()
	}
	return got
}

// TestV2RingWalk: frames come out in slot order, each slot goes back to the
// kernel once copied, a VLAN tag the kernel reported apart is put back, a
// truncated or too big frame is dropped and counted, CSUMNOTREADY is counted,
// the walk stops at the first slot the kernel has not filled and wraps at
// the end of the ring.
func TestV2RingWalk(t *testing.T) {
	f := newFakeV2(t, 8)
	p := f.p
	pool := dataplane.NewPool(16, 2048)
	dst, src := []byte{2, 0, 0, 0, 0, 2}, []byte{2, 0, 0, 0, 0, 1}
	mk := func(seq uint32, size int) []byte { return testFrame(dst, src, seq, size) }

	plain, csum := mk(0, 100), mk(1, 200)
	tagged := mk(2, 300)
	qinq := mk(3, 120)
	f.put(0, plain, 0, 0, 0)
	f.put(1, csum, unix.TP_STATUS_CSUMNOTREADY, 0, 0)
	f.put(2, tagged, 0, 0x2064, 0)    // 802.1Q, no TPID reported: 0x8100
	f.put(3, qinq, 0, 0x0123, 0x88a8) // 802.1ad outer tag
	f.put(4, mk(4, 3000), 0, 0, 0)    // truncated by the kernel to its slot
	f.put(5, mk(5, 100), unix.TP_STATUS_COPY, 0, 0)
	f.put(6, mk(6, 60), 0, 0, 0)
	// slot 7 not filled yet

	got := rxAll(t, p, pool, 32)
	want := [][]byte{plain, csum, vlanFrame(dst, src, 2, 300, 0x8100, 0x2064),
		vlanFrame(dst, src, 3, 120, 0x88a8, 0x0123), mk(6, 60)}
	checkFrames(t, got, want)
	for i := range 7 {
		if st := f.status(i); st != unix.TP_STATUS_KERNEL {
			t.Errorf("slot %d status %#x after the walk, want handed back", i, st)
		}
	}
	if p.slot != 7 {
		t.Fatalf("cursor at slot %d, want 7", p.slot)
	}
	if s := p.Stats(); s.RxFrames != 5 || s.Oversize != 2 || s.CsumNotReady != 1 {
		t.Errorf("stats %+v", s)
	}
	if got := rxAll(t, p, pool, 32); len(got) != 0 {
		t.Fatalf("%d frames from an empty ring", len(got))
	}

	// Wrap: slots 7, 0, 1 filled in that order.
	f.put(7, mk(7, 64), 0, 0, 0)
	f.put(0, mk(8, 64), 0, 0, 0)
	f.put(1, mk(9, 64), 0, 0, 0)
	checkFrames(t, rxAll(t, p, pool, 32), [][]byte{mk(7, 64), mk(8, 64), mk(9, 64)})
	if p.slot != 2 {
		t.Fatalf("cursor at slot %d after the wrap, want 2", p.slot)
	}
	if pool.Available() != pool.Cap() {
		t.Errorf("buffers leaked: %d/%d free", pool.Available(), pool.Cap())
	}
}

// TestV2RingKeepsPlace: a burst cut short by its length or by an empty pool
// leaves the untaken slots to the user and resumes at the first of them.
func TestV2RingKeepsPlace(t *testing.T) {
	f := newFakeV2(t, 8)
	p := f.p
	dst, src := []byte{2, 0, 0, 0, 0, 2}, []byte{2, 0, 0, 0, 0, 1}
	var frames [][]byte
	for i := range 6 {
		frames = append(frames, testFrame(dst, src, uint32(i), 80+i))
		f.put(i, frames[i], 0, 0, 0)
	}
	pool := dataplane.NewPool(3, 2048)
	got := rxAll(t, p, pool, 2) // burst of 2
	if f.status(2)&unix.TP_STATUS_USER == 0 {
		t.Fatal("slot 2 handed back without being read")
	}
	// Hold every buffer: the next burst must take nothing and keep place.
	held := []*dataplane.Packet{pool.Get(), pool.Get(), pool.Get()}
	if n, _ := p.RxBurst(pool, make([]*dataplane.Packet, 8)); n != 0 || p.slot != 2 {
		t.Fatalf("RxBurst on an empty pool took %d, cursor %d", n, p.slot)
	}
	for _, pk := range held {
		pk.Free()
	}
	for len(got) < len(frames) {
		more := rxAll(t, p, pool, 8)
		if len(more) == 0 {
			t.Fatal("stuck")
		}
		got = append(got, more...)
	}
	checkFrames(t, got, frames)
}

// TestV2RingCorruptHeader: a slot whose header points its frame past the
// slot is dropped as Oversize, not a panic.
func TestV2RingCorruptHeader(t *testing.T) {
	f := newFakeV2(t, 2)
	f.put(0, make([]byte, 100), 0, 0, 0)
	ne.PutUint16(f.p.ring[ffi.V2MacOff:], 2040)
	if got := rxAll(t, f.p, dataplane.NewPool(4, 2048), 4); len(got) != 0 || f.p.Stats().Oversize != 1 {
		t.Fatalf("corrupt slot: %d frames, stats %+v", len(got), f.p.Stats())
	}
}

// TestV2RingAllocs: the walk allocates nothing.
func TestV2RingAllocs(t *testing.T) {
	f := newFakeV2(t, 64)
	pool := dataplane.NewPool(64, 2048)
	frame := make([]byte, 200)
	binary.BigEndian.PutUint16(frame[12:], testEtherType)
	pkts := make([]*dataplane.Packet, dataplane.BurstSize)
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		for range dataplane.BurstSize {
			f.put(i, frame, 0, 0x10, 0)
			i = (i + 1) % 64
		}
		n, _ := f.p.RxBurst(pool, pkts)
		if n != dataplane.BurstSize {
			panic("short burst")
		}
		for _, pk := range pkts[:n] {
			pk.Free()
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per burst", allocs)
	}
}
