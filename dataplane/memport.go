// In-memory ports: a pair of ports joined by single-producer single-consumer
// rings, one ring per transmitting worker. Transmit copies the frame into the
// ring slot (as a NIC's DMA would), receive copies it into the receiving
// worker's pool. Used by tests, simulations and the in-memory fabrics. Each
// port has an eventfd the peer signals after a burst, so an adaptive worker
// blocks in poll(2) and wakes when frames arrive, as on a real port. The
// eventfd is written only when the receiver may be about to sleep (no write
// since its last look) and read only when a receive finds the rings empty:
// a busy link costs no system call per burst, which at hundreds of ports
// was most of the in-memory fabric's time.
package dataplane

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// MemPort is one end of an in-memory link.
type MemPort struct {
	name  string
	mac   net.HardwareAddr
	depth int
	slot  int
	peer  *MemPort

	mu     sync.Mutex                 // guards OpenTx only
	rings  atomic.Pointer[[]*memRing] // rings delivering to this port
	next   int                        // round-robin start, rx worker only
	closed atomic.Bool
	efd    int // eventfd: readable when a peer transmitted since the last receive
	// signaled: the eventfd was written since the receiver last cleared
	// it. Peers write it only when false; the receiver clears it and
	// reads the eventfd only when a receive finds nothing.
	signaled atomic.Bool
}

type memRing struct {
	head  atomic.Uint64 // next slot to read (consumer)
	tail  atomic.Uint64 // next slot to write (producer)
	lens  []int
	slots [][]byte
	mask  uint64
}

// ErrPortClosed is returned by a closed port.
var ErrPortClosed = errors.New("port closed")

// NewMemPair returns two connected in-memory ports. depth (rounded up to a
// power of two) bounds the frames in flight per transmitting worker; frames
// larger than slot bytes are dropped at transmit.
func NewMemPair(nameA, nameB string, depth, slot int) (*MemPort, *MemPort) {
	d := 1
	for d < depth {
		d <<= 1
	}
	a := &MemPort{name: nameA, mac: localMAC(nameA), depth: d, slot: slot}
	b := &MemPort{name: nameB, mac: localMAC(nameB), depth: d, slot: slot}
	a.peer, b.peer = b, a
	a.efd, b.efd = newEventfd(), newEventfd()
	empty := []*memRing{}
	a.rings.Store(&empty)
	b.rings.Store(&empty)
	return a, b
}

// localMAC derives a stable locally administered MAC from a name.
func localMAC(name string) net.HardwareAddr {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return net.HardwareAddr{0x02, 0x53, byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h)}
}

func (p *MemPort) Name() string                   { return p.name }
func (p *MemPort) HardwareAddr() net.HardwareAddr { return p.mac }
func (p *MemPort) WaitFd() int                    { return p.efd }
func (p *MemPort) Close() error                   { p.closed.Store(true); return nil }

// Closed reports whether Close was called.
func (p *MemPort) Closed() bool { return p.closed.Load() }

// newEventfd returns a non-blocking eventfd, or -1 (the worker then naps).
func newEventfd() int {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return -1
	}
	return fd
}

var eventOne = [8]byte{1}

// signal wakes the port's receiver: at most one write until the receiver
// next finds its rings empty. The write comes before the flag, so the
// eventfd is never readable with the flag clear (the receiver would then
// never read it, and poll would not sleep); a peer that sees the flag set
// and skips its write is covered by the receiver's look at the rings after
// it clears the flag (RxBurst).
func (p *MemPort) signal() {
	if p.efd >= 0 && !p.signaled.Load() {
		_, _ = unix.Write(p.efd, eventOne[:])
		p.signaled.Store(true)
	}
}

// OpenTx opens a ring towards the peer for one worker.
func (p *MemPort) OpenTx() (TxQueue, error) {
	if p.closed.Load() {
		return nil, ErrPortClosed
	}
	r := &memRing{lens: make([]int, p.depth), slots: make([][]byte, p.depth), mask: uint64(p.depth - 1)}
	mem := make([]byte, p.depth*p.slot)
	for i := range r.slots {
		r.slots[i] = mem[i*p.slot : (i+1)*p.slot : (i+1)*p.slot]
	}
	peer := p.peer
	peer.mu.Lock()
	old := *peer.rings.Load()
	nr := append(append([]*memRing(nil), old...), r)
	peer.rings.Store(&nr)
	peer.mu.Unlock()
	return &memTx{ring: r, port: p}, nil
}

type memTx struct {
	ring *memRing
	port *MemPort
}

// TxBurst copies frames into free slots; frames too big for a slot are freed
// and counted as taken (the caller's counters see them as sent, as a NIC
// would silently drop an oversize frame); a full ring stops the burst.
func (t *memTx) TxBurst(pkts []*Packet) (int, error) {
	r := t.ring
	if t.port.closed.Load() || t.port.peer.closed.Load() {
		return 0, ErrPortClosed
	}
	tail := r.tail.Load()
	head := r.head.Load()
	n := 0
	for _, pk := range pkts {
		if tail-head == uint64(len(r.slots)) {
			break
		}
		i := tail & r.mask
		if pk.Len() <= len(r.slots[i]) {
			r.lens[i] = pk.CopyTo(r.slots[i])
			tail++
		}
		pk.Free()
		n++
	}
	r.tail.Store(tail)
	if n > 0 {
		t.port.peer.signal()
	}
	return n, nil
}

// RxBurst takes frames from the rings of every transmitting worker in turn.
func (p *MemPort) RxBurst(pool *Pool, pkts []*Packet) (int, error) {
	if p.closed.Load() {
		return 0, ErrPortClosed
	}
	n := p.rxRings(pool, pkts)
	if n == 0 && p.efd >= 0 && p.signaled.Load() {
		// Nothing queued: clear the wake-up, then look again. A burst
		// that lands after the clear signals again, so none is slept
		// through; one whose peer skipped its signal (the flag was still
		// set) is already in a ring, and the second look takes it.
		p.signaled.Store(false)
		var buf [8]byte
		_, _ = unix.Read(p.efd, buf[:])
		n = p.rxRings(pool, pkts)
	}
	return n, nil
}

// rxRings takes frames from the rings of every transmitting worker in turn.
func (p *MemPort) rxRings(pool *Pool, pkts []*Packet) int {
	rings := *p.rings.Load()
	n := 0
	for k := 0; k < len(rings) && n < len(pkts); k++ {
		p.next++
		if p.next >= len(rings) {
			p.next = 0
		}
		r := rings[p.next]
		head, tail := r.head.Load(), r.tail.Load()
		for head != tail && n < len(pkts) {
			pk := pool.Get()
			if pk == nil {
				r.head.Store(head)
				return n
			}
			i := head & r.mask
			room := pk.RxRoom()
			m := copy(room, r.slots[i][:r.lens[i]])
			pk.SetFrame(m)
			pkts[n] = pk
			n++
			head++
		}
		r.head.Store(head)
	}
	return n
}
