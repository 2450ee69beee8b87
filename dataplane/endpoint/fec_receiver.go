package endpoint

// The receiver's parity path (fec.go has the wire format), in order:
//
//  1. Fixed-mode DATA whose payload header names a block length K turns
//     FEC on for the stream. Every packet's app data stays in its slot
//     after delivery (kept) until the window moves past it: a block is
//     rebuilt from its packets and parity, including those delivered.
//  2. Losses in a block are not NACKed packet by packet. Once the block
//     has ended (a packet at or past its last sequence number arrived),
//     one block NACK (NACK with P, Sequence the block's first packet,
//     Count the symbols still needed: missing packets less parity held)
//     goes up, repeated with the usual back-off. A block still open is
//     waited for, unless the stream paused (no new packet for the NACK
//     back-off, or the highest packet had F): then its losses are NACKed
//     by name. A
//     block asked for fecTries times, or one whose delivered packets left
//     the window, falls back to NACKs by name too.
//  3. A parity packet is stored in the slot of one of its block's missing
//     packets (the slot is free: its packet is missing), and when the
//     block's packets and parity reach K, the missing packets are rebuilt
//     (Reed-Solomon), checked (length and flags from the shard) and
//     delivered in order like any buffered packet. A missing packet that
//     arrives after all moves the parity its slot held to another missing
//     slot of the block.
//
// The decoder's scratch (K shards) is allocated once per stream; the
// Reed-Solomon decode allocates its matrix per block it rebuilds, never per
// packet.

import (
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

// fecTries is how many block NACKs a block gets before its losses are
// NACKed by name, and fecGiveUp how long at least after the first, or after
// the last parity of the block that came (the sender answers): both must
// have passed. (The sender drops block NACKs that parity on its way
// answers, so under a slow, jittery path a few tries go unanswered; and
// before a receiver has seen its first repair it cannot know the round
// trip: on the 64-receiver veth lab, round trips of 0.3-1.8 s, five tries
// 10-160 ms apart ran out before any parity could come, and most losses
// went by name, one repair per packet instead of one parity symbol per
// block for every receiver.)
const (
	// pauseBackoffs: NACK back-offs without a new packet that make a
	// stream paused inside a block.
	pauseBackoffs = 4
	fecTries      = 5
	fecGiveUp     = int64(2 * time.Second)
)

// rfec is a stream's decoder scratch.
type rfec struct {
	k, shardLen int
	src         []byte   // K shards
	shards      [][]byte // K+P entries
	codes       codecs
}

// blockOf is the first sequence number of q's block.
func (s *rstream) blockOf(q uint32) uint32 {
	k := uint32(s.fecK)
	return q - (q-s.base)%k
}

// delivered: q was delivered already.
func (s *rstream) delivered(q uint32) bool { return s.started && !seqLess(s.last, q) }

// noteFEC reads a fixed-mode DATA packet's block length (payload byte 1)
// and notes whether the stream paused at a packet with F.
func (r *ReliableReceiver) noteFEC(s *rstream, k byte, base, seq uint32, final bool, oldHigh uint32, hadHigh bool) {
	if s.fecK == 0 && k > 0 {
		s.fecK, s.base = int(k), base
	}
	if s.fecK > 0 && (!hadHigh || seqLess(oldHigh, seq)) {
		s.highFinal, s.highAt = final, r.now
		if hadHigh && s.wants > 0 && !seqLess(seq, s.blockOf(oldHigh)+uint32(s.fecK)-1) {
			s.nextNack = r.now // a block with losses has ended: ask now
		}
	}
}

// keep copies an in-order packet's data into its slot before it is
// delivered in place. It returns whether the packet was a missing one (a
// repair: its block may now be decodable).
func (r *ReliableReceiver) keep(s *rstream, sl *rslot, seq uint32, data []byte, final bool) bool {
	if sl.seq == seq && wanted(sl.state) {
		s.sampleRepair(sl.at, r.now)
		if sl.state == slotParity {
			r.relocateParity(s, sl)
			sl.state = slotWant
		}
		sl.n, sl.final, sl.kept = copy(sl.data, data), final, true
		return true
	}
	if r.occupied(s, sl, seq) {
		return false
	}
	*sl = rslot{seq: seq, state: slotEmpty, kept: true, final: final, data: sl.data}
	sl.n = copy(sl.data, data)
	return false
}

// relocateParity moves the parity shard in sl (whose packet has arrived) to
// another missing packet's slot of the block; with none left, the block
// needs no parity and it goes.
func (r *ReliableReceiver) relocateParity(s *rstream, sl *rslot) {
	b := s.blockOf(sl.seq)
	for q := b; q != b+uint32(s.fecK); q++ {
		o := &s.slots[q&s.mask]
		if o != sl && o.seq == q && o.state == slotWant {
			o.n = copy(o.data, sl.data[:sl.n])
			o.state, o.pidx, o.kept = slotParity, sl.pidx, false
			break
		}
	}
	sl.kept = false
}

// Modes of a block in the NACK scan.
const (
	blockPlain = iota // NACK its losses by name
	blockAsk          // block NACKs
	blockWait         // still open: wait for its end
)

// Why a block's losses are NACKed by name (blockPlain), indexes of
// StreamReport.NamedLosses.
const (
	plainNoBlock = iota
	plainPaused
	plainUndecodable
	plainTries
	plainParityHeld
)

// blockScan decides how the losses of the block at b are asked for, sends
// its block NACK if one is due, and returns the mode, when the block needs
// looking at again and, for blockPlain, why.
func (r *ReliableReceiver) blockScan(s *rstream, b uint32, now int64) (int, int64, int) {
	k := uint32(s.fecK)
	closed := !seqLess(s.highest, b+k-1)
	missing, par, tries := 0, 0, uint8(0)
	due, decodable, named := false, true, false
	asked := int64(0)
	next := int64(1<<63 - 1)
	for q := b; q != b+k; q++ {
		sl := &s.slots[q&s.mask]
		switch {
		case s.delivered(q):
			if sl.seq != q || !sl.kept {
				decodable = false // its data left the window
			}
		case sl.seq == q && sl.state == slotHave:
		case sl.seq == q && wanted(sl.state):
			missing++
			if sl.state == slotParity {
				par++
			}
			due = due || sl.due <= now
			tries = max(tries, sl.nacks)
			named = named || sl.named
			if sl.asked != 0 && (asked == 0 || sl.asked < asked) {
				asked = sl.asked
			}
			next = min(next, sl.due)
		case closed:
			missing++ // not marked yet (beyond the scan): missing all the same
		}
	}
	switch {
	case missing == 0 || missing <= par:
		return blockPlain, next, plainParityHeld
	case !decodable:
		return blockPlain, next, plainUndecodable
	case named || (tries >= fecTries && asked != 0 && now-asked >= max(fecGiveUp, 8*r.nackRepeat(s))):
		return blockPlain, next, plainTries
	case !closed && (s.highFinal || now-s.highAt >= pauseBackoffs*r.nackRepeat(s)):
		// The stream paused inside the block (repairs of older blocks
		// may still come: what counts is new packets). A sender the
		// window stops stops at a block's end, so this is a sender
		// with nothing to send yet; a gap of one back-off is mostly a
		// process that was not scheduled on a loaded host.
		return blockPlain, next, plainPaused
	case !closed:
		return blockWait, s.highAt + pauseBackoffs*r.nackRepeat(s), 0
	case !due:
		return blockAsk, next, 0
	case tries == 0 && !r.holdFirstNACK(s, b, now):
		// Its first block NACK waits a random back-off: parity that
		// another receiver's NACK brings reaches every receiver missing
		// the block, so most of them never need to ask.
		return blockAsk, r.blockDue(s, b), 0
	}
	r.sendBlockNACK(s, b, uint16(missing-par))
	next = int64(1<<63 - 1)
	for q := b; q != b+k; q++ {
		if sl := &s.slots[q&s.mask]; sl.seq == q && wanted(sl.state) && !s.delivered(q) {
			sl.nacks = min(tries+1, 5)
			sl.due = now + r.nackRepeat(s)<<(sl.nacks-1)
			sl.at = now
			if sl.asked == 0 {
				sl.asked = now
			}
			next = min(next, sl.due)
		}
	}
	return blockAsk, next, 0
}

// holdFirstNACK draws the random back-off of the block at b's first block
// NACK, uniform over one NACK back-off (NORM's NACK suppression, RFC 5740
// 5.3, with the sender's parity to every receiver missing the block as the
// repair others hear). It returns true when it was drawn before and has
// run out: the NACK is due now.
func (r *ReliableReceiver) holdFirstNACK(s *rstream, b uint32, now int64) bool {
	k := uint32(s.fecK)
	for q := b; q != b+k; q++ {
		if sl := &s.slots[q&s.mask]; sl.seq == q && wanted(sl.state) && sl.held {
			return true
		}
	}
	r.rng ^= r.rng << 13
	r.rng ^= r.rng >> 7
	r.rng ^= r.rng << 17
	due := now + int64(r.rng%uint64(r.nackRepeat(s)))
	for q := b; q != b+k; q++ {
		if sl := &s.slots[q&s.mask]; sl.seq == q && wanted(sl.state) && !s.delivered(q) {
			sl.held = true
			sl.due = max(sl.due, due)
		}
	}
	return false
}

// blockDue is when the next of the block at b's missing packets is due.
func (r *ReliableReceiver) blockDue(s *rstream, b uint32) int64 {
	next := int64(1<<63 - 1)
	for q := b; q != b+uint32(s.fecK); q++ {
		if sl := &s.slots[q&s.mask]; sl.seq == q && wanted(sl.state) && !s.delivered(q) {
			next = min(next, sl.due)
		}
	}
	return next
}

// holdBlockNACK restarts the NACK back-off of the block at b's missing
// packets on hearing parity of it (NORM's rule, RFC 5740 5.3): the rest of
// that round may be on its way, and a NACK sent before it had time to
// arrive is one the sender's holdoff takes for stale. Their tries are
// kept, so the back-off still grows; but the sender answers this block's
// NACKs, so its give-up on parity (fecGiveUp) counts from now.
func (r *ReliableReceiver) holdBlockNACK(s *rstream, b uint32) {
	due := r.now + r.nackRepeat(s)
	for q := b; q != b+uint32(s.fecK); q++ {
		if sl := &s.slots[q&s.mask]; sl.seq == q && wanted(sl.state) && !s.delivered(q) {
			sl.due = max(sl.due, due)
			if sl.asked != 0 {
				sl.asked = r.now
			}
		}
	}
}

// sendBlockNACK asks for count repair symbols of the block at b.
func (r *ReliableReceiver) sendBlockNACK(s *rstream, b uint32, count uint16) {
	n := putFeedback(r.out, headers.TypeNACK, s.rep.Source, s.rep.Session, s.rep.Epoch, r.cfg.ID, b, count, r.cfg.HopLimit)
	h := headers.SMH(r.out[:n])
	h.SetFlags(h.Flags() | headers.FlagParity)
	if err := r.tr.Send(r.out[:n]); err != nil {
		r.rep.SendErrors++
		return
	}
	s.rep.NACKs++
	s.rep.BlockNACKs++
}

// handleParity takes in a parity packet (SMH DATA with P).
func (r *ReliableReceiver) handleParity(h headers.SMH) {
	ph, st := parseParity(h.Payload())
	b := h.Sequence()
	switch {
	case st != parityOK || (b-ph.base)%uint32(ph.k) != 0 || h.Flags()&headers.FlagRetransmit == 0:
		r.malformed(RMalBadParity)
		return
	case len(ph.shard) > r.cfg.MaxDatagram:
		r.malformed(RMalTooBig)
		return
	}
	s := r.noteData(h)
	if s.abort != 0 {
		return // it cannot be stored: nothing to rebuild
	}
	s.rep.Retransmitted++
	s.rep.ParityReceived++
	if s.fecK == 0 {
		s.fecK, s.base = ph.k, ph.base
	} else if s.fecK != ph.k || s.base != ph.base {
		r.malformed(RMalBadParity)
		return
	}
	k := uint32(ph.k)
	end := b + k - 1
	if s.delivered(end) {
		s.rep.ParityUseless++
		s.ackDue = true
		return
	}
	// The sender sends parity only for blocks it sent in full: everything
	// up to the block's end exists, and what has not come is missing.
	if !s.hasHigh || seqLess(s.highest, end) {
		lo := b
		if s.hasHigh && !seqLess(s.highest, b) {
			lo = s.highest + 1
		}
		s.highest, s.hasHigh = end, true
		for q := lo; q != end+1; q++ {
			if !s.delivered(q) {
				r.want(s, q, q+1)
			}
		}
	}
	r.holdBlockNACK(s, b)
	var store *rslot
	missing, par := 0, 0
	for q := b; q != end+1; q++ {
		sl := &s.slots[q&s.mask]
		switch {
		case s.delivered(q):
			if sl.seq != q || !sl.kept {
				s.rep.ParityUseless++ // the block cannot be rebuilt here any more
				return
			}
		case sl.seq != q || sl.state == slotEmpty:
			r.want(s, q, q+1)
			if sl.seq != q || sl.state != slotWant {
				s.rep.Overflow++
				return
			}
			fallthrough
		case sl.state == slotWant:
			missing++
			if store == nil {
				store = sl
			}
		case sl.state == slotParity:
			missing++
			par++
			if int(sl.pidx) == ph.index {
				s.rep.Duplicates++
				return
			}
			if sl.n != len(ph.shard) {
				r.malformed(RMalBadParity)
				return
			}
		}
	}
	if missing == par || store == nil {
		s.rep.ParityUseless++
		return
	}
	s.sampleRepair(store.at, r.now)
	store.n = copy(store.data, ph.shard)
	store.state, store.pidx, store.kept = slotParity, uint8(ph.index), false
	if s.fec == nil || s.fec.k != ph.k || s.fec.shardLen != len(ph.shard) || len(s.fec.shards) < ph.k+ph.p {
		s.fec = &rfec{k: ph.k, shardLen: len(ph.shard), src: make([]byte, ph.k*len(ph.shard)), shards: make([][]byte, maxShards), codes: s.fecCodes()}
	}
	s.fecP = ph.p
	r.tryDecode(s, b)
}

// fecCodes keeps a stream's codes when its scratch is resized.
func (s *rstream) fecCodes() codecs {
	if s.fec != nil {
		return s.fec.codes
	}
	return codecs{}
}

// tryDecode rebuilds the missing packets of the block at b once its
// packets and parity make K, and delivers what is now in order.
func (r *ReliableReceiver) tryDecode(s *rstream, b uint32) {
	f := s.fec
	if f == nil || s.fecK != f.k || s.fecP == 0 {
		return
	}
	k := uint32(s.fecK)
	have, par, missing := 0, 0, 0
	for q := b; q != b+k; q++ {
		sl := &s.slots[q&s.mask]
		switch {
		case s.delivered(q) || (sl.seq == q && sl.state == slotHave):
			if sl.seq != q || !sl.kept {
				return
			}
			have++
		case sl.seq == q && sl.state == slotParity:
			par++
			missing++
		default:
			missing++
		}
	}
	if missing == 0 || par == 0 || have+par < int(k) {
		return
	}
	shards := f.shards[:s.fecK+s.fecP]
	clear(shards)
	for i := range k {
		q := b + i
		sl := &s.slots[q&s.mask]
		sh := f.src[int(i)*f.shardLen : int(i+1)*f.shardLen]
		switch {
		case sl.seq == q && sl.state == slotParity:
			if int(sl.pidx) >= s.fecP || sl.n != f.shardLen {
				r.malformed(RMalBadParity)
				return
			}
			shards[s.fecK+int(sl.pidx)] = sl.data[:sl.n]
			shards[i] = sh[:0]
		case sl.seq == q && sl.kept && (sl.state == slotHave || s.delivered(q)):
			if sl.n > f.shardLen-ShardHeaderLen {
				r.malformed(RMalBadParity)
				return
			}
			putShard(sh, sl.data[:sl.n], sl.final)
			shards[i] = sh
		default:
			shards[i] = sh[:0]
		}
	}
	enc, err := f.codes.get(s.fecK, s.fecP)
	if err == nil {
		err = enc.ReconstructData(shards)
	}
	if err != nil {
		r.malformed(RMalBadParity)
		return
	}
	for i := range k {
		q := b + i
		sl := &s.slots[q&s.mask]
		if s.delivered(q) || (sl.seq == q && sl.state == slotHave) {
			continue
		}
		if data, _, err := shardData(shards[i]); err != nil || len(data) > len(sl.data) {
			// Parity that does not rebuild a sane packet: the block is
			// asked for by name from now on.
			r.malformed(RMalBadParity)
			r.dropParity(s, b)
			return
		}
	}
	for i := range k {
		q := b + i
		sl := &s.slots[q&s.mask]
		if s.delivered(q) || (sl.seq == q && sl.state == slotHave) || sl.seq != q || !wanted(sl.state) {
			continue // (every missing packet is wanted: handleParity saw to it)
		}
		data, final, _ := shardData(shards[i])
		sl.n = copy(sl.data, data)
		sl.state, sl.prev, sl.final, sl.kept = slotHave, q-1, final, true
		s.wants--
		s.rep.Recovered++
		s.rep.Buffered++
		if q != s.base {
			// Link it behind its predecessor, as a buffered arrival does.
			r.want(s, q-1, q)
		}
	}
	r.deliverBuffered(s)
}

// dropParity forgets the parity held for the block at b (its slots are
// wanted again, asked for by name).
func (r *ReliableReceiver) dropParity(s *rstream, b uint32) {
	for q := b; q != b+uint32(s.fecK); q++ {
		if sl := &s.slots[q&s.mask]; sl.seq == q && sl.state == slotParity {
			sl.state, sl.nacks, sl.named = slotWant, fecTries, true
		}
	}
}

// deliverBuffered delivers the next packet in order and its successors if
// the next one is buffered (rebuilt from parity).
func (r *ReliableReceiver) deliverBuffered(s *rstream) {
	q := s.base
	if s.started {
		q = s.last + 1
	}
	sl := &s.slots[q&s.mask]
	if sl.seq != q || sl.state != slotHave || (s.started && sl.prev != s.last) {
		return
	}
	if r.deliver(s, q, sl.data[:sl.n], sl.final) {
		r.drain(s, q)
	}
}

// sampleRepair notes the delay from a NACK sent at (0: none) to a repair
// of it arriving now.
func (s *rstream) sampleRepair(at, now int64) {
	if at <= 0 || now <= at {
		return
	}
	if d := now - at; s.repairDelay == 0 {
		s.repairDelay = d
	} else {
		s.repairDelay = (7*s.repairDelay + d) / 8
	}
}

// nackRepeat is the first NACK back-off of a stream: NackRepeat, or 1.5
// times the repairs' delay if that is longer (the sender holds repairs to
// merge them, and a loaded path is slow: asking again before the repair
// could be back only adds feedback).
func (r *ReliableReceiver) nackRepeat(s *rstream) int64 {
	return max(int64(r.cfg.NackRepeat), s.repairDelay*3/2)
}
