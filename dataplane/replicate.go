// Replicate stage. In: parsed SMH packets and the burst's table snapshot.
// Out: copies on the egress queues, one per egress port that serves at least
// one receiver of the packet, each with the receiver set reduced to that
// port's receivers, the hop limit decremented and the outer headers rewritten
// for the port's neighbour. Copies get a fresh header buffer and share the
// payload; the last copy reuses the original buffer (DPDK ipv4_multicast).
// Feedback (ACK, NACK, CNP, ABORT) is forwarded unchanged towards its Source
// ID. Copies keep the Transfer Epoch (E) of the packet they copy.
package dataplane

import (
	"encoding/binary"

	"github.com/sparsecast/sparsecast/headers"
)

// egressPort is what the rewrite needs to know about a port; built at start.
type egressPort struct {
	mac     [6]byte
	nbrMAC  [6]byte
	hasMAC  bool
	nbrIP4  [4]byte
	hasIP4  bool
	nbrIP6  [16]byte
	hasIP6  bool
	maxLen  int // largest frame the port takes
	counter int // index into CoreCounters.Ports
}

// splitScratch is a worker's preallocated space for splitting one receiver
// set by port: (port, id) pairs in ascending id order, then a stable counting
// sort by port, so each branch's IDs stay ascending as SMH requires.
type splitScratch struct {
	pairPort []uint8
	pairID   []uint16
	sorted   []uint16
	count    [MaxPorts]int32
	start    [MaxPorts]int32
	used     []uint8 // ports with count > 0, in first-use order
}

func newSplitScratch() splitScratch {
	return splitScratch{
		pairPort: make([]uint8, headers.MaxID+1),
		pairID:   make([]uint16, headers.MaxID+1),
		sorted:   make([]uint16, headers.MaxID+1),
		used:     make([]uint8, 0, MaxPorts),
	}
}

// forwardBurst forwards every packet of a burst: a packet of a cached flow
// by its entry (flowcache.go), any other one parsed and replicated in full,
// which caches its flow for the next.
//
// Consecutive packets of a burst mostly belong to one flow, so a packet is
// first compared with the entry that forwarded the packet before it (run),
// which spares the hash and the checks of the entry itself: those cannot
// have changed, since the burst shares one table snapshot and one ingress
// port, and only the full path (after which run is nil) fills entries or
// evicts streams (the aggregate generation).
func (w *Worker) forwardBurst(pkts []*Packet, meta []parsed, t *Tables) {
	fc := &w.flows
	var run *flowEntry
	for i, pk := range pkts {
		slot := -1
		var e *flowEntry
		if run != nil && run.matches(pk) {
			e = run
		} else if !fc.off {
			if slot = flowSlot(pk.Head, pk.InPort); slot >= 0 {
				e = fc.lookup(pk, slot, t, w.agg)
			}
		}
		run = nil
		if e != nil {
			if w.forwardCached(pk, e) {
				run = e
				continue
			}
			// A cached flow that needs the full path this once
			// (congestion): keep its entry.
			slot = -1
		}
		w.flushAgg()
		m := &meta[i]
		m.drop = parseFrame(pk, m, w.udpPort)
		if m.drop == probeFrame {
			w.probeRx(pk.Head, pk.InPort)
			pk.Free()
			continue
		}
		if m.drop != NumDropReasons {
			w.counters.drop(m.drop, 1)
			pk.Free()
			continue
		}
		if headers.SMH(pk.Head[m.smh:]).Type() == headers.TypeData {
			if slot >= 0 {
				fc.fill = &fc.e[slot]
			}
			w.replicate(pk, m, t)
			fc.fill = nil
		} else {
			w.forwardFeedback(pk, m, t)
		}
	}
	w.flushAgg()
}

// uturn decides for a receiver whose active port is the ingress port. If the
// entry is rerouted (its primary is down and it uses its backup), the way out
// is back where the packet came from: a spine that lost its link to a leaf
// hands the packet back to a leaf. If the primary itself points back, a
// neighbour has rerouted through us: take the backup. Anything else would
// loop, and gets NoPort. After a single failure no packet passes a switch
// twice (docs/control.md); the hop limit bounds the rest.
func uturn(rt *RouteTable, id uint16, in uint8) uint8 {
	if rt.Primary(id) != in {
		return in
	}
	if b := rt.Backup(id); b != in {
		return b
	}
	return NoPort
}

// Receivers left out of a packet's split, counted once per packet.
const (
	missNoRoute = 1 << iota
	missLoop
)

// route looks up one receiver and adds it to the split, or notes in miss
// why it could not. It returns the new pair count and miss.
func (s *splitScratch) route(n int, miss uint8, id uint16, rt *RouteTable, in uint8) (int, uint8) {
	p := rt.Lookup(id)
	if p == in {
		p = uturn(rt, id, in)
		if p == NoPort {
			return n, miss | missLoop
		}
	}
	if p == NoPort {
		return n, miss | missNoRoute
	}
	s.add(n, id, p)
	return n + 1, miss
}

// add records receiver id for its egress port.
func (s *splitScratch) add(n int, id uint16, port uint8) {
	if s.count[port] == 0 {
		s.used = append(s.used, port)
	}
	s.count[port]++
	s.pairPort[n] = port
	s.pairID[n] = id
}

// replicate splits one DATA packet's set by egress port and emits the copies.
func (w *Worker) replicate(pk *Packet, m *parsed, t *Tables) {
	s := &w.split
	h := headers.SMH(pk.Head[m.smh:m.payload])
	in := uint8(pk.InPort)
	rt := t.Routes
	n, miss := 0, uint8(0)
	var members []uint16
	cnt := int(h.SetCount())
	// The set is sliced once; entries are read at fixed strides from it.
	set := h.Set()
	switch h.Encoding() {
	case headers.EncList:
		for i := 0; i < cnt; i++ {
			n, miss = s.route(n, miss, binary.BigEndian.Uint16(set[i*headers.ListEntryLen:]), rt, in)
		}
	case headers.EncBlocks:
		for i := 0; i < cnt; i++ {
			e := set[i*headers.BlockEntryLen:]
			base := binary.BigEndian.Uint16(e) << 6
			for bm := binary.BigEndian.Uint64(e[2:]); bm != 0; bm &= bm - 1 {
				n, miss = s.route(n, miss, base+uint16(trailingZeros(bm)), rt, in)
			}
		}
	case headers.EncGroup:
		var ok bool
		if members, ok = t.Groups.Lookup(h.GroupID()); !ok {
			w.counters.drop(DropNoGroup, 1)
			pk.Free()
			return
		}
		for _, id := range members {
			n, miss = s.route(n, miss, id, rt, in)
		}
	}
	f := h.Fields()
	added := false
	if w.agg != nil && f.Flags&headers.FlagRetransmit != 0 {
		// A repair: add the receivers whose NACKs this switch suppressed.
		n0 := n
		n = w.addRepairReceivers(&f, rt, in, n)
		added = n > n0
	}
	if miss&missNoRoute != 0 {
		w.counters.drop(DropNoRoute, 1)
	}
	if miss&missLoop != 0 {
		w.counters.drop(DropIngressPort, 1)
	}
	if n == 0 {
		s.reset()
		pk.Free()
		return
	}
	// Stable counting sort of the pairs by port.
	var off int32
	for _, p := range s.used {
		s.start[p] = off
		off += s.count[p]
	}
	for i := 0; i < n; i++ {
		p := s.pairPort[i]
		s.sorted[s.start[p]] = s.pairID[i]
		s.start[p]++
	}
	fanout := len(s.used)
	// The flow is cached if this packet's result depends on its headers
	// alone: not for a repair (the receivers it adds depend on NACKs).
	fe := w.flows.fill
	w.flows.fill = nil
	if fe != nil && (f.Flags&headers.FlagRetransmit != 0 || fanout > flowBranches || !w.flows.startFill(fe, pk, m, t)) {
		fe = nil
	}
	var fa *flowAgg
	if fe != nil {
		fa = &fe.agg
	}
	if w.agg != nil {
		// Repairs move a receiver's path but say nothing of what it was
		// sent (recordData).
		w.agg.recordData(pk.Head, m, &f, s.pairID[:n], s.pairPort[:n], in, fa)
	}
	f.HopLimit--
	sum := w.checksumBase(pk.Head, m)
	payload := pk.Head[m.payload:]
	w.filling = fe
	end := int32(0)
	for bi, p := range s.used {
		ids := s.sorted[end : end+s.count[p]]
		end += s.count[p]
		if added {
			// The receivers added come after the packet's own (which
			// arrive in ascending order): a set is written ascending.
			sortIDs(ids)
		}
		if bi < fanout-1 {
			w.emitCopy(pk, m, p, f, ids, payload, sum)
		} else {
			w.emitLast(pk, m, p, f, ids, payload, sum)
		}
	}
	w.fanout.add(fanoutBucket(fanout), fanout)
	if fe != nil && w.filling == fe && fe.nb == fanout && (w.agg == nil || fe.agg.ok) {
		fe.miss, fe.bucket, fe.valid = miss, fanoutBucket(fanout), true
	}
	w.filling = nil
	s.reset()
}

func (s *splitScratch) reset() {
	for _, p := range s.used {
		s.count[p] = 0
	}
	s.used = s.used[:0]
}

// addRepairReceivers adds to the split the receivers whose NACKs for this
// sequence number were suppressed here, unless already in it.
func (w *Worker) addRepairReceivers(f *headers.Fields, rt *RouteTable, in uint8, n int) int {
	s := &w.split
	extra := w.agg.repairReceivers(f, w.fbIDs[:0])
	for _, id := range extra {
		if containsID(s.pairID[:n], id) {
			continue
		}
		n, _ = s.route(n, 0, id, rt, in)
	}
	return n
}

// congest marks a copy about to join a deep queue and, at most once per
// interval per stream, sends the switch's own CNP towards the source.
func (w *Worker) congest(port uint8, f headers.Fields) headers.Fields {
	if w.agg == nil {
		return f
	}
	mark, cnp := w.agg.congestion(&f, w.queues[port].size)
	if !mark {
		return f
	}
	f.Flags |= headers.FlagCongestion
	if cnp {
		if st := w.agg.stream(uint32(f.SourceID)<<16|uint32(f.SessionID), false); st != nil {
			if up := w.cur.Routes.Lookup(f.SourceID); up != NoPort {
				w.buildFeedback(st, headers.Fields{
					Type: headers.TypeCNP, HopLimit: headers.DefaultHopLimit, SourceID: f.SourceID,
					SessionID: f.SessionID, Sequence: f.Sequence, Epoch: f.Epoch, Count: 1, SpeaksFor: 1, ReporterID: w.agg.switchID,
				}, nil, up)
			}
		}
	}
	return f
}

// emitCopy sends a fresh header buffer for one branch, sharing the payload.
func (w *Worker) emitCopy(orig *Packet, m *parsed, port uint8, f headers.Fields, ids []uint16, payload []byte, sum csumBase) {
	f = w.congest(port, f)
	hl := f.HeaderLen(ids)
	c := w.pool.newCopy(orig, payload)
	if c == nil {
		w.counters.drop(DropNoBuffer, 1)
		w.filling = nil
		return
	}
	buf := c.Buffer()
	if Headroom+m.smh+hl > len(buf) {
		w.counters.drop(DropTooBig, 1)
		w.filling = nil
		c.Free()
		return
	}
	copy(buf[Headroom:], orig.Head[:m.smh])
	if headers.PutHeader(buf[Headroom+m.smh:], f, ids) != hl {
		// Not reached with an ascending set; a header that cannot be
		// written must not go out half written.
		w.counters.drop(DropBadSet, 1)
		w.filling = nil
		c.Free()
		return
	}
	c.off = Headroom
	c.Head = buf[Headroom : Headroom+m.smh+hl]
	w.rewriteOuter(c.Head, m, hl, len(payload), port, sum)
	w.cacheBranch(c.Head, hl, port, f)
	w.enqueue(port, c)
}

// cacheBranch adds a copy's finished headers to the flow entry being
// filled, or gives the entry up if the copy is not what every packet of
// the flow would get (it met congestion).
func (w *Worker) cacheBranch(hdr []byte, hl int, port uint8, f headers.Fields) {
	if e := w.filling; e != nil && (f.Flags&headers.FlagCongestion != 0 || !e.addBranch(hdr, hl, port)) {
		w.filling = nil
	}
}

// emitLast rewrites the original packet in place for the last branch: the new
// headers end where the payload starts, so a set that shrank moves the start
// of the frame forward and nothing is copied but the headers.
func (w *Worker) emitLast(pk *Packet, m *parsed, port uint8, f headers.Fields, ids []uint16, payload []byte, sum csumBase) {
	f = w.congest(port, f)
	hl := f.HeaderLen(ids)
	payStart := pk.off + m.payload
	start := payStart - hl - m.smh
	if start < 0 {
		// A group expanded beyond the headroom: send a copy instead (and
		// do not cache the flow, whose last copy is always in place).
		w.filling = nil
		w.emitCopy(pk, m, port, f, ids, payload, sum)
		pk.Free()
		return
	}
	buf := pk.own.data
	copy(buf[start:], pk.Head[:m.smh])
	if headers.PutHeader(buf[start+m.smh:payStart], f, ids) != hl {
		w.counters.drop(DropBadSet, 1) // as in emitCopy
		w.filling = nil
		pk.Free()
		return
	}
	pk.Head = buf[start : payStart+len(payload)]
	pk.off = start
	w.rewriteOuter(pk.Head[:m.smh+hl], m, hl, len(payload), port, sum)
	w.cacheBranch(pk.Head[:m.smh+hl], hl, port, f)
	w.enqueue(port, pk)
}

// sendAggregate sends an aggregated ACK at seq naming set up a's port.
func (w *Worker) sendAggregate(h headers.SMH, a *ackOut, seq uint32, set []uint16) {
	w.buildFeedback(a.stream, headers.Fields{
		Type: headers.TypeACK, Flags: headers.FlagAggregated, HopLimit: headers.DefaultHopLimit,
		SourceID: h.SourceID(), SessionID: h.SessionID(), Sequence: seq, Epoch: a.stream.epoch,
		SpeaksFor: uint16(min(len(set), 0xFFFF)), ReporterID: w.agg.switchID,
	}, set, a.up.port)
	inc(&w.agg.counts[headers.TypeACK][FbUp], 1)
}

// forwardFeedback sends ACK, NACK, CNP and ABORT one hop towards their
// source, through the aggregate stage when it is on.
func (w *Worker) forwardFeedback(pk *Packet, m *parsed, t *Tables) {
	h := headers.SMH(pk.Head[m.smh:m.payload])
	p := t.Routes.Lookup(h.SourceID())
	if w.agg != nil && p != NoPort && p != uint8(pk.InPort) {
		ids := h.AppendReceivers(w.fbIDs[:0])
		acks := &w.acks
		*acks = [maxUpstreams]ackOut{}
		v, up := w.agg.onFeedback(h, uint8(pk.InPort), ids, acks)
		switch v {
		case fbSpoofed:
			w.counters.drop(DropFeedbackSpoofed, 1)
			pk.Free()
			return
		case fbStale:
			w.counters.drop(DropFeedbackStale, 1)
			pk.Free()
			return
		}
		// An ACK's aggregates replace it; an ABORT's go up besides it.
		for i := range acks {
			a := &acks[i]
			if a.send {
				w.sendAggregate(h, a, a.seq, a.stream.speakers(a.seq, a.up, w.fbIDs[:0]))
			}
			if a.lag {
				w.sendAggregate(h, a, a.lagSeq, a.stream.laggards(a.lagSeq, a.up, w.fbIDs[:0]))
			}
		}
		if v == fbConsume {
			pk.Free()
			return
		}
		if up != NoPort && up != uint8(pk.InPort) {
			// Back along the reverse of the reporters' data path, so the
			// switches that forwarded their DATA see their feedback.
			p = up
		}
		inc(&w.agg.counts[h.Type()][FbUp], 1)
	}
	switch {
	case p == NoPort:
		w.counters.drop(DropNoRoute, 1)
		pk.Free()
		return
	case p == uint8(pk.InPort):
		w.counters.drop(DropIngressPort, 1)
		pk.Free()
		return
	}
	sum := w.checksumBase(pk.Head, m)
	h.SetHopLimit(h.HopLimit() - 1)
	hl := m.payload - m.smh
	w.rewriteOuter(pk.Head[:m.payload], m, hl, len(pk.Head)-m.payload, p, sum)
	w.enqueue(p, pk)
}

// csumBase is ~HC + ~m of RFC 1624 eqn. 3 for the original packet's UDP
// checksum, where m sums everything a copy may change (destination address,
// the UDP length in pseudo-header and header, and the SMH). Adding a copy's
// m' and complementing gives the copy's checksum. zero means the original
// had no checksum (IPv4 only), which copies keep.
type csumBase struct {
	acc  uint64
	zero bool
}

func (w *Worker) checksumBase(frame []byte, m *parsed) csumBase {
	old := binary.BigEndian.Uint16(frame[m.udp+6:])
	if old == 0 && !m.v6 {
		return csumBase{zero: true}
	}
	if old == 0 {
		// IPv6 without a checksum is invalid (RFC 8200); copies get a valid
		// one: sum the parts no copy changes (payload, source address,
		// ports, next header) once.
		acc := sum16(frame[m.payload:], 0)
		acc = sum16(frame[m.ip+8:m.ip+24], acc)
		acc = sum16(frame[m.udp:m.udp+4], acc+ipProtoUDP)
		return csumBase{acc: acc}
	}
	acc := uint64(^old)
	acc += uint64(^fold(variableSum(frame, m, frame[m.smh:m.payload])))
	return csumBase{acc: acc}
}

// variableSum sums the parts of a frame's UDP checksum that replication may
// change: the destination IP, the UDP length (twice: pseudo-header and
// header) and the SMH bytes.
func variableSum(frame []byte, m *parsed, smh []byte) uint64 {
	var acc uint64
	if m.v6 {
		acc = sum16(frame[m.ip+24:m.ip+40], 0)
	} else {
		acc = sum16(frame[m.ip+16:m.ip+20], 0)
	}
	ulen := uint64(binary.BigEndian.Uint16(frame[m.udp+4:]))
	return sum16(smh, acc+2*ulen)
}

// rewriteOuter fixes the Ethernet, IP and UDP headers of a copy whose SMH is
// hl bytes and whose payload is plen bytes, for egress port p. hdr holds the
// frame's headers up to the end of the SMH.
func (w *Worker) rewriteOuter(hdr []byte, m *parsed, hl, plen int, p uint8, sum csumBase) {
	e := &w.egress[p]
	if e.hasMAC {
		copy(hdr[0:6], e.nbrMAC[:])
	}
	copy(hdr[6:12], e.mac[:])
	ulen := udpHdrLen + hl + plen
	if m.v6 {
		binary.BigEndian.PutUint16(hdr[m.ip+4:], uint16(ulen))
		if e.hasIP6 {
			copy(hdr[m.ip+24:m.ip+40], e.nbrIP6[:])
		}
	} else {
		ip := hdr[m.ip:m.udp]
		binary.BigEndian.PutUint16(ip[2:], uint16(m.udp-m.ip+ulen))
		if e.hasIP4 {
			copy(ip[16:20], e.nbrIP4[:])
		}
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ipv4HeaderChecksum(ip))
	}
	binary.BigEndian.PutUint16(hdr[m.udp+4:], uint16(ulen))
	if sum.zero {
		return
	}
	c := ^fold(sum.acc + variableSum(hdr, m, hdr[m.smh:m.smh+hl]))
	if c == 0 {
		c = 0xFFFF
	}
	binary.BigEndian.PutUint16(hdr[m.udp+6:], c)
}
