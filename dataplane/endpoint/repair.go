package endpoint

// The sender's repair path (docs/feedback.md, "What a sender does"):
//
//  1. A NACK(S, C) marks each packet S..S+C-1 wanted by the NACK's
//     receivers (a bitmap over the packet's original set, in the slot) and,
//     if the packet had no repair pending, queues one due after the repair
//     hold. NACKs for the same packet from other receivers (other leaves'
//     NACKs reach the source at other times) join the pending repair.
//  2. A block NACK (NACK with P: Sequence a block's first packet, Count the
//     repair symbols wanted) marks the block wanted by its receivers, with
//     the largest count asked, and queues the block's parity the same way.
//     For a holdoff (one smoothed round trip) after parity of the block
//     went out, a block NACK is taken to predate it (NORM's repair
//     holdoff, RFC 5740 5.3): it asks only for what exceeds the symbols
//     sent meanwhile, and one asking no more is stale, counted and dropped.
//     (A receiver that has heard parity of the block waits a NACK back-off
//     before asking again, so its next NACK arrives after the holdoff.)
//  3. When a repair is due (timers), the packet goes once to the union of
//     the receivers that asked, minus those that acknowledged it since;
//     a block's next parity symbols (fec.go) go to every receiver of the
//     stream that has not acknowledged the whole block, asked or not: one
//     symbol repairs any one loss of the block anywhere (NORM multicasts
//     its repairs to the group), so receivers whose NACK is still on its
//     way, or not yet due, need nothing more. Parity is computed when a
//     block is first asked for, from the block's packets still in the
//     window.
//
// The hold is half the smoothed round trip, within [100 µs, RepairWindow]:
// long enough for the NACKs one loss causes at different leaves to meet,
// short against the receivers' NACK back-off. Queue, bitmaps and parity
// buffers are sized at start: nothing is allocated per packet.

import (
	"math/bits"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

// repItem is a queued repair: a packet or a block's parity.
type repItem struct {
	seq   uint32
	block bool
	due   int64
}

// fblock is one FEC block's repair state at the sender.
type fblock struct {
	start   uint32
	valid   bool
	pending bool
	want    int // repair symbols asked for (the largest count merged)
	next    int // the next parity index to send
	// sentAt is when parity of the block last went out, inflight how many
	// symbols went out since the holdoff last ran out: a block NACK
	// arriving within the holdoff of sentAt is answered by them up to
	// inflight symbols.
	sentAt   int64
	inflight int
	have     int // parity symbols computed so far
	ask      []uint64
	parity   []byte // P buffers of pbLen bytes: header room, payload header, shard
}

const minRepairHold = int64(100 * time.Microsecond)

// initRepair sizes the repair queue, the per-slot bitmaps and, with FEC, the
// block state and parity buffers.
func (s *ReliableSender) initRepair() {
	words := (max(len(s.cfg.Receivers), s.cfg.MaxSet) + 63) / 64
	ask := make([]uint64, len(s.slots)*words)
	for i := range s.slots {
		s.slots[i].ask = ask[i*words : (i+1)*words : (i+1)*words]
	}
	n := len(s.slots) + 1
	if s.fecK > 0 {
		nb := len(s.slots)/s.fecK + 2
		s.fblocks = make([]fblock, nb)
		s.shardLen = ShardHeaderLen + s.MaxAppData(len(s.fixed))
		s.pbLen = s.hdrRoom + PayloadHeaderLen + s.shardLen
		fw := (len(s.fixed) + 63) / 64
		fbits := make([]uint64, nb*fw)
		mem := make([]byte, nb*s.fecP*s.pbLen)
		for i := range s.fblocks {
			s.fblocks[i].ask = fbits[i*fw : (i+1)*fw : (i+1)*fw]
			s.fblocks[i].parity = mem[i*s.fecP*s.pbLen : (i+1)*s.fecP*s.pbLen]
		}
		s.srcShards = make([]byte, s.fecK*s.shardLen)
		s.shards = make([][]byte, s.fecK+s.fecP)
		n += nb
	}
	q := 1
	for q < n {
		q <<= 1
	}
	s.repQ = make([]repItem, q)
}

// repairHold is how long a NACK-driven repair waits for more requests.
func (s *ReliableSender) repairHold() int64 {
	w := int64(s.cfg.RepairWindow)
	if !s.hasRTT {
		return max(w/2, min(minRepairHold, w))
	}
	return min(max(s.srtt/2, minRepairHold), w)
}

func (s *ReliableSender) enqueueRepair(seq uint32, block bool) {
	s.repQ[s.repTail&uint32(len(s.repQ)-1)] = repItem{seq: seq, block: block, due: s.now + s.repairHold()}
	s.repTail++
}

// repairDue is when the oldest queued repair is due (false: none queued).
func (s *ReliableSender) repairDue() (int64, bool) {
	if s.repHead == s.repTail {
		return 0, false
	}
	return s.repQ[s.repHead&uint32(len(s.repQ)-1)].due, true
}

// askRepair merges a NACK's receivers (only; nil: every receiver) into the
// pending repair of sl, queueing one if none is pending.
func (s *ReliableSender) askRepair(sl *sslot, only []uint16) {
	added := false
	s.eachUnacked(sl, only, func(i int, _ uint16) {
		sl.ask[i>>6] |= 1 << (i & 63)
		added = true
	})
	if !added {
		return
	}
	if sl.pending {
		s.rep.MergedRequests++
		return
	}
	sl.pending = true
	s.enqueueRepair(sl.seq, false)
}

// flushRepairs sends the repairs that are due.
func (s *ReliableSender) flushRepairs(now int64) {
	mask := uint32(len(s.repQ) - 1)
	for s.repHead != s.repTail {
		it := s.repQ[s.repHead&mask]
		if it.due > now {
			return
		}
		s.repHead++
		if it.block {
			s.sendParity(it.seq)
			continue
		}
		sl := &s.slots[it.seq&s.mask]
		if sl.seq != it.seq || !sl.pending {
			continue
		}
		s.targets = s.targets[:0]
		for w, m := range sl.ask {
			for ; m != 0; m &= m - 1 {
				i := w<<6 + bits.TrailingZeros64(m)
				id := sl.set[i]
				r := &s.rcv[s.idx[id]]
				if !r.failed && !(r.hasAck && seqLess(sl.seq, r.ack)) {
					s.targets = append(s.targets, id)
				}
			}
		}
		clear(sl.ask)
		sl.pending = false
		if sl.used && len(s.targets) > 0 {
			s.retransmit(sl, s.targets)
			s.rep.NACKRetransmits++
		}
	}
}

// block returns the state slot of the FEC block starting at b.
func (s *ReliableSender) block(b uint32) *fblock {
	n := (b - s.cfg.FirstSeq) / uint32(s.fecK)
	return &s.fblocks[n%uint32(len(s.fblocks))]
}

// parityHoldoff is how long after parity of a block went out a block NACK
// for it is taken to have been sent before that parity arrived: one
// smoothed round trip (parity down, the NACK up), at least the repair hold.
func (s *ReliableSender) parityHoldoff() int64 {
	if !s.hasRTT {
		return 2 * s.repairHold()
	}
	return max(s.srtt, s.repairHold())
}

// onBlockNACK merges a block NACK for the block at b asking for count
// symbols on behalf of ids (nil: every receiver). It returns false for a
// NACK that asks for nothing new (bad, late or stale).
func (s *ReliableSender) onBlockNACK(b, count uint32, ids []uint16) bool {
	k := uint32(s.fecK)
	if k == 0 || (b-s.cfg.FirstSeq)%k != 0 || !seqLess(b+k-1, s.next) || count == 0 {
		// No FEC here, not a block start, or a block not sent in full:
		// receivers ask for parity only of blocks they saw end.
		s.rep.BadFeedback++
		return false
	}
	if seqLess(b+k-1, s.head) {
		return false // acknowledged by everyone since
	}
	s.rep.BlockNACKs++
	fb := s.block(b)
	if !fb.valid || fb.start != b {
		if fb.pending {
			// The slot's older block is long acknowledged (it is a
			// window behind): its queued repair finds it gone.
			fb.pending = false
		}
		fb.start, fb.valid, fb.want, fb.next, fb.have = b, true, 0, 0, 0
		fb.sentAt, fb.inflight = 0, 0
		clear(fb.ask)
	}
	need := int(min(count, k))
	if fb.inflight > 0 {
		if s.now-fb.sentAt >= s.parityHoldoff() {
			fb.inflight = 0 // what was sent has had time to arrive
		} else if need -= fb.inflight; need <= 0 {
			s.rep.StaleBlockNACKs++
			return false
		}
	}
	added := false
	j := 0
	for i, id := range s.fixed {
		if ids != nil {
			for j < len(ids) && ids[j] < id {
				j++
			}
			if j == len(ids) {
				break
			}
			if ids[j] != id {
				continue
			}
		}
		r := &s.rcv[s.idx[id]]
		if r.failed || (r.hasAck && seqLess(b+k-1, r.ack)) {
			continue
		}
		fb.ask[i>>6] |= 1 << (i & 63)
		added = true
	}
	if !added {
		return false
	}
	fb.want = max(fb.want, need)
	if fb.pending {
		s.rep.MergedRequests++
		return true
	}
	fb.pending = true
	s.enqueueRepair(b, true)
	return true
}

// sendParity sends the block's next parity symbols, as many as the largest
// request merged, if one who asked still misses some of it: to every
// receiver of the stream that has not acknowledged the whole block.
func (s *ReliableSender) sendParity(b uint32) {
	fb := s.block(b)
	if !fb.valid || fb.start != b || !fb.pending {
		return
	}
	fb.pending = false
	k := uint32(s.fecK)
	asked := false
	for w, m := range fb.ask {
		for ; m != 0 && !asked; m &= m - 1 {
			r := &s.rcv[s.idx[s.fixed[w<<6+bits.TrailingZeros64(m)]]]
			asked = !r.failed && !(r.hasAck && seqLess(b+k-1, r.ack))
		}
	}
	clear(fb.ask)
	want := fb.want
	fb.want = 0
	if !asked {
		return
	}
	s.targets = s.targets[:0]
	for _, id := range s.fixed {
		r := &s.rcv[s.idx[id]]
		if !r.failed && !(r.hasAck && seqLess(b+k-1, r.ack)) {
			s.targets = append(s.targets, id)
		}
	}
	if fb.inflight > 0 && s.now-fb.sentAt >= s.parityHoldoff() {
		fb.inflight = 0
	}
	fb.sentAt = s.now
	fb.inflight += want
	for i := 0; i < want; i++ {
		idx := fb.next % s.fecP
		if idx >= fb.have && !s.encode(fb, idx+1) {
			s.rep.ParityUnavailable++
			return
		}
		fb.next++
		buf := fb.parity[idx*s.pbLen : (idx+1)*s.pbLen]
		if err := s.transmitBuf(buf, PayloadHeaderLen+s.shardLen, b, headers.FlagRetransmit|headers.FlagParity, s.targets); err != nil {
			continue
		}
		s.rep.Retransmissions++
		s.rep.ParityRepairs++
		s.rep.RetransmitCopies += uint64(len(s.targets))
		s.roundSent += uint64(len(s.targets))
	}
}

// encode computes the block's parity symbols up to at least need (doubling,
// so a block asked for few symbols costs few). It fails when one of the
// block's packets left the window.
func (s *ReliableSender) encode(fb *fblock, need int) bool {
	k := s.fecK
	p := min(max(need, 2*fb.have, min(8, s.fecP)), s.fecP)
	for i := 0; i < k; i++ {
		q := fb.start + uint32(i)
		sl := &s.slots[q&s.mask]
		if sl.seq != q || sl.plen < PayloadHeaderLen {
			return false
		}
		sh := s.srcShards[i*s.shardLen : (i+1)*s.shardLen]
		putShard(sh, sl.mem[s.hdrRoom+PayloadHeaderLen:s.hdrRoom+sl.plen], sl.final)
		s.shards[i] = sh
	}
	for j := 0; j < p; j++ {
		buf := fb.parity[j*s.pbLen : (j+1)*s.pbLen]
		putParityHeader(buf[s.hdrRoom:], k, s.fecP, j, s.cfg.FirstSeq)
		s.shards[k+j] = buf[s.hdrRoom+PayloadHeaderLen:]
	}
	enc, err := s.codes.get(k, p)
	if err != nil {
		return false
	}
	if err := enc.Encode(s.shards[:k+p]); err != nil {
		return false
	}
	fb.have = p
	return true
}

// repairWait shortens a wait for feedback to when the next repair is due.
func (s *ReliableSender) repairWait(wait int64) int64 {
	if due, ok := s.repairDue(); ok {
		wait = min(wait, max(due-s.clock(), 0))
	}
	return wait
}
