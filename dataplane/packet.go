// Packet buffers: fixed-size buffers preallocated per worker, each carrying
// the descriptor of the packet it holds, so nothing on the packet path
// allocates. A replicated copy is a fresh header buffer whose Packet points at
// the original's payload (Tail) and holds a reference to it, as DPDK's
// ipv4_multicast chains a header mbuf to an indirect payload mbuf.
//
//	original Buf:  [ headroom | eth ip udp smh(set) | payload ............ ]
//	                           ^Head (last copy rewrites in place, set shrinks
//	                                  so Head starts later)    ^Tail shared
//	header Buf:    [ eth ip udp smh(branch set) ]  --Tail--> original payload
package dataplane

// Headroom is reserved at the front of every buffer so that a rewritten header
// that grows (a group expanded into a list) still fits in front of the payload.
const Headroom = 256

// Buf is one packet buffer. Reference counts are plain integers: a Buf never
// leaves the worker that owns its Pool.
type Buf struct {
	data []byte
	refs int32
	pool *Pool
	pkt  Packet
	// ext is the owner's handle of an external buffer (a DPDK mbuf's
	// address); 0 for the buffers of an ordinary pool.
	ext uintptr
}

// Packet is a frame in flight. The frame is Head followed by Tail; Tail is
// empty unless this is a copy sharing another packet's payload.
type Packet struct {
	Head []byte
	Tail []byte
	// InPort is the index of the port the packet arrived on.
	InPort uint16
	off    int  // offset of Head in own.data
	own    *Buf // buffer holding Head
	shared *Buf // buffer holding Tail, referenced; nil if none
}

// Len is the frame length on the wire.
func (p *Packet) Len() int { return len(p.Head) + len(p.Tail) }

// CopyTo writes the whole frame into dst and returns the bytes written.
func (p *Packet) CopyTo(dst []byte) int {
	n := copy(dst, p.Head)
	return n + copy(dst[n:], p.Tail)
}

// Free releases the packet and its reference to a shared payload.
func (p *Packet) Free() {
	if p.shared != nil {
		p.shared.unref()
		p.shared = nil
	}
	p.Tail = nil
	p.own.unref()
}

// Buffer returns the whole buffer behind Head, headroom included, for ports
// that receive into it. Head is set by SetFrame.
func (p *Packet) Buffer() []byte { return p.own.data }

// SetFrame makes Head the n bytes received at the Headroom offset.
func (p *Packet) SetFrame(n int) {
	p.off = Headroom
	p.Head = p.own.data[Headroom : Headroom+n]
}

// RxRoom is the largest frame a port may receive into this packet's buffer.
func (p *Packet) RxRoom() []byte { return p.own.data[Headroom:] }

func (b *Buf) unref() {
	b.refs--
	if b.refs == 0 {
		b.pkt = Packet{own: b}
		if b.ext != 0 {
			// Its owner gives it back (external.go).
			b.pool.released = append(b.pool.released, b.ext)
			return
		}
		b.pool.free = append(b.pool.free, b)
	}
}

// Pool is a worker's buffer pool. It is not safe for concurrent use: each
// worker owns one, allocated at start.
type Pool struct {
	free []*Buf
	all  []Buf
	size int
	// released holds the handles of external buffers whose last reference
	// dropped (external.go); always empty for an ordinary pool.
	released []uintptr
	// hdr, when set (UseHeaders), lends the header buffers of copies, so a
	// port can have each copy's header written straight into the buffer
	// its device sends (a DPDK header mbuf); copies come from this pool
	// when hdr has none to lend.
	hdr *Pool
}

// NewPool allocates n buffers of size bytes each (Headroom included).
func NewPool(n, size int) *Pool {
	p := &Pool{free: make([]*Buf, 0, n), all: make([]Buf, n), size: size}
	mem := make([]byte, n*size)
	for i := range p.all {
		b := &p.all[i]
		b.data = mem[i*size : (i+1)*size : (i+1)*size]
		b.pool = p
		b.pkt.own = b
		p.free = append(p.free, b)
	}
	return p
}

// Get returns a free packet with one reference, or nil when the pool is empty.
func (p *Pool) Get() *Packet {
	n := len(p.free)
	if n == 0 {
		return nil
	}
	b := p.free[n-1]
	p.free = p.free[:n-1]
	b.refs = 1
	return &b.pkt
}

// Available is the number of free buffers.
func (p *Pool) Available() int { return len(p.free) }

// Cap is the number of buffers in the pool.
func (p *Pool) Cap() int { return len(p.all) }

// BufSize is the size of each buffer.
func (p *Pool) BufSize() int { return p.size }

// newCopy returns a fresh header packet sharing orig's payload tail: from
// the header pool if it has one to lend, else from p.
func (p *Pool) newCopy(orig *Packet, payload []byte) *Packet {
	var c *Packet
	if h := p.hdr; h != nil && len(h.free) > 0 {
		c = h.Get()
	} else {
		c = p.Get()
	}
	if c == nil {
		return nil
	}
	orig.own.refs++
	c.shared = orig.own
	c.Tail = payload
	c.InPort = orig.InPort
	return c
}
