// External buffers: a pool whose buffers belong to another allocator, so a
// port can hand the switch frames where its device put them (DPDK mbufs in a
// mempool) and take them back by reference on transmit. The switch code does
// not change: a packet from an external pool is parsed, replicated and
// queued like any other, and its copies still share its payload.
//
// Ownership. The owner lends a buffer with Adopt (one reference). When the
// last reference drops, the buffer is not put on a free list: its handle is
// queued for the owner, who collects it with Released and gives it back to
// its allocator. A transmit queue that sends the buffer itself calls
// ConsignRef instead of Free, taking over the pool's reference when it is
// the last one. Every call on an external pool and its packets comes from
// the one worker that receives from the owner's port, as for an ordinary
// pool.
package dataplane

// NewExternalPool returns a pool over external buffers: bufs[i] is buffer
// i's whole memory and handles[i] (non-zero) the owner's name for it. The
// pool lends nothing by itself: Get returns nil until the owner lends it
// buffers (Lend).
func NewExternalPool(bufs [][]byte, handles []uintptr) *Pool {
	p := &Pool{all: make([]Buf, len(bufs)), released: make([]uintptr, 0, len(bufs)), free: make([]*Buf, 0, len(bufs))}
	for i := range p.all {
		b := &p.all[i]
		// Full slice expressions: cap == len, so a view's offset in its
		// buffer is len(data) - cap(view) (ConsignRef).
		b.data = bufs[i][:len(bufs[i]):len(bufs[i])]
		b.ext = handles[i]
		b.pool = p
		b.pkt.own = b
		p.size = max(p.size, len(b.data))
	}
	return p
}

// Adopt makes buffer i, into which the owner has just put an n-byte frame at
// offset off, a packet with one reference. The owner must not adopt a buffer
// the pool still references.
func (p *Pool) Adopt(i, off, n int) *Packet {
	b := &p.all[i]
	b.refs = 1
	pk := &b.pkt
	pk.off = off
	pk.Head = b.data[off : off+n]
	return pk
}

// Lend gives the pool buffer i to lend: Get returns it (last lent, first
// out) until its last reference drops and its handle is Released again. The
// owner must not lend a buffer twice before it comes back.
func (p *Pool) Lend(i int) {
	p.free = append(p.free, &p.all[i])
}

// Lendable is how many more buffers the pool takes to lend before it holds
// want of them.
func (p *Pool) Lendable(want int) int { return max(0, want-len(p.free)) }

// Unlend takes back the buffers lent and not taken (Get) and returns their
// handles, for the owner to give back; the slice is reused like Released's.
func (p *Pool) Unlend() []uintptr {
	r := p.released
	for _, b := range p.free {
		r = append(r, b.ext)
	}
	p.free = p.free[:0]
	p.released = r[:0]
	return r
}

// UseHeaders makes p take the header buffers of the copies it makes from h
// (an external pool its owner lends buffers into) while h has some, so a
// copy's header is written into the buffer that is sent. nil stops it.
func (p *Pool) UseHeaders(h *Pool) { p.hdr = h }

// Released returns the handles of the buffers whose last reference dropped
// since the previous call and forgets them. The slice is reused: read it
// before the next Free of a packet of this pool.
func (p *Pool) Released() []uintptr {
	r := p.released
	p.released = p.released[:0]
	return r
}

// ConsignRef gives a transmit queue, in one call per packet, what it needs
// to send the packet by reference: the handle of the external buffer
// holding Head (0 if Head is in an ordinary buffer), Head's offset in it and
// length, and the same for Tail (tail is 0 if there is no Tail or it is in
// an ordinary buffer). When the whole frame is in external buffers (ok), it
// also ends the packet's life on the Go side: references are dropped as
// Free drops them, except the head buffer's last one, which passes to the
// queue (the buffer is neither freed nor released). ref then says that
// other packets still share the head buffer, so the queue must take a
// reference of its own. When not ok, the packet is left as it was.
func (p *Packet) ConsignRef() (head uintptr, off, n int, tail uintptr, toff, tn int, ref, ok bool) {
	b := p.own
	head, off, n, tn = b.ext, p.off, len(p.Head), len(p.Tail)
	if s := p.shared; s != nil && s.ext != 0 && tn != 0 {
		// Full slice expressions: cap(view) == len(data) - offset.
		tail, toff = s.ext, len(s.data)-cap(p.Tail)
	}
	if head == 0 || (tail == 0 && tn != 0) {
		return head, off, n, tail, toff, tn, false, false
	}
	if s := p.shared; s != nil {
		s.unref()
	}
	// Only the references to other buffers go: Adopt, the one way an
	// external buffer is lent again, sets the rest, and resetting the
	// whole Packet (write barriers and all) was a fifth of this call.
	p.shared, p.Tail = nil, nil
	if b.refs == 1 {
		b.refs = 0
		return head, off, n, tail, toff, tn, false, true
	}
	b.refs--
	return head, off, n, tail, toff, tn, true, true
}
