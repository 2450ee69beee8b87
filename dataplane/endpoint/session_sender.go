package endpoint

// The reliable send path (docs/feedback.md, "What a sender does"), in order:
//
//  1. NewReliableSender sizes a window of W packet slots once: each slot
//     has room for the largest SMH the stream can need in front of its
//     payload, so a datagram is built in place and sent without a copy.
//  2. SendMessage / SendMessageFrom reserve a slot per packet (running the
//     event loop while the window is full or the rate limiter says wait),
//     fill the payload header (wire.go) and app data, and send it to the
//     message's receiver set: the stream's fixed set, its group (SMH Enc 2),
//     or in chain mode a set per message.
//  3. The event loop, run by whichever call is waiting, reads feedback from
//     the transport: ACK(X) moves one receiver (individual: no set, Reporter
//     ID a receiver) or the receivers an aggregate names (its set: the ones
//     it speaks for; a name the stream never addressed is counted as
//     ambiguous and skipped, so an aggregate can never complete a receiver
//     it does not speak for) to X, and frees packets every receiver
//     of their set has acknowledged; NACK(S, C) retransmits S..S+C-1, each
//     to the NACK's set ∩ the packet's original set, minus receivers that
//     acknowledged it, with R; CNP halves the rate (congestion control);
//     ABORT marks the receivers it names (those the stream addressed)
//     failed for its reason: they hold no packets and get no repairs.
//  4. A timer resends packets unacknowledged for an RTO (RFC 6298 estimate
//     from ACK round trips, doubling per resend) to the receivers that have
//     not acknowledged them: tail loss. A receiver that makes no progress
//     for GiveUp is declared failed and no longer holds the window.
//  5. Flush waits until every packet is acknowledged (or its receivers
//     failed) and reports, per receiver, whether it has everything.
//
// Congestion control is rate-based AIMD (CCConfig). Nothing is allocated
// per packet: slots, sets and scratch lists are sized at start (a chain-mode
// slot's set buffer grows to the largest set once).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

// dataFixedLen is the fixed part of the sender's DATA: every one carries
// the Transfer Epoch (E).
const dataFixedLen = headers.FixedLen + headers.EpochLen

// CCConfig tunes the sender's rate-based AIMD congestion control.
type CCConfig struct {
	// InitialRate is the starting rate in packets per second (default
	// 20,000). MinRate and MaxRate bound it (defaults 500 and 1,000,000).
	InitialRate, MinRate, MaxRate float64
	// Increase is added to the rate once per round trip without congestion
	// (default 2,000 packets per second: additive increase).
	Increase float64
	// Decrease multiplies the rate on congestion, at most once per round
	// trip (default 0.5: multiplicative decrease).
	Decrease float64
	// LossThreshold: a round trip in which the NACKed receiver-packets
	// (Count x Speaks For, summed over NACKs) exceed this fraction of the
	// receiver-packets sent counts as congested (default 0.2, so random
	// loss of a few percent never throttles the sender; queue overflow
	// that hits every receiver does).
	LossThreshold float64
	// Burst is how many packets the limiter lets out back to back (32).
	Burst int
	// Fixed disables AIMD: the rate stays at InitialRate.
	Fixed bool
}

func (c *CCConfig) defaults() error {
	if c.InitialRate == 0 {
		c.InitialRate = 20000
	}
	if c.MinRate == 0 {
		c.MinRate = 500
	}
	if c.MaxRate == 0 {
		c.MaxRate = 1e6
	}
	if c.Increase == 0 {
		c.Increase = 2000
	}
	if c.Decrease == 0 {
		c.Decrease = 0.5
	}
	if c.LossThreshold == 0 {
		c.LossThreshold = 0.2
	}
	if c.Burst == 0 {
		c.Burst = 32
	}
	switch {
	case c.MinRate <= 0 || c.MaxRate < c.MinRate:
		return fmt.Errorf("congestion control: rates min %v max %v: want 0 < min <= max", c.MinRate, c.MaxRate)
	case c.InitialRate < c.MinRate || c.InitialRate > c.MaxRate:
		return fmt.Errorf("congestion control: initial rate %v outside %v-%v", c.InitialRate, c.MinRate, c.MaxRate)
	case c.Increase < 0 || c.Decrease <= 0 || c.Decrease >= 1:
		return fmt.Errorf("congestion control: increase %v, decrease %v: want increase >= 0, 0 < decrease < 1", c.Increase, c.Decrease)
	case c.LossThreshold <= 0 || c.LossThreshold > 1:
		return fmt.Errorf("congestion control: loss threshold %v: want 0-1", c.LossThreshold)
	case c.Burst < 1 || c.Burst > 4096:
		return fmt.Errorf("congestion control: burst %d: want 1-4096", c.Burst)
	}
	return nil
}

// RepairCounts says how a sender's repairs were made: NACKRetransmits and
// RTORetransmits the retransmissions a NACK or an RTO caused; ParityRepairs
// the parity packets among them; BlockNACKs the block NACKs heard;
// StaleBlockNACKs block NACKs that parity already on its way answered (sent
// within the holdoff, repair.go), so they cost nothing; MergedRequests the
// NACKs (packet or block) that joined a repair already pending. `send
// --json` prints them as they are (TransferSummary).
type RepairCounts struct {
	NACKRetransmits uint64 `json:"nack_retransmissions"`
	RTORetransmits  uint64 `json:"rto_retransmissions"`
	ParityRepairs   uint64 `json:"parity_repairs"`
	BlockNACKs      uint64 `json:"block_nacks"`
	StaleBlockNACKs uint64 `json:"stale_block_nacks"`
	MergedRequests  uint64 `json:"merged_requests"`
}

// SessionConfig configures a ReliableSender.
type SessionConfig struct {
	SourceID, SessionID uint16
	// HopLimit goes into SMH (default headers.DefaultHopLimit).
	HopLimit uint8
	// Receivers is the stream's receiver set, strictly ascending. In fixed
	// mode every packet goes to all of them; in chain mode it may be empty
	// (receivers are registered as message sets name them).
	Receivers []uint16
	// Group, with UseGroup, addresses fixed-mode DATA to an SMH group (the
	// first switch expands it); Receivers must then be its members, which
	// the sender needs to account for acknowledgements. Retransmissions go
	// to explicit ID lists.
	Group    uint32
	UseGroup bool
	// Chain selects chain mode: a receiver set per message, with the
	// per-receiver chain in every payload (wire.go).
	Chain bool
	// MaxSet bounds a chain-mode message's set (default 64); it sizes the
	// header room of every slot.
	MaxSet int
	// MaxDatagram bounds a datagram: SMH, payload header and app data
	// (default 1472: a 1500-byte IPv4 MTU).
	MaxDatagram int
	// Window is the number of unacknowledged packets kept (default 1024,
	// a power of two; receivers must use at least as large a window).
	Window int
	// FirstSeq is the first sequence number (the stream's Base).
	FirstSeq uint32
	// Epoch is the transfer's Transfer Epoch (docs/smh.md 2.2), set on
	// every DATA packet; feedback of another epoch is ignored. 0 (the
	// default): a random nonzero one, so a new sender on the same source
	// and session is never taken for an earlier one. Tests force one.
	Epoch uint32
	// MinRTO and MaxRTO bound the retransmission timeout (defaults 30 ms,
	// above a switch's 20 ms aggregation timeout, and 1 s).
	MinRTO, MaxRTO time.Duration
	// GiveUp declares a receiver failed when it acknowledges nothing new
	// for this long while it has packets outstanding (default 10 s).
	GiveUp time.Duration
	// CC tunes congestion control.
	CC CCConfig
	// RepairWindow bounds how long a NACK-driven repair is held so that
	// requests for the same packet (or block) from other receivers merge
	// into one repair (repair.go): the hold is half the smoothed RTT,
	// within 100 µs and RepairWindow (default 20 ms, which bounds it only
	// where the RTT is long; negative: repairs go at once, one per NACK).
	RepairWindow time.Duration
	// FECBlock is the number of packets per parity block in fixed mode
	// (fec.go; default 32, at most 255 and Window/4; negative: no parity,
	// NACKs name packets). FECParity is the number of parity symbols the
	// sender can make per block (default FECBlock; FECBlock+FECParity at
	// most 256).
	FECBlock, FECParity int
	// Progress, if set, is called from the event loop at most every
	// ProgressEvery (default 200 ms).
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Progress is a snapshot for progress displays.
type Progress struct {
	AppBytesSent    uint64
	AppBytesAcked   uint64
	Packets         uint64
	Retransmissions uint64
	RatePPS         float64
	Elapsed         time.Duration
}

// ReceiverCompletion is one receiver's outcome.
type ReceiverCompletion struct {
	ID uint16 `json:"id"`
	// Complete: it acknowledged every packet addressed to it.
	Complete bool `json:"complete"`
	// Failed: it made no progress for the give-up time, or it said it
	// cannot store the stream (ABORT: AbortReason).
	Failed bool `json:"failed"`
	// AbortReason is the reason of its ABORT (headers.AbortReason's name),
	// empty if it sent none; Error says why it failed in words.
	AbortReason string `json:"abort_reason,omitempty"`
	Error       string `json:"error,omitempty"`
	// Acked is its cumulative ACK (every sequence number below it that was
	// addressed to it arrived); Last the last sequence addressed to it.
	Acked   uint32 `json:"acked"`
	HasAck  bool   `json:"has_ack"`
	Last    uint32 `json:"last_seq"`
	Packets uint64 `json:"packets"`
}

// SenderReport is a reliable session's account.
type SenderReport struct {
	Source  uint16 `json:"source"`
	Session uint16 `json:"session"`
	Epoch   uint32 `json:"epoch"`
	Mode    string `json:"mode"`
	// Packets counts new DATA packets, AppBytes their app data, Messages the
	// messages sent.
	Packets  uint64 `json:"packets"`
	AppBytes uint64 `json:"app_bytes"`
	Messages uint64 `json:"messages"`
	// Retransmissions counts repair datagrams (NACK and RTO); RetransmitCopies
	// the receivers they were addressed to; RepairCounts how they were made.
	Retransmissions uint64 `json:"retransmissions"`
	RepairCounts
	// ParityUnavailable counts block repairs not sent because a packet of
	// the block left the window.
	ParityUnavailable uint64               `json:"parity_unavailable"`
	RetransmitCopies  uint64               `json:"retransmit_copies"`
	FeedbackPackets   uint64               `json:"feedback_packets"`
	ACKs              uint64               `json:"acks"`
	AggregatedACKs    uint64               `json:"aggregated_acks"`
	AmbiguousACKs     uint64               `json:"ambiguous_acks"`
	NACKs             uint64               `json:"nacks"`
	CNPs              uint64               `json:"cnps"`
	BadFeedback       uint64               `json:"bad_feedback"`
	OtherStream       uint64               `json:"other_stream_feedback"`
	StaleFeedback     uint64               `json:"stale_feedback"`
	RateDecreases     uint64               `json:"rate_decreases"`
	Backpressure      uint64               `json:"backpressure"`
	FinalRatePPS      float64              `json:"final_rate_pps"`
	SRTT              time.Duration        `json:"srtt_ns"`
	Elapsed           time.Duration        `json:"elapsed_ns"`
	Complete          bool                 `json:"complete"`
	Receivers         []ReceiverCompletion `json:"receivers"`
	// CreditsWithdrawn counts receivers whose own NACK asked for a packet
	// below the ACK an aggregate had credited them with (docs/feedback.md).
	CreditsWithdrawn uint64 `json:"credits_withdrawn"`
	// ABORTs counts ABORT packets, AmbiguousABORTs the receivers they named
	// that the stream never addressed (ignored).
	ABORTs          uint64 `json:"aborts"`
	AmbiguousABORTs uint64 `json:"ambiguous_aborts"`
}

// Failed lists the receivers that are not complete (those that failed, and
// those still outstanding).
func (r *SenderReport) Failed() []uint16 {
	var ids []uint16
	for _, c := range r.Receivers {
		if !c.Complete {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// ErrGaveUp: every receiver of the stream failed.
var ErrGaveUp = errors.New("reliable sender: every receiver gave up")

type sslot struct {
	seq    uint32
	used   bool
	final  bool
	set    []uint16 // the original receiver set (fixed: shared)
	setBuf []uint16
	mem    []byte // hdrRoom bytes of header room, then the payload
	plen   int    // payload length (payload header, chain, app data)
	app    int    // app data bytes
	first  int64  // first transmission (ns since epoch)
	last   int64  // latest transmission
	retx   uint8
	// pending: a NACK-driven repair is queued; ask marks, by position in
	// set, the receivers it goes to (repair.go).
	pending bool
	ask     []uint64
}

type rstate struct {
	id       uint16
	ack      uint32
	hasAck   bool
	last     uint32
	hasLast  bool
	failed   bool
	progress int64 // when its ACK last rose, or it was first addressed
	packets  uint64
	rtoAt    int64 // last RTO expiry
	rtoN     uint8 // RTO expiries since progress
	abort    headers.AbortReason
}

// ReliableSender is one reliable stream's sender. It is not safe for
// concurrent use: the goroutine that calls its methods runs its event loop.
type ReliableSender struct {
	cfg     SessionConfig
	tr      Transport
	epoch   time.Time
	now     int64
	slots   []sslot
	mask    uint32
	hdrRoom int
	head    uint32 // oldest unfreed sequence number
	next    uint32 // next new sequence number
	rcv     []rstate
	idx     []int32 // receiver ID -> index in rcv, -1
	nAddr   int     // receivers addressed at least once
	nFailed int
	fixed   []uint16
	fb      []byte
	ids     []uint16 // scratch: feedback sets
	targets []uint16 // scratch: retransmission targets
	rtoQ    []rtoItem
	limit   uint32 // packets outstanding at most (the window, less a block with FEC)

	// Repair merging and parity (repair.go, fec.go).
	repQ             []repItem
	repHead, repTail uint32
	fecK, fecP       int
	shardLen, pbLen  int
	fblocks          []fblock
	srcShards        []byte
	shards           [][]byte
	codes            codecs

	// Congestion control and RTT.
	rate       float64
	tokens     float64
	lastFill   int64
	srtt       int64
	rttvar     int64
	rto        int64
	hasRTT     bool
	roundStart int64
	roundSent  uint64 // receiver-packets sent this round
	roundLost  uint64 // receiver-packets NACKed this round
	congested  bool
	lastDecr   int64
	nextRTO    int64
	sincePoll  int
	lastProg   int64
	appAcked   uint64
	rep        SenderReport
}

// NewReliableSender checks cfg and sizes the window.
func NewReliableSender(tr Transport, cfg SessionConfig) (*ReliableSender, error) {
	if tr == nil {
		return nil, fmt.Errorf("reliable sender: no transport")
	}
	if cfg.HopLimit == 0 {
		cfg.HopLimit = headers.DefaultHopLimit
	}
	if cfg.MaxDatagram == 0 {
		cfg.MaxDatagram = 1472
	}
	if cfg.Window == 0 {
		cfg.Window = 1024
	}
	if cfg.MaxSet == 0 {
		cfg.MaxSet = 64
	}
	if cfg.MinRTO == 0 {
		cfg.MinRTO = 30 * time.Millisecond
	}
	if cfg.MaxRTO == 0 {
		cfg.MaxRTO = time.Second
	}
	if cfg.GiveUp == 0 {
		cfg.GiveUp = 10 * time.Second
	}
	if cfg.ProgressEvery == 0 {
		cfg.ProgressEvery = 200 * time.Millisecond
	}
	if cfg.RepairWindow == 0 {
		cfg.RepairWindow = 20 * time.Millisecond
	}
	if cfg.FECBlock == 0 && !cfg.Chain {
		cfg.FECBlock = min(32, cfg.Window/4)
	}
	if cfg.FECBlock > 0 && cfg.FECParity == 0 {
		cfg.FECParity = min(cfg.FECBlock, maxShards-cfg.FECBlock)
	}
	if err := cfg.CC.defaults(); err != nil {
		return nil, fmt.Errorf("reliable sender: %w", err)
	}
	switch {
	case cfg.Window < 2 || cfg.Window > 1<<16 || cfg.Window&(cfg.Window-1) != 0:
		return nil, fmt.Errorf("reliable sender: window %d: want a power of two, 2-65536", cfg.Window)
	case cfg.MaxSet < 1 || cfg.MaxSet > headers.MaxID+1:
		return nil, fmt.Errorf("reliable sender: max set %d: want 1-%d", cfg.MaxSet, headers.MaxID+1)
	case cfg.MaxDatagram > MaxDatagram:
		return nil, fmt.Errorf("reliable sender: max datagram %d: at most %d", cfg.MaxDatagram, MaxDatagram)
	case cfg.MinRTO <= 0 || cfg.MaxRTO < cfg.MinRTO || cfg.GiveUp <= 0:
		return nil, fmt.Errorf("reliable sender: RTO %v-%v, give-up %v: want 0 < min <= max and give-up > 0", cfg.MinRTO, cfg.MaxRTO, cfg.GiveUp)
	case !slices.IsSorted(cfg.Receivers) || len(slices.Compact(slices.Clone(cfg.Receivers))) != len(cfg.Receivers):
		return nil, fmt.Errorf("reliable sender: receivers must be strictly ascending")
	case !cfg.Chain && len(cfg.Receivers) == 0:
		return nil, fmt.Errorf("reliable sender: no receivers (fixed mode needs the set, also with a group)")
	case cfg.Chain && cfg.UseGroup:
		return nil, fmt.Errorf("reliable sender: a group addresses every packet to its members: not chain mode")
	case cfg.FECBlock > 0 && (cfg.Chain || cfg.FECBlock > 255 || cfg.FECBlock > cfg.Window/4 ||
		cfg.FECParity < 1 || cfg.FECBlock+cfg.FECParity > maxShards):
		return nil, fmt.Errorf("reliable sender: parity blocks of %d packets with %d parity symbols: want fixed mode, 1-255 packets (at most a quarter of the window %d), 1 or more parity symbols, 256 symbols in all",
			cfg.FECBlock, cfg.FECParity, cfg.Window)
	}
	if cfg.Epoch == 0 {
		e, err := randomEpoch()
		if err != nil {
			return nil, fmt.Errorf("reliable sender: %w", err)
		}
		cfg.Epoch = e
	}
	hdr := dataFixedLen + headers.GroupEntryLen
	if cfg.Chain {
		// The largest set the header may have to carry.
		hdr = max(hdr, dataFixedLen+min(cfg.MaxSet*headers.ListEntryLen, maxSetLen))
	} else {
		hdr = max(hdr, headers.HeaderLenForEpoch(headers.TypeData, cfg.Receivers))
	}
	minData := hdr + PayloadHeaderLen + 1
	if cfg.FECBlock > 0 {
		minData += ShardHeaderLen
	}
	if cfg.Chain {
		minData = dataFixedLen + headers.ListEntryLen + PayloadHeaderLen + ChainEntryLen + 1
	}
	if cfg.MaxDatagram < minData {
		return nil, fmt.Errorf("reliable sender: max datagram %d leaves no room for data after a %d-byte header", cfg.MaxDatagram, minData-1)
	}
	s := &ReliableSender{
		cfg: cfg, tr: tr, epoch: time.Now(),
		slots: make([]sslot, cfg.Window), mask: uint32(cfg.Window - 1),
		hdrRoom: hdr, head: cfg.FirstSeq, next: cfg.FirstSeq,
		idx: make([]int32, headers.MaxID+1), fixed: cfg.Receivers,
		fb: make([]byte, 65536), ids: make([]uint16, 0, 1024), targets: make([]uint16, 0, 1024),
		rtoQ: make([]rtoItem, 0, 2*len(cfg.Receivers)+16),
		rate: cfg.CC.InitialRate, tokens: float64(cfg.CC.Burst),
		limit: uint32(cfg.Window),
	}
	if cfg.FECBlock > 0 {
		// A block's packets stay in their slots until it is repaired: no
		// slot is reused while a block before it may still be asked for.
		s.fecK, s.fecP = cfg.FECBlock, cfg.FECParity
		s.limit -= uint32(cfg.FECBlock)
	}
	// In chain mode a slot's payload is bounded by the datagram; the header
	// room covers the worst set, so retransmissions always fit.
	mem := make([]byte, cfg.Window*(hdr+cfg.MaxDatagram))
	for i := range s.slots {
		s.slots[i].mem = mem[i*(hdr+cfg.MaxDatagram) : (i+1)*(hdr+cfg.MaxDatagram)]
	}
	for i := range s.idx {
		s.idx[i] = -1
	}
	for _, id := range cfg.Receivers {
		s.register(id)
	}
	s.initRepair()
	s.rep.Source, s.rep.Session, s.rep.Epoch = cfg.SourceID, cfg.SessionID, cfg.Epoch
	s.rep.Mode = "fixed"
	if cfg.Chain {
		s.rep.Mode = "chain"
	} else if cfg.UseGroup {
		s.rep.Mode = "group"
	}
	s.rto = int64(cfg.MinRTO)
	return s, nil
}

func (s *ReliableSender) register(id uint16) *rstate {
	if i := s.idx[id]; i >= 0 {
		return &s.rcv[i]
	}
	s.idx[id] = int32(len(s.rcv))
	s.rcv = append(s.rcv, rstate{id: id})
	return &s.rcv[len(s.rcv)-1]
}

func (s *ReliableSender) clock() int64 {
	s.now = int64(time.Since(s.epoch))
	return s.now
}

// MaxAppData is the most app data one packet to set can carry.
func (s *ReliableSender) MaxAppData(setLen int) int {
	if s.cfg.Chain {
		return s.cfg.MaxDatagram - s.hdrLenFixedWorst(setLen) - PayloadHeaderLen - setLen*ChainEntryLen
	}
	if s.fecK > 0 {
		// Room for a parity shard's length and flags (fec.go).
		return s.cfg.MaxDatagram - s.hdrRoom - PayloadHeaderLen - ShardHeaderLen
	}
	return s.cfg.MaxDatagram - s.hdrRoom - PayloadHeaderLen
}

// hdrLenFixedWorst bounds the SMH of a chain-mode packet to setLen receivers
// (ID list, the larger encoding for sparse sets).
func (s *ReliableSender) hdrLenFixedWorst(setLen int) int {
	return dataFixedLen + min(setLen*headers.ListEntryLen, maxSetLen)
}

// SendMessage sends data as one message to set (nil: the stream's set; in
// chain mode a strictly ascending set is required).
func (s *ReliableSender) SendMessage(ctx context.Context, set []uint16, data []byte) error {
	set, err := s.checkSet(set)
	if err != nil {
		return err
	}
	capacity := s.MaxAppData(len(set))
	for off := 0; ; {
		sl, err := s.reserve(ctx)
		if err != nil {
			return err
		}
		buf := s.fill(sl, set)
		n := copy(buf[:min(capacity, len(buf))], data[off:])
		off += n
		if err := s.commit(sl, n, off == len(data)); err != nil {
			return err
		}
		if off == len(data) {
			s.rep.Messages++
			return nil
		}
	}
}

// SendMessageFrom sends the next size bytes of r as one message to set.
func (s *ReliableSender) SendMessageFrom(ctx context.Context, set []uint16, r io.Reader, size int64) error {
	set, err := s.checkSet(set)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("reliable sender: negative message size %d", size)
	}
	capacity := s.MaxAppData(len(set))
	left := size
	for {
		sl, err := s.reserve(ctx)
		if err != nil {
			return err
		}
		buf := s.fill(sl, set)
		n := int(min(int64(capacity), int64(len(buf)), left))
		if n > 0 {
			if _, err := io.ReadFull(r, buf[:n]); err != nil {
				sl.used = false
				return fmt.Errorf("reliable sender: reading the message: %w", err)
			}
		}
		left -= int64(n)
		if err := s.commit(sl, n, left == 0); err != nil {
			return err
		}
		if left == 0 {
			s.rep.Messages++
			return nil
		}
	}
}

func (s *ReliableSender) checkSet(set []uint16) ([]uint16, error) {
	if set == nil {
		if s.cfg.Chain {
			return nil, fmt.Errorf("reliable sender: chain mode needs a receiver set per message")
		}
		return s.fixed, nil
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("reliable sender: empty receiver set")
	}
	if s.cfg.Chain && len(set) > s.cfg.MaxSet {
		return nil, fmt.Errorf("reliable sender: set of %d receivers above the configured max set %d", len(set), s.cfg.MaxSet)
	}
	for i := 1; i < len(set); i++ {
		if set[i] <= set[i-1] {
			return nil, fmt.Errorf("reliable sender: receiver set not strictly ascending")
		}
	}
	if !s.cfg.Chain && !slices.Equal(set, s.fixed) {
		return nil, fmt.Errorf("reliable sender: fixed mode sends every message to the stream's set; use chain mode for per-message sets")
	}
	if s.cfg.Chain && s.MaxAppData(len(set)) < 1 {
		return nil, fmt.Errorf("reliable sender: a set of %d receivers leaves no room for data in %d bytes", len(set), s.cfg.MaxDatagram)
	}
	return set, nil
}

// windowOpen says whether the window lets s.next out. With parity, a block
// is started only when the window has room for all of it, so that a sender
// the window stops always stops at a block's end: a receiver that saw a
// stream stop inside a block NACKs that block's losses by name (it cannot
// tell a pause from an end), and a window-limited sender on the 64-receiver
// veth lab left a block open at every pause, 7,000 losses asked for by
// name in a run against 1,300 otherwise.
func (s *ReliableSender) windowOpen() bool {
	if s.fecK > 0 {
		k := uint32(s.fecK)
		if (s.next-s.cfg.FirstSeq)%k != 0 {
			return true // inside a block: its start made room for it
		}
		return s.next-s.head+k <= s.limit
	}
	return s.next-s.head < s.limit
}

// reserve runs the event loop until the window has a free slot and the rate
// limiter lets a packet out, and returns the slot for s.next.
func (s *ReliableSender) reserve(ctx context.Context) (*sslot, error) {
	for {
		if s.sincePoll >= 16 || s.tokens < 1 || !s.windowOpen() {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			s.poll()
			s.sincePoll = 0
			if s.nAddr > 0 && s.nFailed == s.nAddr {
				return nil, ErrGaveUp
			}
		}
		if s.windowOpen() && s.tokens >= 1 {
			s.sincePoll++
			sl := &s.slots[s.next&s.mask]
			return sl, nil
		}
		// Wait for feedback until a token is due (or a timer tick).
		wait := int64(2 * time.Millisecond)
		if s.tokens < 1 {
			wait = min(wait, int64((1-s.tokens)/s.rate*1e9))
		}
		s.waitFeedback(s.repairWait(wait))
	}
}

// fill prepares slot sl for sequence s.next to set and returns the buffer
// for its app data.
func (s *ReliableSender) fill(sl *sslot, set []uint16) []byte {
	seq := s.next
	sl.seq, sl.used, sl.retx = seq, true, 0
	if sl.pending {
		// A repair queued for the slot's previous packet: it is gone.
		sl.pending = false
		clear(sl.ask)
	}
	p := sl.mem[s.hdrRoom:]
	if s.cfg.Chain {
		sl.setBuf = append(sl.setBuf[:0], set...)
		sl.set = sl.setBuf
		putPayloadHeader(p, ModeChain, len(set), 0)
		for i, id := range set {
			r := s.register(id)
			prev := seq
			if r.hasLast {
				prev = r.last
			}
			putChainEntry(p, i, id, prev)
		}
		sl.plen = PayloadHeaderLen + len(set)*ChainEntryLen
	} else {
		sl.set = s.fixed
		putPayloadHeader(p, ModeFixed, 0, s.cfg.FirstSeq)
		p[1] = byte(s.fecK) // the parity block length (fec.go)
		sl.plen = PayloadHeaderLen
	}
	return p[sl.plen : sl.plen+s.MaxAppData(len(set))]
}

// commit sends the slot's first transmission.
func (s *ReliableSender) commit(sl *sslot, n int, final bool) error {
	sl.plen += n
	sl.app = n
	sl.final = final
	sl.first, sl.last = s.now, s.now
	for _, id := range sl.set {
		r := &s.rcv[s.idx[id]]
		if !r.hasLast {
			r.hasLast = true
			r.progress = s.now
			s.nAddr++
		}
		r.last = sl.seq
		r.packets++
	}
	s.next++
	s.tokens--
	s.rep.Packets++
	s.rep.AppBytes += uint64(n)
	s.roundSent += uint64(len(sl.set))
	var err error
	if s.cfg.UseGroup {
		err = s.transmit(sl, nil, false)
	} else {
		err = s.transmit(sl, sl.set, false)
	}
	if err == ErrBackpressure {
		// The host queue is full: the packet stays in the window and the
		// retransmission timer sends it.
		return nil
	}
	return err
}

// transmit builds the SMH for ids (nil: the group) in front of the slot's
// payload and sends the datagram.
func (s *ReliableSender) transmit(sl *sslot, ids []uint16, retx bool) error {
	var flags headers.Flags
	if s.cfg.Chain {
		flags |= headers.FlagSparse // a set per packet: docs/smh.md
	}
	if sl.final {
		flags |= headers.FlagFinal
	}
	if retx {
		flags |= headers.FlagRetransmit
	}
	return s.transmitBuf(sl.mem, sl.plen, sl.seq, flags, ids)
}

// transmitBuf builds the SMH for ids (nil: the group) in the header room of
// mem, in front of its plen-byte payload, and sends the datagram.
func (s *ReliableSender) transmitBuf(mem []byte, plen int, seq uint32, flags headers.Flags, ids []uint16) error {
	f := headers.Fields{
		Type: headers.TypeData, Flags: flags, HopLimit: s.cfg.HopLimit,
		SourceID: s.cfg.SourceID, SessionID: s.cfg.SessionID, Sequence: seq, Epoch: s.cfg.Epoch,
	}
	var hl int
	if ids == nil {
		hl = dataFixedLen + headers.GroupEntryLen
		if headers.PutGroupHeader(mem[s.hdrRoom-hl:], f, s.cfg.Group) != hl {
			return fmt.Errorf("reliable sender: group header does not fit")
		}
	} else {
		hl = headers.HeaderLenForEpoch(headers.TypeData, ids)
		if hl > s.hdrRoom || headers.PutHeader(mem[s.hdrRoom-hl:], f, ids) != hl {
			return fmt.Errorf("reliable sender: header for %d receivers does not fit (or set not ascending)", len(ids))
		}
	}
	err := s.tr.Send(mem[s.hdrRoom-hl : s.hdrRoom+plen])
	if err == ErrBackpressure {
		s.rep.Backpressure++
	}
	return err
}

// retransmit resends sl to targets with R.
func (s *ReliableSender) retransmit(sl *sslot, targets []uint16) {
	if len(targets) == 0 {
		return
	}
	if err := s.transmit(sl, targets, true); err != nil {
		return
	}
	sl.last = s.now
	if sl.retx < 255 {
		sl.retx++
	}
	s.rep.Retransmissions++
	s.rep.RetransmitCopies += uint64(len(targets))
	s.roundSent += uint64(len(targets))
}

// unacked appends the receivers of sl that have not acknowledged it and have
// not failed, restricted to the ascending list only (nil: no restriction).
func (s *ReliableSender) unacked(dst []uint16, sl *sslot, only []uint16) []uint16 {
	s.eachUnacked(sl, only, func(_ int, id uint16) { dst = append(dst, id) })
	return dst
}

// eachUnacked calls fn with the position in sl.set and the ID of every
// receiver of sl that has not acknowledged it and has not failed,
// restricted to the ascending list only (nil: no restriction).
func (s *ReliableSender) eachUnacked(sl *sslot, only []uint16, fn func(i int, id uint16)) {
	j := 0
	for i, id := range sl.set {
		if only != nil {
			for j < len(only) && only[j] < id {
				j++
			}
			if j == len(only) {
				return
			}
			if only[j] != id {
				continue
			}
		}
		r := &s.rcv[s.idx[id]]
		if r.failed || (r.hasAck && seqLess(sl.seq, r.ack)) {
			continue
		}
		fn(i, id)
	}
}

// poll reads the feedback that has arrived, runs the timers and refills the
// rate limiter. One clock read.
func (s *ReliableSender) poll() {
	now := s.clock()
	for i := 0; i < 256; i++ {
		n, err := s.tr.Recv(s.fb, time.Time{})
		if err != nil {
			break
		}
		s.handle(s.fb[:n])
	}
	s.timers(now)
}

// waitFeedback waits up to d for feedback, handles what came, and polls.
func (s *ReliableSender) waitFeedback(d int64) {
	if d > 0 {
		n, err := s.tr.Recv(s.fb, time.Now().Add(time.Duration(d)))
		if err == nil {
			s.clock()
			s.handle(s.fb[:n])
		}
	}
	s.poll()
}

func (s *ReliableSender) timers(now int64) {
	if s.lastFill == 0 {
		s.lastFill, s.roundStart = now, now
	}
	s.tokens = min(s.tokens+s.rate*float64(now-s.lastFill)/1e9, float64(s.cfg.CC.Burst))
	s.lastFill = now
	// One congestion-control round per round trip (at least 1 ms); the
	// loss test looks at rounds of at least 20 ms and 256 receiver-packets,
	// so that one NACK does not make a round congested.
	round := max(s.srtt, int64(time.Millisecond))
	if now-s.roundStart >= round && (s.congested || s.roundSent >= 256 || now-s.roundStart >= int64(20*time.Millisecond)) {
		if !s.cfg.CC.Fixed {
			if s.roundSent > 0 && float64(s.roundLost) > s.cfg.CC.LossThreshold*float64(s.roundSent) {
				s.congested = true
			}
			if s.congested {
				s.decrease(now)
			} else if s.roundSent > 0 {
				s.rate = min(s.rate+s.cfg.CC.Increase, s.cfg.CC.MaxRate)
			}
		}
		s.congested = false
		s.roundStart, s.roundSent, s.roundLost = now, 0, 0
	}
	if now >= s.nextRTO {
		s.nextRTO = now + max(s.rto/4, int64(time.Millisecond))
		s.rtoScan(now)
		s.giveUpScan(now)
	}
	s.flushRepairs(now)
	if s.cfg.Progress != nil && now-s.lastProg >= int64(s.cfg.ProgressEvery) {
		s.lastProg = now
		s.cfg.Progress(s.progress())
	}
}

func (s *ReliableSender) progress() Progress {
	return Progress{
		AppBytesSent: s.rep.AppBytes, AppBytesAcked: s.appAcked, Packets: s.rep.Packets,
		Retransmissions: s.rep.Retransmissions, RatePPS: s.rate, Elapsed: time.Duration(s.now),
	}
}

func (s *ReliableSender) decrease(now int64) {
	if s.cfg.CC.Fixed || now-s.lastDecr < max(s.srtt, int64(time.Millisecond)) {
		return
	}
	s.lastDecr = now
	s.rate = max(s.rate*s.cfg.CC.Decrease, s.cfg.CC.MinRate)
	s.rep.RateDecreases++
}

// rtoScan handles tail loss per receiver, as TCP's RTO does per
// connection: a receiver whose cumulative ACK has not moved for an RTO
// (doubled per expiry) is resent the oldest packet addressed to it that it
// has not acknowledged, and the last one (which, in fixed mode, shows it
// every gap in between, so its NACKs repair them). Packets beyond a gap are
// not resent wholesale: the receiver may well hold them already.
func (s *ReliableSender) rtoScan(now int64) {
	s.rtoQ = s.rtoQ[:0]
	for i := range s.rcv {
		r := &s.rcv[i]
		if r.failed || !r.hasLast || (r.hasAck && seqLess(r.last, r.ack)) {
			continue
		}
		wait := min(s.rto<<min(r.rtoN, 5), int64(s.cfg.MaxRTO))
		if now-max(r.progress, r.rtoAt) < wait {
			continue
		}
		r.rtoAt = now
		if r.rtoN < 255 {
			r.rtoN++
		}
		from := s.head
		if r.hasAck && seqLess(from, r.ack) {
			from = r.ack
		}
		// The oldest unacknowledged packet addressed to r.
		for q := from; q != s.next; q++ {
			sl := &s.slots[q&s.mask]
			if sl.used && sl.seq == q && slices.Contains(sl.set, r.id) {
				s.rtoQ = append(s.rtoQ, rtoItem{seq: q, id: r.id})
				break
			}
		}
		if !seqLess(r.last, from) && (len(s.rtoQ) == 0 || s.rtoQ[len(s.rtoQ)-1].seq != r.last || s.rtoQ[len(s.rtoQ)-1].id != r.id) {
			s.rtoQ = append(s.rtoQ, rtoItem{seq: r.last, id: r.id})
		}
	}
	if len(s.rtoQ) == 0 {
		return
	}
	slices.SortFunc(s.rtoQ, func(a, b rtoItem) int {
		if a.seq != b.seq {
			return int(int32(a.seq - b.seq))
		}
		return int(a.id) - int(b.id)
	})
	for i := 0; i < len(s.rtoQ); {
		j := i
		s.targets = s.targets[:0]
		for j < len(s.rtoQ) && s.rtoQ[j].seq == s.rtoQ[i].seq {
			if len(s.targets) == 0 || s.targets[len(s.targets)-1] != s.rtoQ[j].id {
				s.targets = append(s.targets, s.rtoQ[j].id)
			}
			j++
		}
		q := s.rtoQ[i].seq
		if sl := &s.slots[q&s.mask]; sl.used && sl.seq == q {
			s.retransmit(sl, s.targets)
			s.rep.RTORetransmits++
		}
		i = j
	}
}

type rtoItem struct {
	seq uint32
	id  uint16
}

// giveUpScan fails receivers without progress for GiveUp.
func (s *ReliableSender) giveUpScan(now int64) {
	freed := false
	for i := range s.rcv {
		r := &s.rcv[i]
		if r.failed || !r.hasLast || (r.hasAck && seqLess(r.last, r.ack)) {
			continue
		}
		if now-r.progress > int64(s.cfg.GiveUp) {
			r.failed = true
			s.nFailed++
			freed = true
		}
	}
	if freed {
		s.free()
	}
}

// handle processes one feedback datagram.
func (s *ReliableSender) handle(b []byte) {
	h := headers.SMH(b)
	if h.Validate() != nil || !h.Type().IsFeedback() {
		s.rep.BadFeedback++
		return
	}
	s.rep.FeedbackPackets++
	if h.SourceID() != s.cfg.SourceID || h.SessionID() != s.cfg.SessionID {
		s.rep.OtherStream++
		return
	}
	if h.Epoch() != s.cfg.Epoch {
		// About an earlier transfer on this source and session (its
		// sequence numbers are not ours), or from a receiver that does
		// not echo the epoch.
		s.rep.StaleFeedback++
		return
	}
	switch h.Type() {
	case headers.TypeACK:
		s.onACK(h)
	case headers.TypeNACK:
		s.onNACK(h)
	case headers.TypeCNP:
		s.rep.CNPs++
		s.congested = true
		s.decrease(s.now)
	case headers.TypeABORT:
		s.onABORT(h)
	}
}

// onABORT fails the receivers an ABORT names, for its reason: packets only
// they held are freed and nothing is retransmitted to them. Names the
// stream never addressed are counted and skipped, as for ACKs.
func (s *ReliableSender) onABORT(h headers.SMH) {
	s.rep.ABORTs++
	reason := headers.AbortReason(h.FeedbackCount())
	if reason > headers.AbortBadManifest {
		reason = headers.AbortIO // reserved reasons (docs/smh.md 2.3)
	}
	s.ids = h.AppendReceivers(s.ids[:0])
	for _, id := range s.ids {
		i := s.idx[id]
		if i < 0 || !s.rcv[i].hasLast {
			s.rep.AmbiguousABORTs++
			continue
		}
		r := &s.rcv[i]
		if r.abort == 0 {
			r.abort = reason
		}
		if !r.failed {
			r.failed = true
			s.nFailed++
		}
	}
	s.free()
}

func (s *ReliableSender) onACK(h headers.SMH) {
	s.rep.ACKs++
	x := h.Sequence()
	// X may be at most next: nothing at or above next was sent.
	if seqLess(s.next, x) {
		s.rep.BadFeedback++
		return
	}
	s.ids = h.AppendReceivers(s.ids[:0])
	if len(s.ids) == 0 {
		if rid := s.idx[h.ReporterID()]; rid >= 0 {
			s.raise(&s.rcv[rid], x)
			s.free()
		} else {
			s.rep.AmbiguousACKs++
		}
		return
	}
	s.rep.AggregatedACKs++
	for _, id := range s.ids {
		i := s.idx[id]
		if i < 0 || !s.rcv[i].hasLast {
			s.rep.AmbiguousACKs++
			continue
		}
		s.raise(&s.rcv[i], x)
	}
	s.free()
}

// raise moves r's cumulative ACK to x and samples the round trip.
func (s *ReliableSender) raise(r *rstate, x uint32) {
	if r.hasAck && !seqLess(r.ack, x) {
		return
	}
	r.ack, r.hasAck, r.progress, r.rtoN = x, true, s.now, 0
	if r.failed && r.abort == 0 {
		// It was given up on, but it was only slow.
		r.failed = false
		s.nFailed--
	}
	sl := &s.slots[(x-1)&s.mask]
	if sl.seq == x-1 && sl.retx == 0 && sl.first > 0 {
		s.sampleRTT(s.now - sl.first)
	}
}

// sampleRTT is RFC 6298's estimator.
func (s *ReliableSender) sampleRTT(m int64) {
	if m <= 0 {
		return
	}
	if !s.hasRTT {
		s.srtt, s.rttvar, s.hasRTT = m, m/2, true
	} else {
		d := s.srtt - m
		if d < 0 {
			d = -d
		}
		s.rttvar = (3*s.rttvar + d) / 4
		s.srtt = (7*s.srtt + m) / 8
	}
	s.rto = min(max(s.srtt+4*s.rttvar, int64(s.cfg.MinRTO)), int64(s.cfg.MaxRTO))
}

// free releases the packets every receiver of their set acknowledged.
func (s *ReliableSender) free() {
	for s.head != s.next {
		sl := &s.slots[s.head&s.mask]
		if sl.used && sl.seq == s.head {
			for _, id := range sl.set {
				r := &s.rcv[s.idx[id]]
				if !r.failed && !(r.hasAck && seqLess(sl.seq, r.ack)) {
					return
				}
			}
			sl.used = false
			s.appAcked += uint64(sl.app)
		}
		s.head++
	}
}

func (s *ReliableSender) onNACK(h headers.SMH) {
	s.rep.NACKs++
	start, count := h.Sequence(), uint32(h.FeedbackCount())
	s.ids = h.AppendReceivers(s.ids[:0])
	if !slices.IsSorted(s.ids) {
		s.rep.BadFeedback++
		return
	}
	only := s.ids
	if len(only) == 0 {
		only = nil
	}
	if h.Flags()&headers.FlagParity != 0 {
		// A stale block NACK (answered by parity on its way) repeats a
		// loss already counted: it is no congestion signal.
		if s.onBlockNACK(start, count, only) {
			s.roundLost += uint64(count) * uint64(h.SpeaksFor())
		}
		return
	}
	s.roundLost += uint64(count) * uint64(h.SpeaksFor())
	// A receiver that asks by name for a packet below what it was credited
	// with does not have it: the credit came from an aggregate that spoke
	// wrongly for it. Its own word wins, and the packet, if still kept, is
	// repaired; if it was freed, the receiver can no longer complete and is
	// reported failed at its give-up, never complete.
	for _, id := range s.ids {
		if i := s.idx[id]; i >= 0 {
			if r := &s.rcv[i]; r.hasAck && !r.failed && seqLess(start, r.ack) {
				r.ack = start
				s.rep.CreditsWithdrawn++
			}
		}
	}
	count = min(count, uint32(len(s.slots)))
	merge := s.cfg.RepairWindow > 0
	for i := uint32(0); i < count; i++ {
		q := start + i
		if seqLess(q, s.head) || !seqLess(q, s.next) {
			continue
		}
		sl := &s.slots[q&s.mask]
		if !sl.used || sl.seq != q {
			continue
		}
		if merge {
			s.askRepair(sl, only)
			continue
		}
		s.targets = s.unacked(s.targets[:0], sl, only)
		if len(s.targets) > 0 {
			s.retransmit(sl, s.targets)
			s.rep.NACKRetransmits++
		}
	}
}

// Flush runs the event loop until every packet is acknowledged by every
// receiver of its set (or those receivers failed), or ctx ends, and returns
// the report.
func (s *ReliableSender) Flush(ctx context.Context) (*SenderReport, error) {
	for s.head != s.next {
		if err := ctx.Err(); err != nil {
			return s.Report(), err
		}
		s.waitFeedback(s.repairWait(int64(2 * time.Millisecond)))
	}
	return s.Report(), nil
}

// Report returns the session's account so far.
func (s *ReliableSender) Report() *SenderReport {
	s.clock()
	rep := s.rep
	rep.Elapsed = time.Duration(s.now)
	rep.FinalRatePPS = s.rate
	rep.SRTT = time.Duration(s.srtt)
	rep.Receivers = make([]ReceiverCompletion, 0, len(s.rcv))
	rep.Complete = true
	for _, r := range s.rcv {
		c := ReceiverCompletion{ID: r.id, Failed: r.failed, Acked: r.ack, HasAck: r.hasAck, Last: r.last, Packets: r.packets}
		c.Complete = r.abort == 0 && (!r.hasLast || (r.hasAck && seqLess(r.last, r.ack)))
		switch {
		case r.abort != 0:
			c.AbortReason, c.Error = r.abort.String(), r.abort.Message()
		case r.failed:
			c.Error = fmt.Sprintf("no acknowledgement progress for %v", s.cfg.GiveUp)
		}
		if !c.Complete {
			rep.Complete = false
		}
		rep.Receivers = append(rep.Receivers, c)
	}
	slices.SortFunc(rep.Receivers, func(a, b ReceiverCompletion) int { return int(a.ID) - int(b.ID) })
	return &rep
}

// Outstanding is the number of packets not yet freed.
func (s *ReliableSender) Outstanding() int { return int(s.next - s.head) }
