// Aggregate stage (docs/feedback.md). In: what the replicate stage forwards
// (per DATA packet, the receivers and their egress ports) and the feedback
// (ACK, NACK, CNP, ABORT) coming back up from those ports. Out: one message per
// event towards the source: an ACK when the lowest acknowledged sequence over
// every receiver below rises, naming the receivers it speaks for (those that
// stop reporting are left out: its exceptions), the first NACK of a range
// (later overlapping ones are
// suppressed, and their reporters added to the repair when it comes down),
// the most severe CNP per interval, and CNPs of the switch's own when a DATA
// copy meets a deep egress queue. ABORTs go up as they are and take the
// receivers they name out of the aggregate. State is per (Source ID, Session
// ID) and holds one transfer's Transfer Epoch (docs/smh.md 2.2): DATA of
// another epoch restarts it, feedback of another epoch is stale and dropped,
// and state idle for feedback.idle_timeout is freed. It is bounded and owned
// by this worker: nothing is shared between cores.
package dataplane

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

// Feedback counters, exported as sparsecast_switch_feedback_total{type,action}.
const (
	FbIn         = iota // feedback packets received
	FbUp                // sent upstream (forwarded or aggregated)
	FbAbsorbed          // ACKs folded into an aggregate
	FbSuppressed        // NACKs and CNPs suppressed as duplicates
	FbGenerated         // made by this switch (aggregated ACKs, own CNPs)
	FbUnknown           // for a stream without state: forwarded as is
	FbEvicted           // NACK state dropped for lack of room (nack_ranges)
	NumFbActions
)

var fbActionNames = [NumFbActions]string{"in", "up", "absorbed", "suppressed", "generated", "unknown", "evicted"}

// FbActionName names a feedback action for metrics.
func FbActionName(a int) string { return fbActionNames[a] }

const (
	noEntry = -1
	// nackReporters bounds the suppressed reporters remembered per range:
	// at a switch they are mostly one per downstream port (each port's
	// first NACK; the next switch down suppressed the rest). Beyond it a
	// reporter is not added to the repair and asks again.
	nackReporters = 16
)

type recvState struct {
	id       uint16
	port     uint8 // where its DATA goes (downstream)
	up       uint8 // where its DATA came from: its feedback goes back there
	hops     uint8 // the hop limit its DATA came in with on up (see upstream)
	seen     bool
	hasAck   bool
	excepted bool // left out of the last aggregate sent (an exception)
	// told is the highest sequence an aggregate sent upstream named it
	// at (valid with hasTold): an exception's own progress goes up in a
	// laggard report only when it moved past that (see aggregate).
	told    uint32
	hasTold bool
	// aborted: an ABORT named it (it cannot store the stream); it no
	// longer holds aggregates back and they no longer name it.
	aborted bool
	// partial: only repairs reached it through this switch so far (its
	// path moved here after a failure), so the switch cannot tell what it
	// was sent: it speaks for it only at its own ACK, never as complete.
	partial bool
	// detour is a port its copies went out of and came back in on (a
	// neighbour's fast reroute turning them around, until control moves
	// the route): copies to it do not move the receiver's downstream port,
	// which stays where the returning copies go, the way its feedback comes.
	detour     uint8
	hasDetour  bool
	detourAt   int64
	first      uint32 // first sequence forwarded to it
	last       uint32 // highest sequence forwarded to it
	ack        uint32 // its cumulative ACK
	lastReport int64  // when it last reported (ns)
}

// detourHold is how long after the last copy that came back a port stays
// a receiver's detour (a healed link stops the U-turns).
const detourHold = int64(100 * time.Millisecond)

// maxUpstreams bounds the upstream ports one stream's DATA arrives on at a
// switch (in a Clos fabric: the spines or cores it is spread over).
const maxUpstreams = 8

// upstream is the aggregate state of the receivers whose DATA comes in on
// one port with one hop limit. The hop limit tells paths apart that share
// the last hop: after a neighbour's fast reroute, copies for some receivers
// come in on the same port as the others' but a few hops (and some packets)
// behind them, and counting them complete up to the direct copies' highest
// sequence number let a source free packets still on their way round.
type upstream struct {
	port uint8
	hops uint8
	used bool
	// highest is the highest sequence number that came in on this port for
	// the receivers behind it. A receiver that acknowledged everything it
	// was sent through this port is complete up to highest+1, and no
	// further: DATA on another upstream port may be ahead, and what is
	// still in flight on this one is not here yet.
	highest uint32
	ack     uint32 // the aggregate last sent
	at      int64  // when (0: never)
	speaks  int    // how many receivers it spoke for
	// lagAt is when the last laggard report went up (see aggregate).
	lagAt int64
}

// upstreamFor returns the aggregate state for an upstream port and hop
// limit.
func (s *streamState) upstreamFor(port, hops uint8) *upstream {
	for i := range s.ups {
		u := &s.ups[i]
		if u.used && u.port == port && u.hops == hops {
			return u
		}
	}
	for i := range s.ups {
		u := &s.ups[i]
		if !u.used {
			*u = upstream{port: port, hops: hops, used: true, ack: s.first, highest: s.first}
			return u
		}
	}
	return &s.ups[0] // more upstream paths than tracked: share the first
}

// behind says whether receiver r's feedback is aggregated in u.
func (r *recvState) behind(u *upstream) bool { return r.up == u.port && r.hops == u.hops }

type nackEntry struct {
	start, count uint32
	at           int64
	// sampled: the delay from at (when it last went up) to its first
	// repair passing down was taken into the stream's repairDelay.
	sampled   bool
	reporters [nackReporters]nackReporter
	n         int
	// block: a block NACK's entry (SMH P): start is the block's first
	// sequence number, count the parity symbols asked for that have not
	// passed down yet.
	block bool
}

// nackReporter is a receiver whose NACK was suppressed, with its own range.
type nackReporter struct {
	id           uint16
	start, count uint32
}

type streamState struct {
	key     uint32
	used    bool
	lastUse int64
	// epoch is the Transfer Epoch of the transfer this state is about (0:
	// a sender without epochs).
	epoch uint32
	// sparse: the stream's DATA carries S (its receiver set changes per
	// packet, docs/smh.md), so a receiver this switch sent nothing more may
	// be credited with the stream's later packets (effective).
	sparse  bool
	ports   PortSet
	started bool
	first   uint32 // the first sequence number seen here
	// ups is the aggregate state per upstream port: receivers whose DATA
	// came in on different ports (one spine or another) are acknowledged
	// back through their own port, the reverse of their data path.
	ups   [maxUpstreams]upstream
	recv  []recvState // len = receivers tracked, cap = ReceiversPerStream
	slots []int16     // open addressing over recv, by receiver ID
	nacks []nackEntry // len = cfg.NackRanges
	// repairDelay is the smoothed delay from a NACK going up to its first
	// repair coming down (0: none seen). A NACK within a range asked for is
	// suppressed for 1.5 times that, at least nack_window: on a loaded or
	// long path (round trips of 100 ms and more) a 5 ms window let every
	// later receiver's NACK go up while the repair was on its way.
	repairDelay int64
	cnpAt       int64
	cnpSev      uint16
	// template holds the outer headers (Ethernet to UDP) of the last DATA
	// packet, from which the switch builds the feedback it generates.
	template    [ethHdrLen + vlanTagLen + ipv6HdrLen + udpHdrLen]byte
	templateLen int
	tm          parsed
}

// aggregator is one worker's feedback state.
type aggregator struct {
	cfg      FeedbackConfig
	switchID uint16
	streams  []streamState
	slots    []int32 // open addressing over streams, by key
	n        int
	counts   *[NumFbTypes][NumFbActions]atomic.Uint64
	now      int64
	evicted  *atomic.Uint64
	// expired and restarted count states freed for idleness and states
	// restarted by DATA of a new Transfer Epoch.
	expired, restarted *atomic.Uint64
	// sweep is where the idle sweep goes on next (expireIdle).
	sweep int
	// gen changes whenever a stream's state is dropped or restarted (and
	// its slot may be reused), so flow entries holding pointers into it go
	// stale. (Not the Transfer Epoch, which streamState.epoch holds.)
	gen uint64
}

func newAggregator(cfg FeedbackConfig, switchID uint16, c *CoreCounters) *aggregator {
	a := &aggregator{cfg: cfg, switchID: switchID, counts: &c.Feedback, evicted: &c.StreamsEvicted,
		expired: &c.StreamsExpired, restarted: &c.StreamsRestarted}
	a.streams = make([]streamState, cfg.Streams)
	a.slots = make([]int32, pow2(2*cfg.Streams))
	for i := range a.slots {
		a.slots[i] = noEntry
	}
	rps := cfg.ReceiversPerStream
	nacks := make([]nackEntry, cfg.Streams*cfg.NackRanges)
	for i := range a.streams {
		a.streams[i].nacks = nacks[i*cfg.NackRanges : (i+1)*cfg.NackRanges : (i+1)*cfg.NackRanges]
	}
	recv := make([]recvState, cfg.Streams*rps)
	slots := make([]int16, cfg.Streams*pow2(2*rps))
	for i := range a.streams {
		s := &a.streams[i]
		s.recv = recv[i*rps : i*rps : (i+1)*rps]
		w := pow2(2 * rps)
		s.slots = slots[i*w : (i+1)*w : (i+1)*w]
	}
	return a
}

func pow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

func hash32(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x7feb352d
	x ^= x >> 15
	x *= 0x846ca68b
	return x ^ x>>16
}

// serial-number order (RFC 1982)
func seqLess(a, b uint32) bool { return int32(a-b) < 0 }

// stream finds the state of a stream, creating it (evicting the least
// recently used one when full) if create is set.
func (a *aggregator) stream(key uint32, create bool) *streamState {
	mask := uint32(len(a.slots) - 1)
	for i := hash32(key) & mask; ; i = (i + 1) & mask {
		e := a.slots[i]
		if e == noEntry {
			if !create {
				return nil
			}
			if a.n == len(a.streams) {
				a.evictLRU()
				return a.stream(key, true)
			}
			idx := a.freeStream()
			s := &a.streams[idx]
			s.reset(key)
			a.slots[i] = int32(idx)
			a.n++
			return s
		}
		if a.streams[e].key == key {
			return &a.streams[e]
		}
	}
}

func (a *aggregator) freeStream() int {
	for i := range a.streams {
		if !a.streams[i].used {
			return i
		}
	}
	return 0 // not reached: callers evict first
}

func (s *streamState) reset(key uint32) {
	recv, slots, nacks := s.recv[:0], s.slots, s.nacks
	*s = streamState{key: key, used: true, recv: recv, slots: slots, nacks: nacks}
	for i := range s.slots {
		s.slots[i] = noEntry
	}
	clear(s.nacks)
}

// evictLRU drops the least recently used stream (a rare event: counted).
func (a *aggregator) evictLRU() {
	victim := 0
	for i := range a.streams {
		if a.streams[i].lastUse < a.streams[victim].lastUse {
			victim = i
		}
	}
	a.remove(a.streams[victim].key)
	inc(a.evicted, 1)
}

// idleSweep is how many stream slots expireIdle looks at per round: the
// table is swept in len(streams)/idleSweep rounds (every round is at most
// the worker's poll timeout apart), and no round does more than this.
const idleSweep = 4

// expireIdle frees the state of streams that saw neither DATA nor feedback
// for feedback.idle_timeout, looking at idleSweep slots from where the last
// round stopped. It runs once per poll round, with that round's clock.
func (a *aggregator) expireIdle() {
	if a.n == 0 {
		return
	}
	idle := int64(a.cfg.IdleTimeout)
	for range min(idleSweep, len(a.streams)) {
		if a.sweep >= len(a.streams) {
			a.sweep = 0
		}
		s := &a.streams[a.sweep]
		a.sweep++
		if s.used && a.now-s.lastUse > idle {
			a.remove(s.key)
			inc(a.expired, 1)
		}
	}
}

// remove deletes a stream with backward-shift deletion.
func (a *aggregator) remove(key uint32) {
	mask := uint32(len(a.slots) - 1)
	i := hash32(key) & mask
	for a.slots[i] != noEntry && a.streams[a.slots[i]].key != key {
		i = (i + 1) & mask
	}
	if a.slots[i] == noEntry {
		return
	}
	a.streams[a.slots[i]].used = false
	a.gen++
	a.slots[i] = noEntry
	a.n--
	for j := (i + 1) & mask; a.slots[j] != noEntry; j = (j + 1) & mask {
		e := a.slots[j]
		home := hash32(a.streams[e].key) & mask
		// Move e into the hole if the hole lies between its home and j.
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			a.slots[i], a.slots[j] = e, noEntry
			i = j
		}
	}
}

// receiver finds (or, with create, adds) a receiver's state in a stream.
// It returns nil when the stream tracks as many receivers as it may.
func (s *streamState) receiver(id uint16, create bool) *recvState {
	mask := uint32(len(s.slots) - 1)
	for i := hash32(uint32(id)) & mask; ; i = (i + 1) & mask {
		e := s.slots[i]
		if e == noEntry {
			if !create || len(s.recv) == cap(s.recv) {
				return nil
			}
			s.recv = append(s.recv, recvState{id: id})
			s.slots[i] = int16(len(s.recv) - 1)
			return &s.recv[len(s.recv)-1]
		}
		if s.recv[e].id == id {
			return &s.recv[e]
		}
	}
}

// recordData notes a DATA packet forwarded to receivers ids[i] via ports[i].
// With fa set it also remembers the stream and the receivers' states, so
// that later packets of the flow skip both hash lookups (recordCached).
func (a *aggregator) recordData(frame []byte, m *parsed, f *headers.Fields, ids []uint16, ports []uint8, in uint8, fa *flowAgg) {
	key := uint32(f.SourceID)<<16 | uint32(f.SessionID)
	s := a.stream(key, true)
	if s.started && s.epoch != f.Epoch {
		// A new transfer on the source's session (a new sender, a
		// restart): the old one is over and its state says nothing of
		// this one, whose sequence numbers start afresh.
		s.reset(key)
		a.gen++ // flow entries point into the old receivers' state
		inc(a.restarted, 1)
	}
	s.lastUse = a.now
	if !s.started {
		// Nothing below the first packet seen here is ours to acknowledge.
		s.started, s.first, s.epoch = true, f.Sequence, f.Epoch
	}
	if f.Flags&headers.FlagSparse != 0 {
		s.sparse = true
	}
	repair := f.Flags&headers.FlagRetransmit != 0
	var u *upstream // the upstream state of the last receiver's r.up
	for i, id := range ids {
		r := s.receiver(id, true)
		if r == nil {
			break // bounded: receivers beyond the cap get no aggregation
		}
		p := ports[i]
		s.ports.Add(p)
		u = a.noteData(s, r, p, in, f.HopLimit, f.Sequence, repair, u)
		if fa != nil && !fa.add(r, p) {
			fa = nil // more receivers than a flow entry holds
		}
	}
	if repair {
		if f.Flags&headers.FlagParity != 0 {
			s.parityPassed(f.Sequence, a.now)
		} else {
			s.repaired(f.Sequence, a.now)
		}
	}
	if n := m.smh; n <= len(s.template) {
		s.templateLen = copy(s.template[:], frame[:n])
		s.tm = *m
	}
	if fa != nil {
		// After stream(), which may have evicted (and so moved) streams.
		fa.stream, fa.gen, fa.hops, fa.ok = s, a.gen, f.HopLimit, true
	}
}

// recordCached is recordData for a packet of a cached flow: the same
// stream and receivers, found without a lookup. The stream's template is
// left as the flow's first packet made it: later packets differ from it
// only in fields feedback does not use (IP ID, lengths, checksums,
// sequence number).
func (a *aggregator) recordCached(fa *flowAgg, in uint8, seq uint32) {
	s := fa.stream
	s.lastUse = a.now
	var u *upstream
	for i := 0; i < fa.n; i++ {
		u = a.noteData(s, fa.recv[i], fa.port[i], in, fa.hops, seq, false, u)
	}
}

// noteData updates one receiver's state for a DATA packet with sequence
// number seq that came in on in with hop limit hops and leaves for it on p. u is the upstream
// state used for the previous receiver (nil at first); it returns the one
// used for this receiver.
func (a *aggregator) noteData(s *streamState, r *recvState, p, in, hops uint8, seq uint32, repair bool, u *upstream) *upstream {
	if r.seen && (in == r.port || r.hasDetour && in == r.detour) {
		// A packet coming back in on a port it went out of is a
		// U-turn (a neighbour rerouted around a failure): the
		// receiver's feedback still goes back the original way.
		r.detour, r.hasDetour, r.detourAt = in, true, a.now
	} else {
		r.up, r.hops = in, hops
	}
	if r.hasDetour && p == r.detour && a.now-r.detourAt <= detourHold {
		// This copy will come back: the receiver's path goes on
		// from where the returning copy is sent.
	} else {
		r.port = p
		if r.hasDetour && p == r.detour {
			r.hasDetour = false // nothing came back for a while
		}
	}
	if u == nil || !r.behind(u) {
		u = s.upstreamFor(r.up, r.hops)
	}
	if repair {
		// A repair moves the receiver's path (after a failure the
		// source may send nothing but repairs until it hears ACKs
		// along the new one) but says nothing of what it was sent.
		if !r.seen {
			r.seen, r.partial, r.first, r.last, r.lastReport = true, true, seq, seq, a.now
		}
		return u
	}
	if seqLess(u.highest, seq) {
		u.highest = seq
	}
	switch {
	case !r.seen:
		r.seen, r.first, r.last, r.lastReport = true, seq, seq, a.now
	case r.partial:
		// From its first original DATA on, the switch sees what it is
		// sent: the ACK that covers this packet may count it complete.
		r.partial, r.last = false, seq
	case seqLess(r.last, seq):
		r.last = seq
	}
	return u
}

// repairReceivers appends to dst the reporters whose NACKs for seq this
// switch suppressed (for a parity repair, P: the reporters of the block's
// suppressed block NACKs).
func (a *aggregator) repairReceivers(f *headers.Fields, dst []uint16) []uint16 {
	s := a.stream(uint32(f.SourceID)<<16|uint32(f.SessionID), false)
	if s == nil || s.epoch != f.Epoch {
		return dst // the NACKs remembered are another transfer's
	}
	parity := f.Flags&headers.FlagParity != 0
	for i := range s.nacks {
		e := &s.nacks[i]
		if e.block != parity {
			continue
		}
		if parity {
			if e.count > 0 && e.start == f.Sequence {
				for _, r := range e.reporters[:e.n] {
					dst = append(dst, r.id)
				}
			}
			continue
		}
		for _, r := range e.reporters[:e.n] {
			if !seqLess(f.Sequence, r.start) && seqLess(f.Sequence, r.start+r.count) {
				dst = append(dst, r.id)
			}
		}
	}
	return dst
}

// feedbackVerdict says what to do with a feedback packet.
type feedbackVerdict uint8

const (
	fbForward feedbackVerdict = iota // send upstream as it is
	fbConsume                        // absorbed or suppressed: free it
	fbSpoofed                        // not from a downstream port: drop
	fbStale                          // another transfer's (epoch): drop
)

// ackOut describes an aggregated ACK to send upstream.
type ackOut struct {
	send   bool
	up     *upstream // its upstream state; it goes out of up.port
	seq    uint32
	stream *streamState
	// lag: also a laggard report at lagSeq, naming the exceptions at or
	// above it (laggards).
	lag    bool
	lagSeq uint32
}

// onFeedback folds one feedback packet into the stream's state. ids is the
// packet's receiver set (an ACK's speakers, a NACK's or an ABORT's
// reporters). It returns what to do with the packet, the port to forward it
// on (NoPort: towards the source by its route), and for an ACK (instead of
// it) or an ABORT (besides it) the aggregates to send upstream, at most one
// per upstream port, into acks.
func (a *aggregator) onFeedback(h headers.SMH, in uint8, ids []uint16, acks *[maxUpstreams]ackOut) (feedbackVerdict, uint8) {
	t := h.Type()
	inc(&a.counts[t][FbIn], 1)
	s := a.stream(uint32(h.SourceID())<<16|uint32(h.SessionID()), false)
	if s == nil {
		inc(&a.counts[t][FbUnknown], 1)
		return fbForward, NoPort
	}
	if !s.ports.Has(in) {
		return fbSpoofed, NoPort
	}
	if h.Epoch() != s.epoch {
		// Feedback of an earlier transfer (or of one this switch has not
		// seen DATA of): its sequence numbers are not this state's.
		return fbStale, NoPort
	}
	s.lastUse = a.now
	switch t {
	case headers.TypeACK:
		if !a.onACK(s, h, in, ids) {
			inc(&a.counts[t][FbUnknown], 1)
			return fbForward, NoPort
		}
		a.aggregateAll(s, acks)
		inc(&a.counts[headers.TypeACK][FbAbsorbed], 1)
		return fbConsume, NoPort
	case headers.TypeABORT:
		// The receivers named cannot store the stream: the source must
		// hear it, and they no longer hold the others' ACKs back.
		if a.onAbort(s, in, ids) {
			a.aggregateAll(s, acks)
		}
		return fbForward, s.upPortOf(ids)
	case headers.TypeNACK:
		return a.onNACK(s, h, ids), s.upPortOf(ids)
	case headers.TypeCNP:
		sev := h.FeedbackCount()
		if a.now-s.cnpAt < int64(a.cfg.CNPInterval) && sev <= s.cnpSev {
			inc(&a.counts[t][FbSuppressed], 1)
			return fbConsume, NoPort
		}
		s.cnpAt, s.cnpSev = a.now, sev
		return fbForward, s.upPortOf(ids)
	}
	return fbForward, NoPort
}

// aggregateAll computes the aggregate of every upstream port into acks.
func (a *aggregator) aggregateAll(s *streamState, acks *[maxUpstreams]ackOut) {
	for i := range s.ups {
		if u := &s.ups[i]; u.used {
			acks[i] = a.aggregate(s, u)
		}
	}
}

// onAbort takes the receivers an ABORT names out of the aggregate: those
// this switch sends DATA to on the port it came in on (as onACK raises
// them). It tells whether it took any out.
func (a *aggregator) onAbort(s *streamState, in uint8, ids []uint16) bool {
	took := false
	for _, id := range ids {
		if r := s.receiver(id, false); r != nil && r.port == in && !r.aborted {
			r.aborted, took = true, true
		}
	}
	return took
}

// upPortOf is the upstream port of the first receiver of ids this switch
// forwarded to (the reverse of its data path), or NoPort.
func (s *streamState) upPortOf(ids []uint16) uint8 {
	for _, id := range ids {
		if r := s.receiver(id, false); r != nil {
			return r.up
		}
	}
	return NoPort
}

// onACK raises the receivers an ACK speaks for: its reporter (a receiver
// for itself: Speaks For 1, no set) or the receivers a downstream switch's
// aggregate names. Only receivers this switch sent DATA to on the port the
// ACK came in on are raised: a receiver whose path moved is heard on its new
// one. It returns false for a receiver's own ACK this switch cannot place
// (it never forwarded to it here), which then goes on upstream as it is.
func (a *aggregator) onACK(s *streamState, h headers.SMH, in uint8, set []uint16) bool {
	x := h.Sequence()
	if h.SetCount() == 0 {
		r := s.receiver(h.ReporterID(), false)
		if r == nil {
			return false
		}
		if r.port == in {
			r.raise(x, a.now)
		}
		return true
	}
	for _, id := range set {
		if r := s.receiver(id, false); r != nil && r.port == in {
			r.raise(x, a.now)
		}
	}
	return true
}

func (r *recvState) raise(x uint32, now int64) {
	if !r.hasAck || seqLess(r.ack, x) {
		r.ack, r.hasAck = x, true
	}
	r.lastReport = now
}

// aggregate computes the ACK for the receivers whose DATA came in on one
// upstream port: the lowest effective ACK over them, leaving out receivers
// silent for AckTimeout. It speaks for, and names, every one of them at or
// above that ACK; the rest are its exceptions. (It names whom it speaks for
// rather than listing the exceptions: an upstream switch's idea of who is
// behind a port differs from this switch's while paths move or packets are
// in flight, and "everyone but these" then credits receivers it never
// heard from.)
func (a *aggregator) aggregate(s *streamState, u *upstream) ackOut {
	out := ackOut{stream: s, up: u}
	out.send, out.seq = a.aggregateMain(s, u)
	out.lag, out.lagSeq = a.laggardReport(s, u, out.send)
	return out
}

// aggregateMain decides the aggregate proper: whether one goes up, at what.
func (a *aggregator) aggregateMain(s *streamState, u *upstream) (bool, uint32) {
	done := u.highest + 1
	first := true
	var x uint32
	for i := range s.recv {
		r := &s.recv[i]
		if !r.behind(u) || r.silent() || r.aborted {
			continue
		}
		eff := r.effective(done, s.sparse)
		if eff != done && a.now-r.lastReport > int64(a.cfg.AckTimeout) {
			continue // a laggard: it does not hold the aggregate back
		}
		if r.excepted {
			if seqLess(eff, u.ack) {
				// Reported behind already: it stays an exception until it
				// catches up, and never pulls the aggregate back (its own
				// progress goes up in laggard reports).
				continue
			}
			r.excepted = false
		}
		if first || seqLess(eff, x) {
			x, first = eff, false
		}
	}
	if first || seqLess(x, u.ack) {
		return false, 0
	}
	speaks := 0
	for i := range s.recv {
		if r := &s.recv[i]; r.behind(u) && r.speaksAt(x, done, s.sparse) {
			speaks++
		}
	}
	if speaks == 0 {
		// Nobody behind this port has been heard from at x (the low
		// point came from receivers that never reported): an aggregate
		// would name no receiver, which SMH cannot carry. Say nothing
		// until one reports.
		return false, 0
	}
	switch {
	case x != u.ack:
	case u.at == 0 || speaks <= u.speaks:
		// No progress. Receivers repeat their ACKs when the source
		// retransmits, and it retransmits when it did not hear the
		// aggregate: so say it again, at most once per ack_timeout (the
		// source's RTO is longer), or a lost aggregate would stall the
		// stream for good. (Once per nack_window sent 38,000 repeats at
		// a 1,024-receiver fan-out: receivers waiting for a repair ACK
		// the same number every few milliseconds.)
		if u.at == 0 || a.now-u.at < max(int64(a.cfg.NackWindow), int64(a.cfg.AckTimeout)) {
			return false, 0
		}
	case x != done && a.now-u.at < int64(a.cfg.AckTimeout)/4:
		// An exception caught up: progress, but it rides with the next
		// aggregate unless a quarter of ack_timeout has passed, or the
		// aggregate is at the end of what came in here (then nothing
		// more may come to carry it).
		return false, 0
	}
	for i := range s.recv {
		r := &s.recv[i]
		if !r.behind(u) {
			continue
		}
		if r.silent() || seqLess(r.effective(done, s.sparse), x) {
			r.excepted = true
		} else if r.speaksAt(x, done, s.sparse) {
			r.tell(x)
		}
	}
	u.ack, u.at, u.speaks = x, a.now, speaks
	return true, x
}

// laggardReport decides whether the exceptions' own progress goes up: an
// exception stays out of the aggregate until it catches up with it, and
// without this the source would never hear how far it got, however many
// ACKs it sent (a receiver late once for ack_timeout was credited nothing
// more until it overtook a moving aggregate, which under steady load it
// never did, and the source retransmitted to it without end). The report is
// at the lowest of the exceptions that moved since they were last named, and
// it names every exception at or above that. It rides with an aggregate
// (withMain: one goes up now) whenever an exception moved at all; alone it
// goes up at most once per ack_timeout per upstream port, and only once an
// exception moved by lagStep packets: so a slow receiver costs the source at
// most one report per aggregate or per ack_timeout, however often it ACKs
// (at a 1,024-receiver fan-out, reports every 5 ms on every switch
// multiplied the ACKs reaching the source by 14).
func (a *aggregator) laggardReport(s *streamState, u *upstream, withMain bool) (bool, uint32) {
	switch {
	case u.lagAt == 0:
	case withMain && a.now-u.lagAt < int64(a.cfg.AckTimeout)/4,
		!withMain && a.now-u.lagAt < int64(a.cfg.AckTimeout):
		return false, 0
	}
	done := u.highest + 1
	first, step := true, withMain
	var y uint32
	for i := range s.recv {
		r := &s.recv[i]
		if !r.isLaggard(u) {
			continue
		}
		eff := r.effective(done, s.sparse)
		if r.hasTold && !seqLess(r.told, eff) {
			continue // nothing new to say for it
		}
		step = step || !r.hasTold || eff-r.told >= lagStep
		if first || seqLess(eff, y) {
			y, first = eff, false
		}
	}
	if first || !step {
		return false, 0
	}
	for i := range s.recv {
		if r := &s.recv[i]; r.isLaggard(u) && !seqLess(r.effective(done, s.sparse), y) {
			r.tell(y)
		}
	}
	u.lagAt = a.now
	return true, y
}

// lagStep is how far an exception must move before a laggard report goes up
// on its own for it (a receiver ACKs every 32 packets delivered).
const lagStep = 32

// isLaggard: an exception behind u a laggard report can speak for (it has
// acknowledged something here, and is behind the aggregate).
func (r *recvState) isLaggard(u *upstream) bool {
	return r.behind(u) && r.excepted && r.hasAck && !r.aborted
}

// tell records that an aggregate upstream named r at x.
func (r *recvState) tell(x uint32) {
	if !r.hasTold || seqLess(r.told, x) {
		r.told, r.hasTold = x, true
	}
}

// effective is what a receiver has: its ACK, or nothing from its first
// packet on. In a sparse stream (S: a set per packet, MoE dispatch) one that
// acknowledged everything it was sent here counts as having everything the
// stream has sent (done): the stream sent it nothing more, and without that
// an aggregate could not move past the receivers it stopped addressing. A
// fixed-set stream addresses every packet to every receiver, so a receiver
// this switch sent nothing more is one whose copies a reroute upstream sends
// another way: crediting it there told the source it had packets it never
// got (the source then ignored its NACKs, and once called an unstored copy
// complete), so there it has only its own ACK.
func (r *recvState) effective(done uint32, sparse bool) uint32 {
	eff := r.first
	if r.hasAck {
		eff = r.ack
	}
	if sparse && !r.partial && seqLess(r.last, eff) {
		eff = done
	}
	return eff
}

// silent: a receiver the switch has nothing to say for (only repairs went
// to it and it has not acknowledged anything here).
func (r *recvState) silent() bool { return r.partial && !r.hasAck }

// speaksAt says whether an aggregate at x names the receiver: only once it
// was heard from (its own ACK, or a downstream aggregate naming it). An
// unheard receiver holds the aggregate back at its first packet here until
// it reports or times out, but naming it would claim it has everything
// before that packet, which only holds where this switch saw the stream
// from its start: after a failure moves a receiver's path onto this switch
// mid-stream, its first packet here says nothing of the gaps it has.
func (r *recvState) speaksAt(x, done uint32, sparse bool) bool {
	return r.hasAck && !r.aborted && !seqLess(r.effective(done, sparse), x)
}

// speakers appends, in ID order, the receivers behind upstream u that an
// aggregate at x speaks for.
func (s *streamState) speakers(x uint32, u *upstream, dst []uint16) []uint16 {
	done := u.highest + 1
	n := len(dst)
	for i := range s.recv {
		if r := &s.recv[i]; r.behind(u) && r.speaksAt(x, done, s.sparse) {
			dst = append(dst, r.id)
		}
	}
	sortIDs(dst[n:])
	return dst
}

// laggards appends, in ID order, the exceptions behind upstream u that a
// laggard report at y speaks for.
func (s *streamState) laggards(y uint32, u *upstream, dst []uint16) []uint16 {
	done := u.highest + 1
	n := len(dst)
	for i := range s.recv {
		if r := &s.recv[i]; r.isLaggard(u) && !seqLess(r.effective(done, s.sparse), y) {
			dst = append(dst, r.id)
		}
	}
	sortIDs(dst[n:])
	return dst
}

// sortIDs sorts a short ID list in place (insertion sort: no allocation,
// and the list is built in nearly sorted order).
func sortIDs(ids []uint16) {
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && ids[j] < ids[j-1]; j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
		}
	}
}

func (a *aggregator) onNACK(s *streamState, h headers.SMH, reporters []uint16) feedbackVerdict {
	start, count := h.Sequence(), uint32(h.FeedbackCount())
	block := h.Flags()&headers.FlagParity != 0
	free, oldest := -1, 0
	for i := range s.nacks {
		e := &s.nacks[i]
		if e.count == 0 {
			if free < 0 {
				free = i
			}
			continue
		}
		if block && e.block && e.start == start {
			// A block asked for already: its reporters get the parity
			// coming down; a NACK asking for no more symbols than are
			// still to come is suppressed.
			e.remember(reporters, start, count)
			if count <= e.count && a.now-e.at < a.nackWindow(s) {
				inc(&a.counts[headers.TypeNACK][FbSuppressed], 1)
				return fbConsume
			}
			e.count, e.at, e.sampled = max(e.count, count), a.now, false
			return fbForward
		}
		if !block && !e.block && !seqLess(start, e.start) && !seqLess(e.start+e.count, start+count) {
			// Within a range already asked for: remember who asked, so
			// the repair coming down reaches them too.
			e.remember(reporters, start, count)
			if a.now-e.at < a.nackWindow(s) {
				inc(&a.counts[headers.TypeNACK][FbSuppressed], 1)
				return fbConsume
			}
			// No repair within the window: the NACK or its repair was
			// lost upstream; ask again.
			e.at, e.sampled = a.now, false
			return fbForward
		}
		if e.at < s.nacks[oldest].at {
			oldest = i
		}
	}
	// A range not asked for yet (or overlapping one only in part: the
	// part not covered must go up). Ranges stay until their repair passes
	// (repaired); when all are taken the oldest goes, counted.
	if free < 0 {
		free = oldest
		inc(&a.counts[headers.TypeNACK][FbEvicted], 1)
	}
	s.nacks[free] = nackEntry{start: start, count: count, at: a.now, block: block}
	return fbForward
}

// nackWindow is how long a NACK within a range asked for is suppressed:
// nack_window, or 1.5 times the stream's repair delay if that is longer.
func (a *aggregator) nackWindow(s *streamState) int64 {
	return max(int64(a.cfg.NackWindow), s.repairDelay*3/2)
}

// sampleRepair takes the delay of the entry's first repair passing down
// now into the stream's repairDelay (a moving average, 1/8 new).
func (s *streamState) sampleRepair(e *nackEntry, now int64) {
	if e.sampled || now <= e.at {
		return
	}
	e.sampled = true
	d := now - e.at
	if s.repairDelay == 0 {
		s.repairDelay = d
	} else {
		s.repairDelay = (7*s.repairDelay + d) / 8
	}
}

// remember adds the reporters of a suppressed NACK (their range start,
// count) to the entry, so the repair coming down reaches them too.
func (e *nackEntry) remember(reporters []uint16, start, count uint32) {
	for _, id := range reporters {
		if e.n < nackReporters && !e.has(id) {
			e.reporters[e.n] = nackReporter{id: id, start: start, count: count}
			e.n++
		}
	}
}

func (e *nackEntry) has(id uint16) bool {
	for _, r := range e.reporters[:e.n] {
		if r.id == id {
			return true
		}
	}
	return false
}

// repaired retires sequence number q from the ranges asked for: its repair
// is going down (with the remembered reporters added), so a NACK for q from
// now on means that repair was lost below, and goes up again.
func (s *streamState) repaired(q uint32, now int64) {
	for i := range s.nacks {
		e := &s.nacks[i]
		if e.count == 0 || e.block || seqLess(q, e.start) || !seqLess(q, e.start+e.count) {
			continue
		}
		s.sampleRepair(e, now)
		switch q {
		case e.start:
			e.start++
			e.count--
		case e.start + e.count - 1:
			e.count--
		default:
			continue // the middle of a range: it stays until its ends go
		}
		if e.count == 0 {
			e.n = 0
		}
	}
}

// parityPassed counts a parity repair of the block at b going down: once as
// many as were asked for have passed, a block NACK for it goes up again
// (those were lost below, or the reporter needs more).
func (s *streamState) parityPassed(b uint32, now int64) {
	for i := range s.nacks {
		e := &s.nacks[i]
		if e.block && e.count > 0 && e.start == b {
			s.sampleRepair(e, now)
			if e.count--; e.count == 0 {
				e.n = 0
			}
		}
	}
}

func containsID(ids []uint16, id uint16) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// congestion tells whether a DATA copy queued behind depth packets meets
// congestion, and whether the switch may send its own CNP for the stream now.
func (a *aggregator) congestion(f *headers.Fields, depth int) (mark, cnp bool) {
	if depth < a.cfg.CNPQueueDepth {
		return false, false
	}
	s := a.stream(uint32(f.SourceID)<<16|uint32(f.SessionID), false)
	if s == nil {
		return true, false
	}
	if a.now-s.cnpAt < int64(a.cfg.CNPInterval) {
		return true, false
	}
	s.cnpAt, s.cnpSev = a.now, 1
	return true, true
}

// buildFeedback makes a feedback packet for stream s from its DATA template,
// addressed back towards the source, and queues it on port p.
func (w *Worker) buildFeedback(s *streamState, f headers.Fields, ids []uint16, p uint8) {
	if s.templateLen == 0 {
		return
	}
	pk := w.pool.Get()
	if pk == nil {
		w.counters.drop(DropNoBuffer, 1)
		return
	}
	m := s.tm
	buf := pk.Buffer()
	hl := f.HeaderLen(ids)
	if Headroom+m.smh+hl > len(buf) {
		pk.Free()
		w.counters.drop(DropTooBig, 1)
		return
	}
	h := buf[Headroom:]
	copy(h, s.template[:s.templateLen])
	// Back towards the source: swap the IP addresses and UDP ports of the
	// DATA it answers; rewriteOuter then sets the next hop's addresses.
	if m.v6 {
		var a [16]byte
		copy(a[:], h[m.ip+8:m.ip+24])
		copy(h[m.ip+8:m.ip+24], h[m.ip+24:m.ip+40])
		copy(h[m.ip+24:m.ip+40], a[:])
	} else {
		var a [4]byte
		copy(a[:], h[m.ip+12:m.ip+16])
		copy(h[m.ip+12:m.ip+16], h[m.ip+16:m.ip+20])
		copy(h[m.ip+16:m.ip+20], a[:])
		h[m.ip+8] = 64
	}
	// Feedback goes to the SMH port like everything else; the source port
	// keeps the stream's entropy, so it follows the stream's ECMP path.
	binary.BigEndian.PutUint16(h[m.udp+2:], w.udpPort)
	headers.PutHeader(h[m.smh:], f, ids)
	pk.SetFrame(m.smh + hl)
	// A fresh checksum over the small packet: start from zero.
	binary.BigEndian.PutUint16(pk.Head[m.udp+6:], 0)
	w.rewriteOuter(pk.Head, &m, hl, 0, p, csumBase{zero: !m.v6})
	if m.v6 {
		fillUDPChecksum(pk.Head, &m)
	}
	inc(&w.agg.counts[f.Type][FbGenerated], 1)
	w.enqueue(p, pk)
}

// fillUDPChecksum computes a frame's UDP checksum in full (small frames the
// switch makes itself).
func fillUDPChecksum(fr []byte, m *parsed) {
	var acc uint64
	if m.v6 {
		acc = sum16(fr[m.ip+8:m.ip+40], 0)
	} else {
		acc = sum16(fr[m.ip+12:m.ip+20], 0)
	}
	binary.BigEndian.PutUint16(fr[m.udp+6:], 0)
	acc += ipProtoUDP + uint64(len(fr)-m.udp)
	c := ^fold(sum16(fr[m.udp:], acc))
	if c == 0 {
		c = 0xFFFF
	}
	binary.BigEndian.PutUint16(fr[m.udp+6:], c)
}
