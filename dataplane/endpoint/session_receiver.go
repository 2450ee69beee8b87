package endpoint

// The reliable receive path (docs/feedback.md, "What a receiver reports"),
// in order:
//
//  1. Run reads a datagram (waiting until the next timer), then up to 31
//     more without waiting, with one clock read for the lot.
//  2. A DATA packet is validated, its stream found (state is allocated on a
//     stream's first packet: a window of W slots), and its payload header
//     parsed (wire.go) for the previous sequence number addressed to this
//     receiver. If that is the last one delivered (or the packet starts the
//     subsequence), the packet is delivered at once, in place, and then every
//     buffered successor; otherwise it is copied into its slot and the
//     missing predecessor (in fixed mode, every missing number up to it) is
//     marked wanted, with a NACK due now.
//  3. Timers: ACK(X), X one past the last delivered, after AckEvery
//     deliveries, every AckInterval while DATA flows, and at once on F,
//     each only once the sink has stored everything below X (Sink.Commit;
//     docs/feedback.md, "What a receiver acknowledges");
//     NACK(S, C) for each run of wanted numbers whose NACK is due, repeated
//     with a doubling back-off while the gap stays open; a CNP (severity 1)
//     echoing C, and severity 2 when the socket buffer overflowed.
//
// A stream is (source, session, Transfer Epoch): DATA of a new epoch on a
// known (source, session) is a new transfer, a stream of its own, and all
// feedback echoes the epoch of the DATA it answers (docs/smh.md 2.2). A
// stream superseded by a newer epoch frees its window once idle for a
// while. Delivery is in order per stream: the callback sees each packet's
// app data exactly once, with Start and End marking message boundaries.
// A sink that cannot store a stream (Deliver or Commit fails) stops it: no
// more deliveries, ACKs or NACKs, and an ABORT with the error's reason
// (AbortReasonOf), repeated at most every AbortRepeat while its DATA keeps
// coming. Nothing is allocated per packet in the steady state.

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

// Delivery is one packet's app data, delivered in order. Data is only
// valid during the callback.
type Delivery struct {
	Source, Session uint16
	// Epoch is the stream's Transfer Epoch (0: a sender without epochs).
	Epoch uint32
	Seq   uint32
	Data  []byte
	// Start: the first packet of a message; End: its last (SMH F).
	Start, End bool
}

// SessionReceiverConfig configures a ReliableReceiver.
type SessionReceiverConfig struct {
	// ID is this receiver's ID.
	ID uint16
	// Window is the reorder window in packets per stream (default 1024, a
	// power of two, at least the sender's window).
	Window int
	// MaxDatagram bounds the app data a slot holds (default 1472).
	MaxDatagram int
	// AckEvery and AckInterval: ACK after this many deliveries (default 32)
	// or this long while data flows (default 2 ms), and at once on F.
	AckEvery    int
	AckInterval time.Duration
	// NackRepeat is the first NACK back-off, doubled per repeat up to 16x
	// (default 10 ms).
	NackRepeat time.Duration
	// CNPInterval bounds the CNPs sent per stream (default 100 µs).
	CNPInterval time.Duration
	// HopLimit of feedback (default headers.DefaultHopLimit).
	HopLimit uint8
	// IdleTimeout ends Run when no DATA came for this long, counted from the
	// first packet (0: never). SetIdleTimeout changes it while running.
	IdleTimeout time.Duration
	// AbortRepeat is the least time between two ABORTs about one stream
	// (default 10 ms): one when storing fails, then one on later DATA of
	// the stream, in case the first was lost.
	AbortRepeat time.Duration
	// Sink stores the deliveries (FileSink); or Deliver, a function that
	// keeps nothing (DeliverFunc): exactly one of them.
	Sink    Sink
	Deliver func(Delivery)
}

// Receiver malformed reasons, beyond the SMH ones (MalformedReasons).
const (
	RMalSMH = iota
	RMalShortPayload
	RMalBadPayload
	RMalNotInChain
	RMalTooBig
	RMalBadParity
	numRMal
)

// ReliableMalformedReasons names the receiver's malformed counters.
var ReliableMalformedReasons = [numRMal]string{"bad_smh", "short_payload", "bad_payload_version", "not_in_chain", "too_big", "bad_parity"}

// SessionStreamReport is one stream as a ReliableReceiver saw it.
type SessionStreamReport struct {
	Source        uint16 `json:"source"`
	Session       uint16 `json:"session"`
	Epoch         uint32 `json:"epoch"`
	Delivered     uint64 `json:"delivered"`
	Bytes         uint64 `json:"bytes"`
	Messages      uint64 `json:"messages"`
	Duplicates    uint64 `json:"duplicates"`
	Retransmitted uint64 `json:"retransmitted_received"`
	Buffered      uint64 `json:"buffered"`
	Overflow      uint64 `json:"window_overflow"`
	ChainErrors   uint64 `json:"chain_errors"`
	ACKs          uint64 `json:"acks_sent"`
	NACKs         uint64 `json:"nacks_sent"`
	CNPs          uint64 `json:"cnps_sent"`
	ABORTs        uint64 `json:"aborts_sent"`
	// AbortReason and StoreError: why the sink could not store the stream
	// (it was aborted), empty while it stores.
	AbortReason string `json:"abort_reason,omitempty"`
	StoreError  string `json:"store_error,omitempty"`
	// Parity repairs (fec.go): parity packets received, packets rebuilt
	// from them, parity that came too late to help, block NACKs sent
	// (also counted in NACKs).
	ParityReceived uint64 `json:"parity_received"`
	Recovered      uint64 `json:"recovered_by_parity"`
	ParityUseless  uint64 `json:"parity_useless"`
	BlockNACKs     uint64 `json:"block_nacks_sent"`
	// NamedLosses counts packets NACKed by name in a parity stream (not
	// as a block), by why the block was not asked for as a count:
	// [0] no parity block yet (or outside the blocks), [1] the stream
	// paused inside the block, [2] the block cannot be decoded (its data
	// left the window), [3] the block's NACK tries ran out, [4] only
	// parity-held slots are missing.
	NamedLosses [5]uint64 `json:"named_losses_by_reason"`
	// Last is the last delivered sequence number (meaningful when
	// Delivered > 0).
	Last uint32 `json:"last_seq"`
}

// SessionReport is a ReliableReceiver's account.
type SessionReport struct {
	ID          uint16                `json:"id"`
	StopReason  string                `json:"stop_reason"`
	Elapsed     time.Duration         `json:"elapsed_ns"`
	Datagrams   uint64                `json:"datagrams"`
	Data        uint64                `json:"data"`
	Feedback    uint64                `json:"feedback_ignored"`
	Malformed   uint64                `json:"malformed"`
	MalformedBy map[string]uint64     `json:"malformed_by_reason,omitempty"`
	SendErrors  uint64                `json:"send_errors"`
	Transport   TransportStats        `json:"transport"`
	Streams     []SessionStreamReport `json:"streams"`
}

const (
	slotEmpty = iota
	slotWant
	slotHave
	// slotParity: the slot's packet is still missing (wanted); its buffer
	// holds a parity shard of the packet's block (fec.go).
	slotParity
)

// wanted: a slot state of a packet still missing.
func wanted(state uint8) bool { return state == slotWant || state == slotParity }

type rslot struct {
	seq     uint32
	prev    uint32
	succ    uint32
	state   uint8
	hasSucc bool
	final   bool
	nacks   uint8
	// kept: data holds this sequence number's app data (n bytes, F in
	// final), also once delivered, for rebuilding its block from parity.
	kept bool
	// held: its block's first block NACK waits a random back-off
	// (fec_receiver.go), drawn already.
	held bool
	// named: ask for it by name, not in its block's NACK (the parity
	// held for its block was dropped).
	named bool
	pidx  uint8 // slotParity: the shard's parity index
	at    int64 // when it was last NACKed (0: never)
	// asked is when its block was first asked for in a block NACK (0:
	// not yet): the block gives up on parity only a while after that.
	asked int64
	n     int
	due   int64
	data  []byte
}

type rstream struct {
	rep       SessionStreamReport
	started   bool
	last      uint32
	highest   uint32
	hasHigh   bool
	msgStart  bool
	slots     []rslot
	mask      uint32
	wants     int
	nextNack  int64
	sinceAck  int
	flowing   bool
	ackDue    bool
	ackNow    bool
	lastAck   int64
	lastCNP   int64
	lastData  int64
	cnpSev2At int64
	// superseded: DATA of a newer epoch came on the same (source,
	// session); once idle for retireAfter its window is freed.
	superseded bool
	// acked is the last ACK sent (hasAcked); first the first sequence
	// number delivered. abort is the reason the stream was aborted (0:
	// storing), abortSeq the first sequence number not stored, lastAbort
	// when the last ABORT went.
	acked     uint32
	hasAcked  bool
	first     uint32
	abort     headers.AbortReason
	abortSeq  uint32
	lastAbort int64
	// Parity (fec.go): the block length and Base (fecK 0: no FEC),
	// whether the highest packet seen had F (the stream paused: its open
	// block is repaired packet by packet), and the decoder's scratch.
	// repairDelay is the smoothed time from a NACK to its repair (0:
	// none seen): NACKs are not repeated before a repair could be back.
	repairDelay int64
	fecK        int
	fecP        int
	base        uint32
	highFinal   bool
	highAt      int64 // when the highest packet seen last rose
	fec         *rfec
}

// retireAfter is how long a superseded stream stays idle before its window
// memory is freed (a late packet of it allocates the window again).
const retireAfter = 2 * time.Second

// streamKey names a stream: source, session and Transfer Epoch.
func streamKey(source, session uint16, epoch uint32) uint64 {
	return uint64(source)<<48 | uint64(session)<<32 | uint64(epoch)
}

// ReliableReceiver receives reliable streams addressed to one receiver ID.
// It is not safe for concurrent use.
type ReliableReceiver struct {
	cfg      SessionReceiverConfig
	tr       Transport
	sink     Sink
	epoch    time.Time
	now      int64
	buf      []byte
	out      []byte
	streams  map[uint64]*rstream
	list     []*rstream
	lastKey  uint64
	lastS    *rstream
	rep      SessionReport
	mal      [numRMal]uint64
	firstPkt int64
	lastPkt  int64
	overflow uint64
	rng      uint64 // xorshift state of the NACK back-offs
}

// NewReliableReceiver checks cfg.
func NewReliableReceiver(tr Transport, cfg SessionReceiverConfig) (*ReliableReceiver, error) {
	if tr == nil {
		return nil, fmt.Errorf("reliable receiver: no transport")
	}
	if cfg.Window == 0 {
		cfg.Window = 1024
	}
	if cfg.MaxDatagram == 0 {
		cfg.MaxDatagram = 1472
	}
	if cfg.AckEvery == 0 {
		cfg.AckEvery = 32
	}
	if cfg.AckInterval == 0 {
		cfg.AckInterval = 2 * time.Millisecond
	}
	if cfg.NackRepeat == 0 {
		cfg.NackRepeat = 10 * time.Millisecond
	}
	if cfg.CNPInterval == 0 {
		cfg.CNPInterval = 100 * time.Microsecond
	}
	if cfg.HopLimit == 0 {
		cfg.HopLimit = headers.DefaultHopLimit
	}
	if cfg.AbortRepeat == 0 {
		cfg.AbortRepeat = 10 * time.Millisecond
	}
	switch {
	case cfg.Window < 2 || cfg.Window > 1<<16 || cfg.Window&(cfg.Window-1) != 0:
		return nil, fmt.Errorf("reliable receiver: window %d: want a power of two, 2-65536", cfg.Window)
	case cfg.MaxDatagram < 64 || cfg.MaxDatagram > MaxDatagram:
		return nil, fmt.Errorf("reliable receiver: max datagram %d: want 64-%d", cfg.MaxDatagram, MaxDatagram)
	case cfg.AckEvery < 1 || cfg.AckInterval < 0 || cfg.NackRepeat <= 0 || cfg.CNPInterval < 0 || cfg.IdleTimeout < 0 || cfg.AbortRepeat < 0:
		return nil, fmt.Errorf("reliable receiver: ack every %d, intervals %v/%v/%v/%v, idle %v: want positive values",
			cfg.AckEvery, cfg.AckInterval, cfg.NackRepeat, cfg.CNPInterval, cfg.AbortRepeat, cfg.IdleTimeout)
	case (cfg.Deliver == nil) == (cfg.Sink == nil):
		return nil, fmt.Errorf("reliable receiver: want a sink or a delivery function (exactly one)")
	}
	sink := cfg.Sink
	if sink == nil {
		sink = DeliverFunc(cfg.Deliver)
	}
	r := &ReliableReceiver{
		cfg: cfg, tr: tr, sink: sink, epoch: time.Now(),
		buf: make([]byte, 65536), out: make([]byte, 64),
		streams: make(map[uint64]*rstream),
	}
	r.rep.ID = cfg.ID
	// Receivers must draw different back-offs: seeded by ID and clock.
	r.rng = uint64(cfg.ID)*0x9E3779B97F4A7C15 ^ uint64(r.epoch.UnixNano()) | 1
	return r, nil
}

// SetIdleTimeout changes the idle timeout (from the Deliver callback, say,
// to linger once everything expected has arrived).
func (r *ReliableReceiver) SetIdleTimeout(d time.Duration) { r.cfg.IdleTimeout = d }

func (r *ReliableReceiver) clock() int64 {
	r.now = int64(time.Since(r.epoch))
	return r.now
}

// Run receives until ctx ends or the idle timeout, and returns the report.
func (r *ReliableReceiver) Run(ctx context.Context) (*SessionReport, error) {
	done := ctx.Done()
	for {
		select {
		case <-done:
			r.rep.StopReason = "canceled"
			return r.Report(), nil
		default:
		}
		now := r.clock()
		if r.cfg.IdleTimeout > 0 && r.firstPkt > 0 && now-r.lastPkt >= int64(r.cfg.IdleTimeout) {
			r.rep.StopReason = "idle"
			return r.Report(), nil
		}
		wake := r.nextTimer(now)
		n, err := r.tr.Recv(r.buf, r.epoch.Add(time.Duration(wake)))
		switch err {
		case nil:
			r.clock()
			r.handle(r.buf[:n])
			for i := 0; i < 31; i++ {
				n, err := r.tr.Recv(r.buf, time.Time{})
				if err != nil {
					break
				}
				r.handle(r.buf[:n])
			}
		case ErrTimeout:
			r.clock()
		default:
			r.rep.StopReason = "error"
			return r.Report(), fmt.Errorf("reliable receiver: %w", err)
		}
		r.timers(r.now)
	}
}

// nextTimer is when Run must look again: the earliest ACK or NACK due, the
// idle deadline, and at most 50 ms (to see ctx).
func (r *ReliableReceiver) nextTimer(now int64) int64 {
	t := now + int64(50*time.Millisecond)
	if r.cfg.IdleTimeout > 0 && r.firstPkt > 0 {
		t = min(t, r.lastPkt+int64(r.cfg.IdleTimeout))
	}
	for _, s := range r.list {
		if s.abort != 0 {
			continue
		}
		if s.flowing || s.ackDue {
			t = min(t, s.lastAck+int64(r.cfg.AckInterval))
		}
		if s.wants > 0 {
			t = min(t, s.nextNack)
		}
	}
	return max(t, now)
}

func (r *ReliableReceiver) stream(source, session uint16, epoch uint32) *rstream {
	key := streamKey(source, session, epoch)
	if r.lastS != nil && r.lastKey == key {
		return r.lastS
	}
	s := r.streams[key]
	if s == nil {
		s = &rstream{msgStart: true}
		s.rep.Source, s.rep.Session, s.rep.Epoch = source, session, epoch
		for _, o := range r.list {
			if o.rep.Source == source && o.rep.Session == session {
				o.superseded = true // a new transfer: the old one is over
			}
		}
		r.streams[key] = s
		r.list = append(r.list, s)
	}
	if s.slots == nil {
		r.allocWindow(s)
	}
	r.lastS, r.lastKey = s, key
	return s
}

// allocWindow gives s its reorder window.
func (r *ReliableReceiver) allocWindow(s *rstream) {
	w := r.cfg.Window
	s.slots, s.mask = make([]rslot, w), uint32(w-1)
	mem := make([]byte, w*r.cfg.MaxDatagram)
	for i := range s.slots {
		s.slots[i].data = mem[i*r.cfg.MaxDatagram : (i+1)*r.cfg.MaxDatagram]
	}
}

// retireWindow frees the window of a superseded, idle stream: what it
// still wanted is given up, and it sends nothing more unless DATA of it
// comes again (stream allocates the window anew).
func (r *ReliableReceiver) retireWindow(s *rstream) {
	s.slots, s.wants = nil, 0
	s.flowing, s.ackDue, s.ackNow, s.sinceAck = false, false, false, 0
}

// noteData counts a valid DATA packet (a parity one too) and returns its
// stream.
func (r *ReliableReceiver) noteData(h headers.SMH) *rstream {
	r.rep.Data++
	if r.firstPkt == 0 {
		r.firstPkt = max(r.now, 1)
	}
	r.lastPkt = r.now
	s := r.stream(h.SourceID(), h.SessionID(), h.Epoch())
	s.lastData = r.now
	return s
}

func (r *ReliableReceiver) malformed(reason int) {
	r.rep.Malformed++
	r.mal[reason]++
}

// handle processes one datagram.
func (r *ReliableReceiver) handle(b []byte) {
	r.rep.Datagrams++
	h := headers.SMH(b)
	if err := h.Validate(); err != nil {
		r.malformed(RMalSMH)
		return
	}
	if h.Type() != headers.TypeData {
		r.rep.Feedback++
		return
	}
	if h.Flags()&headers.FlagParity != 0 {
		r.handleParity(h)
		return
	}
	seq := h.Sequence()
	prev, head, data, fixed, base, st := parsePayload(h.Payload(), r.cfg.ID, seq)
	switch st {
	case payloadShort:
		r.malformed(RMalShortPayload)
		return
	case payloadBadVersion:
		r.malformed(RMalBadPayload)
		return
	case payloadNotInChain:
		r.malformed(RMalNotInChain)
		return
	}
	if len(data) > r.cfg.MaxDatagram {
		r.malformed(RMalTooBig)
		return
	}
	s := r.noteData(h)
	if s.abort != 0 {
		// It cannot be stored: say so again (the ABORT may have been
		// lost), at most every AbortRepeat.
		if r.now-s.lastAbort >= int64(r.cfg.AbortRepeat) {
			r.sendAbort(s)
		}
		return
	}
	s.flowing = true
	flags := h.Flags()
	if flags&headers.FlagRetransmit != 0 {
		s.rep.Retransmitted++
	}
	if flags&headers.FlagCongestion != 0 && r.now-s.lastCNP >= int64(r.cfg.CNPInterval) {
		s.lastCNP = r.now
		r.sendFeedback(s, headers.TypeCNP, seq, 1)
	}
	final := flags&headers.FlagFinal != 0
	oldHigh, hadHigh := s.highest, s.hasHigh
	if fixed {
		r.noteFEC(s, h.Payload()[1], base, seq, final, oldHigh, hadHigh)
	}
	if !s.hasHigh || seqLess(s.highest, seq) {
		s.highest, s.hasHigh = seq, true
	}
	if s.started && !seqLess(s.last, seq) {
		s.rep.Duplicates++
		s.ackDue = true
		return
	}
	sl := &s.slots[seq&s.mask]
	if sl.seq == seq && sl.state == slotHave {
		s.rep.Duplicates++
		s.ackDue = true
		if s.fecK > 0 && s.started && seq == s.last+1 {
			// Buffered but not delivered (its link to the packet before
			// was lost): the sender's resend of it says so.
			r.deliverBuffered(s)
		}
		return
	}
	if (!s.started && head) || (s.started && prev == s.last && !head) {
		repaired := false
		if s.fecK > 0 {
			repaired = r.keep(s, sl, seq, data, final)
		}
		if !r.deliver(s, seq, data, final) {
			return
		}
		r.drain(s, seq)
		if repaired {
			r.tryDecode(s, s.blockOf(seq))
		}
		return
	}
	if s.started && (head || seqLess(prev, s.last)) {
		// The chain says this packet follows one before what was already
		// delivered: the sender's chain and ours disagree.
		s.rep.ChainErrors++
		return
	}
	if r.occupied(s, sl, seq) {
		s.rep.Overflow++
		return
	}
	wasWanted := sl.seq == seq && wanted(sl.state)
	if wasWanted && flags&headers.FlagRetransmit != 0 {
		s.sampleRepair(sl.at, r.now)
	}
	if !wasWanted {
		sl.hasSucc = false
	} else {
		if sl.state == slotParity {
			r.relocateParity(s, sl)
		}
		s.wants--
	}
	sl.seq, sl.state, sl.prev, sl.final = seq, slotHave, prev, final
	sl.n = copy(sl.data, data)
	sl.kept = true
	s.rep.Buffered++
	if wasWanted && s.fecK > 0 {
		// A repair: with it the block may rebuild from parity, once the
		// packet is linked behind its predecessor (below).
		defer r.tryDecode(s, s.blockOf(seq))
	}
	if head {
		return
	}
	r.want(s, prev, seq)
	if fixed {
		// Every number between what was seen and this one is missing too.
		lo := base
		switch {
		case s.started && hadHigh && seqLess(s.last, oldHigh):
			lo = oldHigh + 1
		case s.started:
			lo = s.last + 1
		case hadHigh:
			lo = oldHigh + 1
		}
		for q := lo; seqLess(q, prev) && prev-q < uint32(len(s.slots)); q++ {
			r.want(s, q, q+1)
		}
	}
}

// occupied: slot sl holds a different sequence number that still matters.
func (r *ReliableReceiver) occupied(s *rstream, sl *rslot, seq uint32) bool {
	if sl.state == slotEmpty || sl.seq == seq {
		return false
	}
	if s.started && !seqLess(s.last, sl.seq) {
		// Stale: already delivered.
		if wanted(sl.state) {
			if sl.state == slotParity {
				sl.kept = false
			}
			s.wants--
		}
		sl.state = slotEmpty
		return false
	}
	return true
}

// want marks q missing, followed in this receiver's subsequence by succ.
func (r *ReliableReceiver) want(s *rstream, q, succ uint32) {
	if s.started && !seqLess(s.last, q) {
		return
	}
	sl := &s.slots[q&s.mask]
	if sl.seq == q && sl.state != slotEmpty {
		sl.succ, sl.hasSucc = succ, true
		return
	}
	if r.occupied(s, sl, q) {
		s.rep.Overflow++
		return
	}
	*sl = rslot{seq: q, state: slotWant, succ: succ, hasSucc: true, due: r.now, data: sl.data}
	s.wants++
	if s.wants == 1 || r.now < s.nextNack {
		s.nextNack = r.now
	}
}

// deliver hands one packet to the sink; false: the sink failed and the
// stream is aborted.
func (r *ReliableReceiver) deliver(s *rstream, seq uint32, data []byte, final bool) bool {
	if !s.started {
		s.first = seq
	}
	if err := r.sink.Deliver(Delivery{
		Source: s.rep.Source, Session: s.rep.Session, Epoch: s.rep.Epoch, Seq: seq, Data: data,
		Start: s.msgStart, End: final,
	}); err != nil {
		r.abortStream(s, seq, err)
		return false
	}
	s.msgStart = final
	s.started, s.last = true, seq
	s.rep.Delivered++
	s.rep.Bytes += uint64(len(data))
	s.rep.Last = seq
	s.sinceAck++
	if final {
		s.rep.Messages++
		s.ackNow = true
	}
	return true
}

// drain delivers the buffered successors of d.
func (r *ReliableReceiver) drain(s *rstream, d uint32) {
	for {
		sl := &s.slots[d&s.mask]
		if sl.seq != d || sl.state == slotEmpty {
			return
		}
		if wanted(sl.state) {
			s.wants--
		}
		sl.state = slotEmpty
		nx := sl.succ
		if !sl.hasSucc {
			if s.fecK == 0 {
				return
			}
			// A fixed stream with parity: packets rebuilt or buffered out
			// of order may not have been linked; the successor is d+1.
			nx = d + 1
		}
		ns := &s.slots[nx&s.mask]
		if ns.seq != nx || ns.state != slotHave || ns.prev != d {
			return
		}
		if !r.deliver(s, nx, ns.data[:ns.n], ns.final) {
			return
		}
		d = nx
	}
}

// timers sends the ACKs, NACKs and CNPs that are due.
func (r *ReliableReceiver) timers(now int64) {
	sev2 := false
	if ov := r.tr.Stats().Overflow; ov > r.overflow {
		r.overflow, sev2 = ov, true
	}
	for _, s := range r.list {
		if s.slots == nil {
			continue // retired
		}
		if s.superseded && now-s.lastData >= int64(retireAfter) {
			r.retireWindow(s)
			continue
		}
		if s.abort != 0 {
			continue
		}
		if sev2 && now-s.lastData < int64(time.Second) {
			r.sendFeedback(s, headers.TypeCNP, s.highest, 2)
		}
		if s.started && (s.ackNow || s.sinceAck >= r.cfg.AckEvery ||
			((s.flowing || s.ackDue) && now-s.lastAck >= int64(r.cfg.AckInterval))) {
			// Acknowledged means stored: the sink first stores what the
			// ACK covers.
			if err := r.sink.Commit(s.rep.Source, s.rep.Session, s.rep.Epoch); err != nil {
				r.abortStream(s, s.last+1, err)
				continue
			}
			r.sendFeedback(s, headers.TypeACK, s.last+1, 0)
			s.acked, s.hasAcked = s.last+1, true
			s.sinceAck, s.flowing, s.ackDue, s.ackNow, s.lastAck = 0, false, false, false, now
		}
		if s.wants > 0 && now >= s.nextNack {
			r.nackScan(s, now)
		}
	}
}

// nackScan sends NACK(S, C) for every run of wanted numbers whose NACK is
// due, and schedules the next scan.
func (r *ReliableReceiver) nackScan(s *rstream, now int64) {
	w := uint32(len(s.slots))
	lo := s.highest - w + 1
	if s.started && seqLess(lo, s.last+1) {
		lo = s.last + 1
	}
	next := int64(1<<63 - 1)
	var runStart, runLen uint32
	sent, why := 0, plainNoBlock
	for q := lo; !seqLess(s.highest, q); q++ {
		if s.fecK > 0 && (q == lo || (q-s.base)%uint32(s.fecK) == 0) {
			// A parity block's losses are asked for as a count of repair
			// symbols once the block has ended (fec_receiver.go).
			b := s.blockOf(q)
			mode, nx, pw := r.blockScan(s, b, now)
			why = pw
			if mode != blockPlain {
				if runLen > 0 {
					r.sendFeedback(s, headers.TypeNACK, runStart, uint16(runLen))
					runLen = 0
					sent++
				}
				next = min(next, nx)
				q = b + uint32(s.fecK) - 1
				continue
			}
		}
		sl := &s.slots[q&s.mask]
		due := sl.seq == q && wanted(sl.state) && sl.due <= now
		if due && sent < 64 {
			if runLen == 0 {
				runStart = q
			}
			runLen++
			if s.fecK > 0 {
				s.rep.NamedLosses[why]++
			}
			sl.nacks = min(sl.nacks+1, 5)
			sl.due = now + r.nackRepeat(s)<<(sl.nacks-1)
			sl.at = now
		}
		if sl.seq == q && wanted(sl.state) {
			next = min(next, sl.due)
		}
		if (!due || runLen == 0xFFFF) && runLen > 0 {
			r.sendFeedback(s, headers.TypeNACK, runStart, uint16(runLen))
			runLen = 0
			sent++
		}
	}
	if runLen > 0 {
		r.sendFeedback(s, headers.TypeNACK, runStart, uint16(runLen))
	}
	if next == int64(1<<63-1) {
		// Wanted numbers outside the scanned span are stale: recount.
		s.wants = 0
		for i := range s.slots {
			if wanted(s.slots[i].state) {
				s.slots[i].state, s.slots[i].kept = slotEmpty, false
			}
		}
		return
	}
	s.nextNack = next
}

// abortStream stops stream s because its sink failed at sequence number
// failed with err: nothing more is delivered, acknowledged or NACKed, and
// an ABORT goes out now and again on later DATA.
func (r *ReliableReceiver) abortStream(s *rstream, failed uint32, err error) {
	s.abort = AbortReasonOf(err)
	s.rep.AbortReason, s.rep.StoreError = s.abort.String(), err.Error()
	// The first sequence number not stored: what the last ACK did not
	// cover (a failed Commit may have lost anything after it).
	switch {
	case s.hasAcked:
		s.abortSeq = s.acked
	case s.started:
		s.abortSeq = s.first
	default:
		s.abortSeq = failed
	}
	s.flowing, s.ackDue, s.ackNow = false, false, false
	for i := range s.slots {
		s.slots[i].state = slotEmpty
	}
	s.wants = 0
	r.sendAbort(s)
}

// sendAbort sends ABORT about stream s, naming this receiver.
func (r *ReliableReceiver) sendAbort(s *rstream) {
	s.lastAbort = r.now
	r.sendFeedback(s, headers.TypeABORT, s.abortSeq, uint16(s.abort))
}

// sendFeedback sends an ACK, NACK, CNP or ABORT about stream s.
func (r *ReliableReceiver) sendFeedback(s *rstream, t headers.Type, seq uint32, count uint16) {
	n := putFeedback(r.out, t, s.rep.Source, s.rep.Session, s.rep.Epoch, r.cfg.ID, seq, count, r.cfg.HopLimit)
	if err := r.tr.Send(r.out[:n]); err != nil {
		r.rep.SendErrors++
		return
	}
	switch t {
	case headers.TypeACK:
		s.rep.ACKs++
	case headers.TypeNACK:
		s.rep.NACKs++
	case headers.TypeCNP:
		s.rep.CNPs++
	case headers.TypeABORT:
		s.rep.ABORTs++
	}
}

// Report returns the account so far.
func (r *ReliableReceiver) Report() *SessionReport {
	rep := r.rep
	rep.Elapsed = time.Duration(r.clock())
	rep.Transport = r.tr.Stats()
	rep.Streams = make([]SessionStreamReport, 0, len(r.list))
	for _, s := range r.list {
		rep.Streams = append(rep.Streams, s.rep)
	}
	// Transfers of one (source, session) stay in the order they came.
	slices.SortStableFunc(rep.Streams, func(a, b SessionStreamReport) int {
		if a.Source != b.Source {
			return int(a.Source) - int(b.Source)
		}
		return int(a.Session) - int(b.Session)
	})
	for i, c := range r.mal {
		if c > 0 {
			if rep.MalformedBy == nil {
				rep.MalformedBy = map[string]uint64{}
			}
			rep.MalformedBy[ReliableMalformedReasons[i]] = c
		}
	}
	return &rep
}
