// Flow cache: the replicate stage's result for a stream, reused for the
// stream's next packets. Packets of one DATA stream arriving on one port
// have the same headers but for a few fields: the IP ID, the lengths, the
// checksums and the SMH sequence number. Their parse, route split, header
// encoding and checksum base then come out the same every time, so the
// worker keeps, per flow, the headers each branch got and a checksum delta,
// and for a packet whose other header bytes match it only compares, copies
// and patches (as OVS's exact-match cache and VPP's flow caches spare the
// full lookup). What stays per packet: the length checks parse makes, the
// aggregate stage's per-receiver state (without its hash lookups), the
// congestion check and the egress queues.
//
//	original:  [ eth | ip (len,id,csum) | udp (len,csum) | smh (seq) | payload ]
//	             compared under the mask: the bracketed fields are not
//	branch i:  [ eth' | ip' | udp' | smh' (set_i, hop-1) ]  + fields patched in
//
// An entry is only used under the table snapshot and the aggregate
// generation it was made with, so a route change or an evicted, expired or
// restarted stream sends the next packet down the full path, which makes a
// fresh entry. The Transfer Epoch (E) is compared with the rest of the
// SMH, so a packet of a new transfer never matches an entry of the old one. Repairs, copies
// that met congestion and packets whose result is not a plain function of
// their headers are never cached.
package dataplane

import (
	"encoding/binary"
)

const (
	// flowSlots is the number of flows a worker remembers (direct
	// mapped: a colliding flow takes the slot over).
	flowSlots = 64
	// flowWords bounds the cached headers (Ethernet to the end of the
	// SMH) to 128 bytes: 16 words compared under a mask.
	flowWords    = 16
	flowMaxHdr   = flowWords * 8
	flowBranches = 16 // copies per packet a flow entry holds
	flowRecv     = 64 // receivers whose aggregate state it holds
)

// flowAgg is a flow's aggregate state: its stream and receivers, valid while
// the aggregator's generation (gen) is unchanged.
type flowAgg struct {
	ok     bool
	stream *streamState
	gen    uint64
	hops   uint8 // the flow's hop limit (compared, not patched: see mask)
	n      int
	recv   [flowRecv]*recvState
	port   [flowRecv]uint8
}

func (fa *flowAgg) add(r *recvState, p uint8) bool {
	if fa.n == flowRecv {
		return false
	}
	fa.recv[fa.n], fa.port[fa.n] = r, p
	fa.n++
	return true
}

// flowBranch is one copy's headers with the per-packet fields zeroed.
type flowBranch struct {
	port uint8
	n    int // header bytes: frame start to the end of the SMH
	hdr  [flowMaxHdr]byte
	// dhl is the change in header length (the set shrinks or grows);
	// lengths in the copy are the original's plus dhl.
	dhl int
	// csum is D of RFC 1624 eqn. 3 for the UDP checksum over everything
	// the copy changes: the copy's checksum is ^fold(^old + csum).
	csum uint64
	// ipSum sums the IPv4 header's words but the total length and the ID
	// (the checksum field is zero): adding the packet's two gives the sum
	// a full recomputation would make.
	ipSum uint64
}

// flowEntry is one cached flow.
type flowEntry struct {
	valid  bool
	tables *Tables
	inPort uint16
	m      parsed
	po     patchOffsets
	nw     int // words compared
	key    [flowWords]uint64
	mask   [flowWords]uint64
	// miss replays what the split counted as not routed.
	miss   uint8
	bucket int // fan-out histogram bucket
	nb     int
	br     [flowBranches]flowBranch
	agg    flowAgg
}

// flowCache is a worker's flow entries, allocated at start.
type flowCache struct {
	e []flowEntry
	// fill is the entry the packet on the full path may fill (nil: none).
	fill *flowEntry
	// off disables the cache (tests compare both paths).
	off bool
	// A run of packets of one cached flow updates the aggregation state
	// once: the run's first packet at once, the rest (pend set, from
	// pendIn) by the highest of their sequence numbers, pendSeq, when the
	// run ends (flushAgg). Every update of a cached packet sets the same
	// fields to the same values but the highest sequence numbers, so this
	// is what updating per packet leaves.
	pend    *flowAgg
	pendIn  uint8
	pendAny bool
	pendSeq uint32
}

func newFlowCache() flowCache { return flowCache{e: make([]flowEntry, flowSlots)} }

// flowSlot picks a frame's slot from bytes that stay the same for a flow in
// the common layouts (untagged IPv4 or IPv6: the addresses and UDP ports).
// Any layout works, since the whole header is compared; some only share
// slots more.
func flowSlot(b []byte, in uint16) int {
	if len(b) < 54 {
		return -1
	}
	var x uint64
	if binary.BigEndian.Uint16(b[12:]) == etherTypeIPv6 {
		x = binary.LittleEndian.Uint64(b[22:]) ^ binary.LittleEndian.Uint64(b[46:])
	} else {
		x = binary.LittleEndian.Uint64(b[26:]) ^ uint64(binary.LittleEndian.Uint32(b[34:]))<<17
	}
	x ^= uint64(in) << 40
	x *= 0x9E3779B97F4A7C15
	return int(x >> 58) // flowSlots == 64
}

// clearVolatile zeroes the bytes of a frame's headers that may differ
// between packets of one flow.
func clearVolatile(h []byte, m *parsed) {
	if m.v6 {
		clear(h[m.ip+4 : m.ip+6]) // payload length
	} else {
		clear(h[m.ip+2 : m.ip+6])   // total length, ID
		clear(h[m.ip+10 : m.ip+12]) // header checksum
	}
	clear(h[m.udp+4 : m.udp+8])   // length, checksum
	clear(h[m.smh+10 : m.smh+14]) // sequence number
}

// startFill prepares entry e for the packet about to take the full path:
// its headers, still unchanged, become the key. It returns false if the
// packet cannot be cached.
func (c *flowCache) startFill(e *flowEntry, pk *Packet, m *parsed, t *Tables) bool {
	e.valid = false
	nw := (m.payload + 7) / 8
	if m.payload > flowMaxHdr || len(pk.own.data)-pk.off < flowMaxHdr {
		return false
	}
	var hb [flowMaxHdr]byte
	copy(hb[:], pk.own.data[pk.off:pk.off+nw*8])
	var mb [flowMaxHdr]byte
	for i := 0; i < m.payload; i++ {
		mb[i] = 0xFF
	}
	clearVolatile(mb[:], m)
	// Every word: those past nw get a zero mask, so matches may compare
	// whole groups of four.
	for i := range flowWords {
		e.mask[i] = binary.LittleEndian.Uint64(mb[8*i:])
		e.key[i] = binary.LittleEndian.Uint64(hb[8*i:]) & e.mask[i]
	}
	e.nw, e.m, e.po, e.tables, e.inPort, e.nb, e.miss = nw, *m, newPatchOffsets(m), t, pk.InPort, 0, 0
	e.agg.ok, e.agg.n, e.agg.stream = false, 0, nil
	return true
}

// addBranch records a copy's headers (hdr, ending with an SMH of hl
// bytes) for port p, as rewriteOuter left them.
func (e *flowEntry) addBranch(hdr []byte, hl int, p uint8) bool {
	if e.nb == flowBranches || len(hdr) > flowMaxHdr {
		return false
	}
	m := &e.m
	b := &e.br[e.nb]
	b.port, b.n = p, len(hdr)
	copy(b.hdr[:], hdr)
	clearVolatile(b.hdr[:], m)
	b.dhl = (m.smh + hl) - m.payload
	// The original's part: its header with the per-packet fields zero.
	var orig [flowMaxHdr]byte
	for i := 0; i < e.nw; i++ {
		binary.LittleEndian.PutUint64(orig[8*i:], e.key[i])
	}
	// variableSum counts the UDP length twice; it is zero in both headers
	// here, and the change in length is added back as 2*dhl (mod 0xFFFF).
	a := variableSum(orig[:], m, orig[m.smh:m.payload])
	d := variableSum(b.hdr[:], m, b.hdr[m.smh:m.smh+hl])
	b.csum = uint64(^fold(a)) + d + uint64((2*b.dhl)%0xFFFF+0xFFFF)
	if !m.v6 {
		b.ipSum = sum16(b.hdr[m.ip:m.udp], 0)
	}
	e.nb++
	return true
}

// lookup returns the cached flow pk belongs to, or nil. slot is pk's slot
// (flowSlot).
func (c *flowCache) lookup(pk *Packet, slot int, t *Tables, agg *aggregator) *flowEntry {
	e := &c.e[slot]
	if !e.valid || e.tables != t || e.inPort != pk.InPort {
		return nil
	}
	if agg != nil && (!e.agg.ok || e.agg.gen != agg.gen) {
		return nil
	}
	if !e.matches(pk) {
		return nil
	}
	return e
}

// matches is the part of lookup that depends on the packet alone: its
// length and its headers under the entry's mask. forwardBurst asks it
// first of the entry that forwarded the previous packet of the burst.
func (e *flowEntry) matches(pk *Packet) bool {
	if len(pk.Head) < e.m.payload || len(pk.own.data)-pk.off < flowMaxHdr {
		return false
	}
	// An array view and masked indexes: no bounds checks in the loop,
	// four words a round (the mask is zero past nw) and two
	// accumulators, which keeps the loop short and in registers.
	b := (*[flowMaxHdr]byte)(pk.own.data[pk.off:])
	k, m := &e.key, &e.mask
	var d0, d1 uint64
	for q := 0; q < e.nw; q += 4 {
		j := q & (flowWords - 4)
		d0 |= (binary.LittleEndian.Uint64(b[8*j:8*j+8])^k[j])&m[j] |
			(binary.LittleEndian.Uint64(b[8*j+8:8*j+16])^k[j+1])&m[j+1]
		d1 |= (binary.LittleEndian.Uint64(b[8*j+16:8*j+24])^k[j+2])&m[j+2] |
			(binary.LittleEndian.Uint64(b[8*j+24:8*j+32])^k[j+3])&m[j+3]
	}
	return d0|d1 == 0
}

// forwardCached sends pk the way its flow's entry says. It returns false,
// having changed nothing, when the packet needs the full path after all:
// lengths parse would refuse, an IPv6 packet without a UDP checksum, or a
// copy that would meet congestion (its header gets a flag the entry lacks).
func (w *Worker) forwardCached(pk *Packet, e *flowEntry) bool {
	m := &e.m
	b := pk.Head
	// The lengths, as parseFrame checks them.
	var end int
	if m.v6 {
		end = m.udp + int(binary.BigEndian.Uint16(b[m.ip+4:]))
	} else {
		end = m.ip + int(binary.BigEndian.Uint16(b[m.ip+2:]))
	}
	ulen := int(binary.BigEndian.Uint16(b[m.udp+4:]))
	if end > len(b) || m.udp+ulen > end || m.udp+ulen < m.payload {
		return false
	}
	old := binary.BigEndian.Uint16(b[m.udp+6:])
	if old == 0 && m.v6 {
		return false
	}
	if pk.off+m.payload < e.br[e.nb-1].n {
		return false // no headroom for the last copy's headers in place
	}
	if w.agg != nil {
		for i := 0; i < e.nb; i++ {
			if w.queues[e.br[i].port].size >= w.agg.cfg.CNPQueueDepth {
				return false
			}
		}
	}
	// Committed: from here on this is the packet's only path.
	b = b[:m.udp+ulen]
	pk.Head = b
	plen := len(b) - m.payload
	pf := pktFields{seq: binary.BigEndian.Uint32(b[m.smh+10:]), ulen: ulen, old: old}
	if !m.v6 {
		pf.id = binary.BigEndian.Uint16(b[m.ip+4:])
	}
	if e.miss&missNoRoute != 0 {
		w.counters.drop(DropNoRoute, 1)
	}
	if e.miss&missLoop != 0 {
		w.counters.drop(DropIngressPort, 1)
	}
	if w.agg != nil {
		w.recordCached(&e.agg, uint8(pk.InPort), pf.seq)
	}
	payload := b[m.payload:]
	last := e.nb - 1
	for i := 0; i < last; i++ {
		br := &e.br[i]
		c := w.pool.newCopy(pk, payload)
		if c == nil {
			w.counters.drop(DropNoBuffer, 1)
			continue
		}
		buf := c.Buffer()
		h := buf[Headroom : Headroom+br.n]
		copy(h, br.hdr[:br.n])
		patchCopy(h, &e.po, br, &pf)
		c.off = Headroom
		c.Head = h
		w.enqueue(br.port, c)
	}
	br := &e.br[last]
	// The last copy is the original, its headers rewritten in place; they
	// end where the payload starts (emitLast checked the room at fill).
	start := pk.off + m.payload - br.n
	buf := pk.own.data
	h := buf[start : start+br.n]
	copy(h, br.hdr[:br.n])
	patchCopy(h, &e.po, br, &pf)
	pk.Head = buf[start : start+br.n+plen]
	pk.off = start
	w.enqueue(br.port, pk)
	w.fanout.add(e.bucket, e.nb)
	return true
}

// recordCached updates the aggregation state for a cached packet, at once
// if it starts a run of its flow, else when the run ends (flushAgg).
func (w *Worker) recordCached(fa *flowAgg, in uint8, seq uint32) {
	fc := &w.flows
	if fc.pend == fa && fc.pendIn == in {
		if !fc.pendAny || seqLess(fc.pendSeq, seq) {
			fc.pendSeq = seq
		}
		fc.pendAny = true
		return
	}
	w.flushAgg()
	w.agg.recordCached(fa, in, seq)
	fc.pend, fc.pendIn = fa, in
}

// flushAgg applies the pending run's update: before anything else reads or
// changes the aggregation state (the full path, the end of a burst).
func (w *Worker) flushAgg() {
	fc := &w.flows
	if fc.pendAny {
		w.agg.recordCached(fc.pend, fc.pendIn, fc.pendSeq)
	}
	fc.pend, fc.pendAny = nil, false
}

// patchOffsets are where patchCopy writes, from the frame's start.
type patchOffsets struct {
	seq, ulen, ucsum int
	iplen            int // IPv4 total length or IPv6 payload length
	id, ipcsum       int // IPv4 only
	ihl              int // IPv4 header length (total = ihl + UDP length)
	v6               bool
}

func newPatchOffsets(m *parsed) patchOffsets {
	o := patchOffsets{seq: m.smh + 10, ulen: m.udp + 4, ucsum: m.udp + 6, v6: m.v6}
	if m.v6 {
		o.iplen = m.ip + 4
	} else {
		o.iplen, o.id, o.ipcsum, o.ihl = m.ip+2, m.ip+4, m.ip+10, m.udp-m.ip
	}
	return o
}

// pktFields are one packet's own values of the fields a flow's packets
// differ in.
type pktFields struct {
	seq  uint32
	id   uint16
	ulen int
	old  uint16 // UDP checksum
}

// patchCopy writes a packet's own fields into a copy of a branch's headers:
// the sequence number, the IPv4 ID, the lengths and both checksums. Each
// write slices exactly its bytes: one bounds check per field.
func patchCopy(h []byte, o *patchOffsets, br *flowBranch, f *pktFields) {
	binary.BigEndian.PutUint32(h[o.seq:o.seq+4], f.seq)
	nu := uint16(f.ulen + br.dhl)
	binary.BigEndian.PutUint16(h[o.ulen:o.ulen+2], nu)
	if o.v6 {
		binary.BigEndian.PutUint16(h[o.iplen:o.iplen+2], nu)
	} else {
		total := uint16(o.ihl) + nu
		binary.BigEndian.PutUint16(h[o.iplen:o.iplen+2], total)
		binary.BigEndian.PutUint16(h[o.id:o.id+2], f.id)
		binary.BigEndian.PutUint16(h[o.ipcsum:o.ipcsum+2], ^fold(br.ipSum+uint64(total)+uint64(f.id)))
	}
	if f.old == 0 {
		return // IPv4 without a UDP checksum: copies keep none
	}
	c := ^fold(uint64(^f.old) + br.csum)
	if c == 0 {
		c = 0xFFFF
	}
	binary.BigEndian.PutUint16(h[o.ucsum:o.ucsum+2], c)
}
