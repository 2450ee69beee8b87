//go:build linux

// Tests over a veth pair in a fresh network namespace: frames in through
// TxBurst on one end, out through RxBurst on the other, compared byte for
// byte. They need root; without it they skip.
package afpacket

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/dataplane"
	"golang.org/x/sys/unix"
)

// testEtherType is IEEE's "local experimental" type: nothing else on the link
// uses it, so receivers can tell test frames from any stray kernel traffic.
const testEtherType = 0x88b5

var nsSeq atomic.Int32

// TestMain removes namespaces left behind by test binaries that were killed
// before their cleanups ran.
func TestMain(m *testing.M) {
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			f := strings.Split(e.Name(), "-")
			if len(f) != 3 || f[0] != "scaf" {
				continue
			}
			if pid, err := strconv.Atoi(f[1]); err == nil && pid != os.Getpid() {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
					exec.Command("ip", "netns", "del", e.Name()).Run()
				}
			}
		}
	}
	os.Exit(m.Run())
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newTestNet makes a namespace holding a veth pair va <-> vb, both up, with
// IPv6 off so the kernel sends no neighbour discovery. It is deleted when the
// test ends, pass or fail.
func newTestNet(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command")
	}
	ns := fmt.Sprintf("scaf-%d-%d", os.Getpid(), nsSeq.Add(1))
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", ns, err, out)
		}
	})
	run(t, "ip", "netns", "exec", ns, "sysctl", "-qw",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	run(t, "ip", "-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
	run(t, "ip", "-n", ns, "link", "set", "va", "up")
	run(t, "ip", "-n", ns, "link", "set", "vb", "up")
	waitLinks(t, ns, "va", "vb")
	return ns
}

// waitLinks waits until the kernel's link watcher has activated the links:
// until then their queueing discipline is noop, which drops every frame sent
// without an error, and a test would lose its first frames.
func waitLinks(t testing.TB, ns string, links ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, l := range links {
		for {
			out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", l).CombinedOutput()
			if err != nil {
				t.Fatalf("ip link show %s: %v %s", l, err, out)
			}
			if s := string(out); strings.Contains(s, "state UP") && !strings.Contains(s, "qdisc noop") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("link %s not up: %s", l, out)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// openPair opens ports on va (the sender) and vb (the receiver) inside ns.
func openPair(t testing.TB, ns string, opts Options) (a, b *Port) {
	t.Helper()
	err := InNetns(ns, func() error {
		var err error
		if a, err = Open("va", opts); err != nil {
			return err
		}
		b, err = Open("vb", opts)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func openTx(t testing.TB, p *Port) dataplane.TxQueue {
	t.Helper()
	q, err := p.OpenTx()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// testFrame is an Ethernet frame of size bytes carrying seq, with a payload
// pattern that differs per frame.
func testFrame(dst, src net.HardwareAddr, seq uint32, size int) []byte {
	f := make([]byte, size)
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], testEtherType)
	binary.BigEndian.PutUint32(f[14:], seq)
	for i := 18; i < size; i++ {
		f[i] = byte(seq*7 + uint32(i))
	}
	return f
}

// isTest tells test frames, VLAN-tagged or not, from stray traffic.
func isTest(f []byte) bool {
	for off := 12; off+2 <= len(f); off += 4 {
		switch binary.BigEndian.Uint16(f[off:]) {
		case testEtherType:
			return true
		case 0x8100, 0x88a8:
			continue
		}
		return false
	}
	return false
}

// vlanFrame is testFrame with VLAN tags (TPID, TCI pairs) after the MACs.
func vlanFrame(dst, src net.HardwareAddr, seq uint32, size int, tags ...uint16) []byte {
	f := testFrame(dst, src, seq, size)
	hdr := make([]byte, 0, 2*len(tags))
	for _, v := range tags {
		hdr = binary.BigEndian.AppendUint16(hdr, v)
	}
	return slices.Insert(f, 12, hdr...)
}

// packet puts f in a packet from pool. With split, only the first 22 bytes
// go in the packet's own buffer and the rest is a Tail pointing into f, as a
// replicated copy shares its original's payload.
func packet(pool *dataplane.Pool, f []byte, split bool) *dataplane.Packet {
	pk := pool.Get()
	if pk == nil {
		return nil
	}
	k := len(f)
	if split && k > 22 {
		k = 22
		pk.Tail = f[k:]
	}
	pk.SetFrame(k)
	copy(pk.Head, f[:k])
	return pk
}

// send transmits all frames, retrying partial bursts.
func send(t testing.TB, q dataplane.TxQueue, pool *dataplane.Pool, frames [][]byte, split func(i int) bool) {
	t.Helper()
	pkts := make([]*dataplane.Packet, 0, dataplane.BurstSize)
	for i := 0; i < len(frames) || len(pkts) > 0; {
		for len(pkts) < cap(pkts) && i < len(frames) {
			pkts = append(pkts, packet(pool, frames[i], split != nil && split(i)))
			i++
		}
		n, err := q.TxBurst(pkts)
		if err != nil {
			t.Fatalf("TxBurst: %v", err)
		}
		pkts = append(pkts[:0], pkts[n:]...)
		if len(pkts) > 0 {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

func waitReadable(fd int, ms int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	unix.Poll(fds, ms)
}

// recv collects test frames from p until it has want of them or timeout
// passes, polling WaitFd in between.
func recv(t testing.TB, p *Port, pool *dataplane.Pool, want int, timeout time.Duration) [][]byte {
	t.Helper()
	var got [][]byte
	pkts := make([]*dataplane.Packet, dataplane.BurstSize)
	deadline := time.Now().Add(timeout)
	for len(got) < want && time.Now().Before(deadline) {
		n, err := p.RxBurst(pool, pkts)
		if err != nil {
			t.Fatalf("RxBurst: %v", err)
		}
		for _, pk := range pkts[:n] {
			if isTest(pk.Head) {
				got = append(got, slices.Clone(pk.Head))
			}
			pk.Free()
		}
		if n == 0 {
			waitReadable(p.WaitFd(), 5)
		}
	}
	return got
}

func checkFrames(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("received %d frames, sent %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs:\n got %x\nwant %x", i, got[i], want[i])
		}
	}
}

// eachRing runs f as a subtest per receive ring layout: the tests that
// check what RxBurst delivers hold for both.
func eachRing(t *testing.T, f func(t *testing.T, ring RxRing)) {
	for _, r := range []RxRing{RxRingV3, RxRingV2} {
		t.Run(string(r), func(t *testing.T) { f(t, r) })
	}
}

// eachTx runs f as a subtest per transmit mode: what TxBurst sends, and
// how it counts what it cannot, is the same for all three.
func eachTx(t *testing.T, f func(t *testing.T, tx TxMode)) {
	for _, m := range []TxMode{TxRing, TxRingZeroCopy, TxSendmmsg} {
		t.Run("tx="+string(m), func(t *testing.T) { f(t, m) })
	}
}

// eachRingTx runs f for every receive layout and transmit mode.
func eachRingTx(t *testing.T, f func(t *testing.T, ring RxRing, tx TxMode)) {
	eachRing(t, func(t *testing.T, ring RxRing) {
		eachTx(t, func(t *testing.T, tx TxMode) { f(t, ring, tx) })
	})
}

// TestTxRxExact sends frames of many sizes, half of them as Head+Tail, into
// one-page blocks (a couple of large frames each), so every receive burst
// spans several blocks.
func TestTxRxExact(t *testing.T) {
	eachRingTx(t, func(t *testing.T, ring RxRing, tx TxMode) {
		ns := newTestNet(t)
		// 300 frames sent before any is read, two big ones to a block: the ring
		// needs room for all of them.
		a, b := openPair(t, ns, Options{RxRing: ring, Tx: tx, BlockSize: 4096, BlockCount: 512})
		q := openTx(t, a)
		txPool := dataplane.NewPool(64, 2048)
		rxPool := dataplane.NewPool(64, 2048)

		var frames [][]byte
		for i := 0; i < 300; i++ {
			size := 60 + (i*97)%1455 // 60 .. 1514, the whole range of a 1500 MTU
			frames = append(frames, testFrame(b.HardwareAddr(), a.HardwareAddr(), uint32(i), size))
		}
		frames[7] = testFrame(b.HardwareAddr(), a.HardwareAddr(), 7, 1514) // a full-MTU frame
		// The receiving stack takes the outer VLAN tag out of a frame before
		// AF_PACKET sees it (as rx VLAN offload does on NICs); RxBurst must put
		// it back, 802.1Q and 802.1ad alike.
		frames[8] = vlanFrame(b.HardwareAddr(), a.HardwareAddr(), 8, 200, 0x8100, 0x2064)
		frames[9] = vlanFrame(b.HardwareAddr(), a.HardwareAddr(), 9, 200, 0x88a8, 0x0123, 0x8100, 0x0456)
		frames[10] = vlanFrame(b.HardwareAddr(), a.HardwareAddr(), 10, 1514, 0x8100, 0xe001)
		send(t, q, txPool, frames, func(i int) bool { return i%2 == 1 })
		checkFrames(t, recv(t, b, rxPool, len(frames), 5*time.Second), frames)

		if txPool.Available() != txPool.Cap() || rxPool.Available() != rxPool.Cap() {
			t.Errorf("buffers leaked: tx %d/%d rx %d/%d free",
				txPool.Available(), txPool.Cap(), rxPool.Available(), rxPool.Cap())
		}
		st := b.Stats()
		if st.RxFrames < uint64(len(frames)) || st.KernelDrops != 0 || st.Oversize != 0 {
			t.Errorf("receiver stats %+v", st)
		}
		if st := a.Stats(); st.TxFrames != uint64(len(frames)) || st.TxErrors != 0 {
			t.Errorf("sender stats %+v", st)
		}
		// The sender's own port must not read back what it sent.
		if got := recv(t, a, rxPool, 1, 50*time.Millisecond); len(got) != 0 {
			t.Errorf("sender read back %d of its own frames", len(got))
		}
	})
}

// TestManyFrames pushes 10,000 frames through with a bounded number in
// flight, sender and receiver on their own goroutines as the switch's workers
// would be, and checks order, content and that nothing was lost anywhere.
func TestManyFrames(t *testing.T) {
	eachRingTx(t, func(t *testing.T, ring RxRing, tx TxMode) {
		ns := newTestNet(t)
		a, b := openPair(t, ns, Options{RxRing: ring, Tx: tx})
		q := openTx(t, a)
		const total, window = 10000, 2048

		var received atomic.Int64
		done := make(chan [][]byte)
		go func() {
			rxPool := dataplane.NewPool(256, 2048)
			pkts := make([]*dataplane.Packet, dataplane.BurstSize)
			var got [][]byte
			deadline := time.Now().Add(20 * time.Second)
			for len(got) < total && time.Now().Before(deadline) {
				n, _ := b.RxBurst(rxPool, pkts)
				for _, pk := range pkts[:n] {
					if isTest(pk.Head) {
						got = append(got, slices.Clone(pk.Head))
					}
					pk.Free()
				}
				received.Store(int64(len(got)))
				if n == 0 {
					waitReadable(b.WaitFd(), 5)
				}
			}
			done <- got
		}()

		txPool := dataplane.NewPool(64, 2048)
		frames := make([][]byte, total)
		for i := range frames {
			frames[i] = testFrame(b.HardwareAddr(), a.HardwareAddr(), uint32(i), 64+i%1000)
		}
		for i := 0; i < total; i += dataplane.BurstSize {
			for int64(i)-received.Load() > window {
				time.Sleep(100 * time.Microsecond)
			}
			send(t, q, txPool, frames[i:min(i+dataplane.BurstSize, total)], func(i int) bool { return i%3 == 0 })
		}
		got := <-done
		checkFrames(t, got, frames)
		st := b.Stats()
		if st.KernelDrops != 0 {
			t.Errorf("kernel dropped %d frames", st.KernelDrops)
		}
		t.Logf("receiver %+v", st)
		t.Logf("sender %+v", a.Stats())
	})
}

// TestPoolExhaustion holds on to every buffer of a tiny pool: RxBurst must
// stop without losing its place, and resume where it stopped.
func TestPoolExhaustion(t *testing.T) {
	eachRing(t, func(t *testing.T, ring RxRing) {
		ns := newTestNet(t)
		a, b := openPair(t, ns, Options{RxRing: ring, BlockSize: 4096})
		q := openTx(t, a)
		var frames [][]byte
		for i := 0; i < 40; i++ {
			frames = append(frames, testFrame(b.HardwareAddr(), a.HardwareAddr(), uint32(i), 700))
		}
		send(t, q, dataplane.NewPool(64, 2048), frames, nil)

		rxPool := dataplane.NewPool(5, 2048)
		pkts := make([]*dataplane.Packet, dataplane.BurstSize)
		var got [][]byte
		deadline := time.Now().Add(5 * time.Second)
		for len(got) < len(frames) && time.Now().Before(deadline) {
			n, err := b.RxBurst(rxPool, pkts)
			if err != nil {
				t.Fatal(err)
			}
			if n > 5 {
				t.Fatalf("RxBurst returned %d packets from a pool of 5", n)
			}
			if n == 5 {
				// Pool empty: another call must return nothing, and keep place.
				if m, _ := b.RxBurst(rxPool, pkts[n:]); m != 0 {
					t.Fatalf("RxBurst on an empty pool returned %d", m)
				}
			}
			for _, pk := range pkts[:n] {
				got = append(got, slices.Clone(pk.Head))
				pk.Free()
			}
			if n == 0 {
				waitReadable(b.WaitFd(), 5)
			}
		}
		checkFrames(t, got, frames)
	})
}

// TestOversize drops frames bigger than the pool's buffers, and frames the
// kernel truncated to fit a block (a 9000-byte MTU into 4 KiB blocks) or a
// V2 slot (2 KiB), and keeps delivering the ones around them.
func TestOversize(t *testing.T) {
	eachRing(t, func(t *testing.T, ring RxRing) {
		ns := newTestNet(t)
		run(t, "ip", "-n", ns, "link", "set", "va", "mtu", "9000")
		run(t, "ip", "-n", ns, "link", "set", "vb", "mtu", "9000")
		waitLinks(t, ns, "va", "vb")
		a, b := openPair(t, ns, Options{RxRing: ring, BlockSize: 4096, TxFrameMax: 9014})
		q := openTx(t, a)
		txPool := dataplane.NewPool(16, dataplane.Headroom+9100)
		rxPool := dataplane.NewPool(16, dataplane.Headroom+300)

		mk := func(seq uint32, size int) []byte { return testFrame(b.HardwareAddr(), a.HardwareAddr(), seq, size) }
		sent := [][]byte{mk(0, 100), mk(1, 301), mk(2, 300), mk(3, 8000), mk(4, 60)}
		send(t, q, txPool, sent, nil)
		want := [][]byte{sent[0], sent[2], sent[4]}
		checkFrames(t, recv(t, b, rxPool, len(want), 3*time.Second), want)
		if st := b.Stats(); st.Oversize != 2 {
			t.Errorf("oversize %d, want 2 (one too big for the buffer, one truncated)", st.Oversize)
		}
	})
}

// TestTxFrameErrors: a frame longer than the MTU is dropped and counted, and the frames after it in the
// burst still go out; an 802.1Q-tagged frame may be four bytes longer, as
// the kernel allows. When the MTU is raised, frames up to the new one go.
func TestTxFrameErrors(t *testing.T) {
	eachTx(t, func(t *testing.T, tx TxMode) {
		ns := newTestNet(t)
		a, b := openPair(t, ns, Options{Tx: tx, TxFrameMax: 4000})
		q := openTx(t, a)
		txPool := dataplane.NewPool(16, dataplane.Headroom+4000)
		rxPool := dataplane.NewPool(16, 4096)
		mk := func(seq uint32, size int) []byte { return testFrame(b.HardwareAddr(), a.HardwareAddr(), seq, size) }
		tagged := vlanFrame(b.HardwareAddr(), a.HardwareAddr(), 4, 1514, 0x8100, 0x0005) // 1518 bytes
		frames := [][]byte{mk(0, 100), mk(1, 3000), mk(2, 100), tagged, mk(5, 1515), mk(6, 1514)}
		send(t, q, txPool, frames, nil)
		want := [][]byte{frames[0], frames[2], frames[3], frames[5]}
		checkFrames(t, recv(t, b, rxPool, len(want), 3*time.Second), want)
		if st := a.Stats(); st.TxErrors != 2 || st.TxFrames != 4 {
			t.Errorf("sender stats %+v, want 2 errors and 4 frames", st)
		}
		run(t, "ip", "-n", ns, "link", "set", "va", "mtu", "3000")
		run(t, "ip", "-n", ns, "link", "set", "vb", "mtu", "3000")
		waitLinks(t, ns, "va", "vb")
		frames = [][]byte{mk(7, 2000), mk(8, 3014)}
		send(t, q, txPool, frames, nil)
		checkFrames(t, recv(t, b, rxPool, len(frames), 3*time.Second), frames)
		if st := a.Stats(); st.TxErrors != 2 || st.TxFrames != 6 || st.TxOversize != 0 {
			t.Errorf("sender stats %+v after the MTU went up, want 2 errors and 6 frames", st)
		}
		if txPool.Available() != txPool.Cap() {
			t.Errorf("tx buffers leaked")
		}
	})
}

// TestTxRingOversize: a frame longer than a ring slot (TxFrameMax) is
// dropped and counted apart from send errors, wherever it is in a burst,
// and the frames around it go out intact. A frame shorter than an Ethernet
// header is a send error (sendmmsg, as root, would pad it instead).
func TestTxRingOversize(t *testing.T) {
	for _, tx := range []TxMode{TxRing, TxRingZeroCopy} {
		t.Run(string(tx), func(t *testing.T) {
			ns := newTestNet(t)
			a, b := openPair(t, ns, Options{Tx: tx, TxFrameMax: 1000})
			q := openTx(t, a)
			txPool := dataplane.NewPool(16, 2048)
			rxPool := dataplane.NewPool(16, 2048)
			mk := func(seq uint32, size int) []byte { return testFrame(b.HardwareAddr(), a.HardwareAddr(), seq, size) }
			frames := [][]byte{mk(0, 1200), mk(1, 100), mk(2, 1001), mk(3, 1000), mk(4, 1400), mk(5, 60)[:10], mk(6, 60)}
			send(t, q, txPool, frames, func(i int) bool { return i%2 == 0 })
			want := [][]byte{frames[1], frames[3], frames[6]}
			checkFrames(t, recv(t, b, rxPool, len(want), 3*time.Second), want)
			if st := a.Stats(); st.TxOversize != 3 || st.TxErrors != 1 || st.TxFrames != 3 {
				t.Errorf("sender stats %+v, want 3 oversize, 1 error and 3 frames", st)
			}
			if txPool.Available() != txPool.Cap() {
				t.Errorf("tx buffers leaked")
			}
		})
	}
}

// TestTxRingFull holds every frame sent in a slow qdisc (tbf at 8 kbit/s),
// so the driver frees
// none and the ring fills: TxBurst must then take nothing, return at once
// and count the back-pressure, and, when the qdisc lets the frames go,
// resume where it stopped with every frame delivered intact and in order.
// (With QdiscBypass a full device queue does the same.)
func TestTxRingFull(t *testing.T) {
	for _, tx := range []TxMode{TxRing, TxRingZeroCopy} {
		t.Run(string(tx), func(t *testing.T) {
			ns := newTestNet(t)
			if out, err := exec.Command("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "va", "root",
				"tbf", "rate", "8kbit", "burst", "1600", "limit", "10000000").CombinedOutput(); err != nil {
				t.Skipf("no tbf qdisc: %v %s", err, out)
			}
			a, b := openPair(t, ns, Options{Tx: tx, TxFrames: 64})
			q := openTx(t, a)
			slots := len(q.(*txQueue).ring.slot)
			txPool := dataplane.NewPool(2*dataplane.BurstSize, 2048)
			rxPool := dataplane.NewPool(64, 2048)
			total := slots * 3
			frames := make([][]byte, total)
			for i := range frames {
				frames[i] = testFrame(b.HardwareAddr(), a.HardwareAddr(), uint32(i), 100)
			}
			pkts := make([]*dataplane.Packet, 0, dataplane.BurstSize)
			next, sent := 0, 0
			fill := func() {
				for len(pkts) < cap(pkts) && next < total {
					pkts = append(pkts, packet(txPool, frames[next], next%2 == 0))
					next++
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			full := 0
			for full < 20 && time.Now().Before(deadline) {
				fill()
				t0 := time.Now()
				n, err := q.TxBurst(pkts)
				if err != nil {
					t.Fatalf("TxBurst: %v", err)
				}
				if el := time.Since(t0); el > 100*time.Millisecond {
					t.Fatalf("TxBurst took %v with the ring full", el)
				}
				sent += n
				pkts = append(pkts[:0], pkts[n:]...)
				if n == 0 {
					full++
				}
			}
			if full < 20 {
				t.Fatalf("the ring never filled: %d of %d frames taken", sent, total)
			}
			if sent < slots || sent >= total {
				t.Fatalf("%d frames taken before the ring was full, want at least its %d slots and fewer than %d", sent, slots, total)
			}
			if st := a.Stats(); st.TxBusy == 0 || st.TxFrames != uint64(sent) {
				t.Errorf("sender stats %+v with the ring full after %d frames: want busy counted", st, sent)
			}
			run(t, "ip", "netns", "exec", ns, "tc", "qdisc", "change", "dev", "va", "root",
				"tbf", "rate", "10gbit", "burst", "1000000", "limit", "10000000")
			rest := make([][]byte, 0, total)
			for _, pk := range pkts {
				rest = append(rest, slices.Clone(append(pk.Head[:len(pk.Head):len(pk.Head)], pk.Tail...)))
				pk.Free()
			}
			rest = append(rest, frames[next:]...)
			send(t, q, txPool, rest, nil)
			checkFrames(t, recv(t, b, rxPool, total, 5*time.Second), frames)
			if txPool.Available() != txPool.Cap() {
				t.Errorf("tx buffers leaked: %d of %d free", txPool.Available(), txPool.Cap())
			}
		})
	}
}

// TestTxRingLinkDown: a send the kernel refuses as a whole (the interface
// is down) leaves every frame of the burst with the caller and the ring as
// it was, so the same packets sent again once the link is back arrive once
// each, in order.
func TestTxRingLinkDown(t *testing.T) {
	for _, tx := range []TxMode{TxRing, TxRingZeroCopy} {
		t.Run(string(tx), func(t *testing.T) {
			ns := newTestNet(t)
			a, b := openPair(t, ns, Options{Tx: tx})
			q := openTx(t, a)
			txPool := dataplane.NewPool(16, 2048)
			rxPool := dataplane.NewPool(16, 2048)
			mk := func(seq uint32) []byte { return testFrame(b.HardwareAddr(), a.HardwareAddr(), seq, 200) }
			first := [][]byte{mk(0), mk(1)}
			send(t, q, txPool, first, nil)
			checkFrames(t, recv(t, b, rxPool, len(first), 3*time.Second), first)

			run(t, "ip", "-n", ns, "link", "set", "va", "down")
			frames := [][]byte{mk(2), mk(3), mk(4)}
			pkts := []*dataplane.Packet{packet(txPool, frames[0], true), packet(txPool, frames[1], false), packet(txPool, frames[2], true)}
			if n, err := q.TxBurst(pkts); n != 0 || err == nil {
				t.Fatalf("TxBurst on a down link: %d, %v; want 0 and an error", n, err)
			}
			if free := txPool.Available(); free != txPool.Cap()-3 {
				t.Fatalf("%d of %d buffers free after the refused burst: it must leave its packets to the caller", free, txPool.Cap())
			}
			run(t, "ip", "-n", ns, "link", "set", "va", "up")
			waitLinks(t, ns, "va", "vb")
			for len(pkts) > 0 {
				n, err := q.TxBurst(pkts)
				if err != nil {
					t.Fatalf("TxBurst after the link came back: %v", err)
				}
				pkts = pkts[n:]
			}
			checkFrames(t, recv(t, b, rxPool, len(frames), 3*time.Second), frames)
			if txPool.Available() != txPool.Cap() {
				t.Errorf("tx buffers leaked")
			}
		})
	}
}

// TestInNetns: code run by InNetns sees the namespace's interfaces, and the
// caller's namespace is untouched afterwards.
func TestInNetns(t *testing.T) {
	ns := newTestNet(t)
	if err := InNetns(ns, func() error { _, err := net.InterfaceByName("va"); return err }); err != nil {
		t.Fatalf("inside: %v", err)
	}
	if _, err := net.InterfaceByName("va"); err == nil {
		t.Skip("a va interface exists outside the test namespace too")
	}
	if err := InNetns("scaf-no-such-ns", func() error { return nil }); err == nil {
		t.Error("missing namespace accepted")
	}
}

func TestCloseTwice(t *testing.T) {
	ns := newTestNet(t)
	a, _ := openPair(t, ns, Options{})
	q := openTx(t, a)
	pool := dataplane.NewPool(4, 2048)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.RxBurst(pool, make([]*dataplane.Packet, 4)); err != dataplane.ErrPortClosed {
		t.Errorf("RxBurst after Close: %v", err)
	}
	pk := packet(pool, make([]byte, 60), false)
	if n, err := q.TxBurst([]*dataplane.Packet{pk}); n != 0 || err != dataplane.ErrPortClosed {
		t.Errorf("TxBurst after Close: %d, %v", n, err)
	}
	if _, err := a.OpenTx(); err != dataplane.ErrPortClosed {
		t.Errorf("OpenTx after Close: %v", err)
	}
	if a.WaitFd() != -1 {
		t.Errorf("WaitFd after Close: %d", a.WaitFd())
	}
	a.Stats()
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("lo", Options{BlockSize: 5000}); err == nil {
		t.Error("block size 5000 accepted")
	}
	if _, err := Open("lo", Options{RxRing: "v1"}); err == nil {
		t.Error("rx ring v1 accepted")
	}
	if _, err := Open("lo", Options{Tx: "mmap"}); err == nil {
		t.Error("tx mode mmap accepted")
	}
	if _, err := Open("lo", Options{TxFrameMax: 70000}); err == nil {
		t.Error("tx frame max 70000 accepted")
	}
	if _, err := Open("no-such-iface0", Options{}); err == nil {
		t.Error("missing interface accepted")
	}
}

// TestAllocs: a steady stream through TxBurst and RxBurst allocates nothing.
func TestAllocs(t *testing.T) {
	eachRingTx(t, func(t *testing.T, ring RxRing, tx TxMode) {
		ns := newTestNet(t)
		a, b := openPair(t, ns, Options{RxRing: ring, Tx: tx, BlockSize: 4096})
		q := openTx(t, a)
		txPool := dataplane.NewPool(64, 2048)
		rxPool := dataplane.NewPool(64, 2048)
		frame := testFrame(b.HardwareAddr(), a.HardwareAddr(), 1, 200)
		batch := make([]*dataplane.Packet, dataplane.BurstSize)
		rpkts := make([]*dataplane.Packet, dataplane.BurstSize)
		var rx int
		round := func() {
			for i := range batch {
				batch[i] = packet(txPool, frame, i%2 == 0)
			}
			n, err := q.TxBurst(batch)
			if err != nil {
				panic(err)
			}
			for _, pk := range batch[n:] {
				pk.Free()
			}
			for {
				n, _ := b.RxBurst(rxPool, rpkts)
				for _, pk := range rpkts[:n] {
					pk.Free()
				}
				rx += n
				if n == 0 {
					break
				}
			}
		}
		for range 10 {
			round()
		}
		rx = 0
		if allocs := testing.AllocsPerRun(200, round); allocs != 0 {
			t.Errorf("%v allocations per TxBurst+RxBurst round", allocs)
		}
		if rx == 0 {
			t.Error("no frame received during the allocation runs")
		}
	})
}

// TestLowRateLatency measures what one frame at a time sees: from TxBurst on
// one end until poll on the other end wakes and RxBurst returns it. With
// TPACKET_V3 that is the block retire timeout; with TPACKET_V2, the
// receiver's wake-up. Run with -v for the numbers (doc.go quotes them).
func TestLowRateLatency(t *testing.T) {
	ns := newTestNet(t)
	for _, o := range []Options{
		{RxRing: RxRingV3, RetireTimeout: time.Millisecond},
		{RxRing: RxRingV3, RetireTimeout: 4 * time.Millisecond},
		{RxRing: RxRingV2},
	} {
		a, b := openPair(t, ns, o)
		q := openTx(t, a)
		txPool := dataplane.NewPool(4, 2048)
		rxPool := dataplane.NewPool(4, 2048)
		frame := testFrame(b.HardwareAddr(), a.HardwareAddr(), 1, 100)
		var lat []time.Duration
		for i := range 100 {
			// Irregular gaps, so the sends do not beat in step with the
			// kernel's retire timer.
			time.Sleep(time.Duration(2000+i*733%3000) * time.Microsecond)
			t0 := time.Now()
			send(t, q, txPool, [][]byte{frame}, nil)
			if got := recv(t, b, rxPool, 1, time.Second); len(got) != 1 {
				t.Fatal("frame lost")
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		name := string(o.RxRing)
		if o.RxRing == RxRingV3 {
			name += fmt.Sprintf(" retire timeout %v", o.RetireTimeout)
		}
		t.Logf("%s: one frame at a time: min %v median %v p90 %v p99 %v max %v",
			name, lat[0], lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)*99/100], lat[len(lat)-1])
		if lat[len(lat)/2] > 50*time.Millisecond {
			t.Errorf("median latency %v", lat[len(lat)/2])
		}
		a.Close()
		b.Close()
	}
}

// TestCsumNotReady sends UDP through the kernel stack of va: with tx
// checksum offload on (veth's default) the frame reaches vb's ring marked
// TP_STATUS_CSUMNOTREADY; with it off (ethtool) it does not.
func TestCsumNotReady(t *testing.T) {
	eachRing(t, func(t *testing.T, ring RxRing) {
		ns := newTestNet(t)
		_, b := openPair(t, ns, Options{RxRing: ring})
		run(t, "ip", "-n", ns, "addr", "add", "10.99.0.1/24", "dev", "va")
		run(t, "ip", "-n", ns, "neigh", "add", "10.99.0.2", "lladdr", b.HardwareAddr().String(), "dev", "va", "nud", "permanent")
		pool := dataplane.NewPool(8, 2048)
		sendUDP := func() {
			err := InNetns(ns, func() error {
				c, err := net.Dial("udp4", "10.99.0.2:9999")
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write([]byte("checksum me"))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		// UDP frames are not test frames; drain everything and count.
		drain := func() int {
			pkts := make([]*dataplane.Packet, 8)
			total := 0
			deadline := time.Now().Add(100 * time.Millisecond)
			for time.Now().Before(deadline) {
				n, _ := b.RxBurst(pool, pkts)
				for _, pk := range pkts[:n] {
					pk.Free()
				}
				total += n
				if n == 0 {
					waitReadable(b.WaitFd(), 5)
				}
			}
			return total
		}
		sendUDP()
		if n := drain(); n != 1 {
			t.Fatalf("received %d frames, want 1", n)
		}
		if st := b.Stats(); st.CsumNotReady != 1 {
			t.Errorf("CsumNotReady %d with tx offload on, want 1", st.CsumNotReady)
		}
		if _, err := exec.LookPath("ethtool"); err != nil {
			t.Skip("no ethtool to turn tx offload off")
		}
		run(t, "ip", "netns", "exec", ns, "ethtool", "-K", "va", "tx", "off")
		sendUDP()
		if n := drain(); n != 1 {
			t.Fatalf("received %d frames, want 1", n)
		}
		if st := b.Stats(); st.CsumNotReady != 1 {
			t.Errorf("CsumNotReady %d after tx offload off, want still 1", st.CsumNotReady)
		}
	})
}

// BenchmarkTxRx measures one sender and one receiver goroutine over a veth
// pair, 64- and 1500-byte frames, as many in flight as half the ring holds,
// for each ring layout.
func BenchmarkTxRx(b *testing.B) {
	for _, ring := range []RxRing{RxRingV3, RxRingV2} {
		for _, size := range []int{64, 1500} {
			b.Run(fmt.Sprintf("ring=%s/frame=%d", ring, size), func(b *testing.B) { benchTxRx(b, ring, size) })
		}
	}
}

func benchTxRx(b *testing.B, ring RxRing, size int) {
	ns := newTestNet(b)
	pa, pb := openPair(b, ns, Options{RxRing: ring})
	q := openTx(b, pa)
	frame := testFrame(pb.HardwareAddr(), pa.HardwareAddr(), 0, size)
	window := int64(pa.opts.BlockSize * pa.opts.BlockCount / (size + 80) / 2)
	if ring == RxRingV2 {
		window = int64(pb.slots / 2)
	}

	var received atomic.Int64
	total := int64(b.N)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pool := dataplane.NewPool(256, 2048)
		pkts := make([]*dataplane.Packet, dataplane.BurstSize)
		deadline := time.Now().Add(time.Minute)
		for received.Load() < total && time.Now().Before(deadline) {
			n, _ := pb.RxBurst(pool, pkts)
			k := 0
			for _, pk := range pkts[:n] {
				if isTest(pk.Head) {
					k++
				}
				pk.Free()
			}
			received.Add(int64(k))
			if n == 0 {
				waitReadable(pb.WaitFd(), 2)
			}
		}
	}()

	pool := dataplane.NewPool(256, 2048)
	batch := make([]*dataplane.Packet, 0, dataplane.BurstSize)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for sent := int64(0); sent < total; {
		for len(batch) < cap(batch) && sent+int64(len(batch)) < total {
			batch = append(batch, packet(pool, frame, true))
		}
		for sent-received.Load() > window {
			time.Sleep(20 * time.Microsecond)
		}
		n, err := q.TxBurst(batch)
		if err != nil {
			b.Fatal(err)
		}
		sent += int64(n)
		batch = append(batch[:0], batch[n:]...)
	}
	<-done
	el := time.Since(start)
	b.StopTimer()
	if received.Load() < total {
		b.Fatalf("received %d of %d", received.Load(), total)
	}
	b.ReportMetric(float64(total)/el.Seconds(), "frames/s")
	if st := pb.Stats(); st.KernelDrops != 0 {
		b.Logf("kernel drops %d", st.KernelDrops)
	}
}

// `ip link set down` on a port's interface leaves ENETDOWN pending on its
// socket and wakes a poll on WaitFd with POLLERR at once, on either receive
// ring: the switch's workers take that as the link going down (worker.go,
// socketError) before the carrier watcher hears of it.
func TestLinkDownWakesWaitFd(t *testing.T) {
	eachRing(t, func(t *testing.T, ring RxRing) {
		ns := newTestNet(t)
		a, _ := openPair(t, ns, Options{RxRing: ring})
		pfd := []unix.PollFd{{Fd: int32(a.WaitFd()), Events: unix.POLLIN}}
		if n, _ := unix.Poll(pfd, 0); n != 0 {
			t.Fatalf("ready before the link went down: revents %#x", pfd[0].Revents)
		}
		done := make(chan error, 1)
		go func() {
			time.Sleep(20 * time.Millisecond)
			out, err := exec.Command("ip", "-n", ns, "link", "set", "va", "down").CombinedOutput()
			if err != nil {
				err = fmt.Errorf("ip link set va down: %v %s", err, out)
			}
			done <- err
		}()
		n, _ := unix.Poll(pfd, 5000)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n != 1 || pfd[0].Revents&unix.POLLERR == 0 {
			t.Fatalf("poll %d, revents %#x: want POLLERR", n, pfd[0].Revents)
		}
		if e, _ := unix.GetsockoptInt(a.WaitFd(), unix.SOL_SOCKET, unix.SO_ERROR); unix.Errno(e) != unix.ENETDOWN {
			t.Fatalf("SO_ERROR %v, want ENETDOWN", unix.Errno(e))
		}
	})
}

// BenchmarkTx measures the sender alone, for each transmit mode: bursts of
// 256-byte frames split as a replicated copy is (a header of its own, the
// payload shared), into a veth whose far end's stack drops them. cpu-ns/frame
// is the sending thread's CPU time (user and system, the peer's receive
// included: veth delivers in the sender's softirq), which other load on the
// machine does not inflate as it does the wall time of ns/op.
func BenchmarkTx(b *testing.B) {
	for _, m := range []struct {
		name string
		opts Options
	}{
		{"sendmmsg", Options{Tx: TxSendmmsg}},
		{"sendmmsg-bypass", Options{Tx: TxSendmmsg, QdiscBypass: true}},
		{"ring-zerocopy", Options{Tx: TxRingZeroCopy}},
		{"ring", Options{Tx: TxRing}},
		{"ring-bypass", Options{Tx: TxRing, QdiscBypass: true}},
	} {
		b.Run(m.name, func(b *testing.B) { benchTx(b, m.opts, 256) })
	}
}

func benchTx(b *testing.B, opts Options, size int) {
	ns := newTestNet(b)
	pa, pb := openPair(b, ns, opts)
	pb.Close() // nothing reads on the far end
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	q := openTx(b, pa)
	frame := testFrame(pb.HardwareAddr(), pa.HardwareAddr(), 0, size)
	pool := dataplane.NewPool(256, 2048)
	batch := make([]*dataplane.Packet, 0, dataplane.BurstSize)
	b.ReportAllocs()
	cpu0 := threadCPU()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		for len(batch) < cap(batch) && sent+len(batch) < b.N {
			batch = append(batch, packet(pool, frame, true))
		}
		n, err := q.TxBurst(batch)
		if err != nil {
			b.Fatal(err)
		}
		sent += n
		batch = append(batch[:0], batch[n:]...)
	}
	b.StopTimer()
	b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "cpu-ns/frame")
}

// threadCPU is the calling thread's CPU time in nanoseconds.
func threadCPU() int64 {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
