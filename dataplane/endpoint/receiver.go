package endpoint

// The receive path, in order:
//
//  1. NewReceiver binds the SMH UDP port (dual-stack unless an address is
//     given) with a large socket buffer.
//  2. Run reads datagrams into one buffer. Each is validated with
//     headers.SMH.Validate, checked against the payload's copy of the
//     sequence number, and its set against the receiver's own ID; then its
//     sequence number goes into the stream's bitmap, which tells duplicates
//     apart. Nothing is allocated per packet, except the first packet of a
//     new stream and of every new 65,536-number page.
//  3. Run stops on a packet count, a duration, an idle timeout after the
//     first packet, or ctx; every 50 ms a read deadline lets it look.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/headers"
)

// SetCheck is what a Receiver demands of the receiver set in each packet.
type SetCheck int

const (
	// SetExact: the set is exactly the receiver's own ID, as a switch leaves
	// it on the port towards a host (docs/smh.md section 4, step 5).
	SetExact SetCheck = iota
	// SetMember: the set contains the receiver's ID (no switch in between).
	SetMember
	// SetNone: the set is not checked.
	SetNone
)

// ParseSetCheck parses "exact", "member" or "none".
func ParseSetCheck(s string) (SetCheck, error) {
	switch s {
	case "exact":
		return SetExact, nil
	case "member":
		return SetMember, nil
	case "none":
		return SetNone, nil
	}
	return 0, fmt.Errorf("set check %q: want exact, member or none", s)
}

func (c SetCheck) String() string {
	switch c {
	case SetExact:
		return "exact"
	case SetMember:
		return "member"
	case SetNone:
		return "none"
	}
	return "unknown"
}

// Malformed reasons, one counter each.
const (
	MalTruncated = iota
	MalBadVersion
	MalBadType
	MalBadEncoding
	MalBadSet
	MalBadFeedback
	MalShortPayload
	MalPayloadMismatch
	numMalformed
)

// MalformedReasons names the malformed counters (as in the switch's drop
// reasons where they coincide).
var MalformedReasons = [numMalformed]string{
	"truncated", "bad_version", "bad_type", "bad_encoding", "bad_set",
	"bad_feedback", "short_payload", "payload_mismatch",
}

func malformedReason(err error) int {
	switch err {
	case headers.ErrTruncated:
		return MalTruncated
	case headers.ErrBadVersion:
		return MalBadVersion
	case headers.ErrBadType:
		return MalBadType
	case headers.ErrBadEncoding:
		return MalBadEncoding
	case headers.ErrBadSet:
		return MalBadSet
	}
	return MalBadFeedback
}

// ReceiverConfig configures a Receiver.
type ReceiverConfig struct {
	// Listen is the address to bind: ":9471" (the default, all addresses,
	// IPv4 and IPv6), "IP", "IP:port".
	Listen string
	// ID is this receiver's ID.
	ID uint16
	// SetCheck is what each packet's receiver set must satisfy.
	SetCheck SetCheck
	// Count stops Run after this many DATA packets (0: no limit).
	Count uint64
	// Duration stops Run after this long (0: no limit).
	Duration time.Duration
	// IdleTimeout stops Run when no packet arrived for this long, counted
	// from the first packet (0: never).
	IdleTimeout time.Duration
	// ReadBuffer is the socket receive buffer in bytes (0: 8 MiB).
	ReadBuffer int
}

// Latency is one-way delay from the payload's send time; meaningful when
// sender and receiver share a clock (one machine, namespaces).
type Latency struct {
	Min time.Duration `json:"min_ns"`
	Avg time.Duration `json:"avg_ns"`
	Max time.Duration `json:"max_ns"`
}

// StreamReport is what a receiver saw of one (source, session) stream.
type StreamReport struct {
	Source  uint16 `json:"source"`
	Session uint16 `json:"session"`
	// Received counts valid DATA packets, Unique the distinct sequence
	// numbers among them, Duplicates the rest.
	Received   uint64 `json:"received"`
	Unique     uint64 `json:"unique"`
	Duplicates uint64 `json:"duplicates"`
	// OutOfOrder counts new sequence numbers below the highest seen so far.
	OutOfOrder uint64 `json:"out_of_order"`
	// Missing counts the numbers between Lowest and Highest that did not
	// arrive. With a subset schedule a receiver is not sent all of them:
	// compare Seqs with the schedule (Schedule.Expected) instead.
	Missing uint64 `json:"missing"`
	// SetViolations counts packets whose set failed the SetCheck.
	SetViolations uint64 `json:"set_violations"`
	// Malformed counts invalid packets whose fixed part named this stream.
	Malformed uint64 `json:"malformed"`
	// Lowest and Highest are in serial-number order from the first packet.
	Lowest  uint32  `json:"lowest_seq"`
	Highest uint32  `json:"highest_seq"`
	Latency Latency `json:"latency"`
	// Seqs is every sequence number received, as ranges "0-17,20,22-40".
	Seqs *SeqSet `json:"seqs"`
}

// Report is a Run's result.
type Report struct {
	ID       uint16 `json:"id"`
	Listen   string `json:"listen"`
	SetCheck string `json:"set_check"`
	// StopReason is count, duration, idle or canceled.
	StopReason string        `json:"stop_reason"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	// Datagrams counts everything read; Data the valid DATA packets;
	// Feedback the valid ACK/NACK/CNP packets (ignored here).
	Datagrams   uint64            `json:"datagrams"`
	Data        uint64            `json:"data"`
	Feedback    uint64            `json:"feedback"`
	Malformed   uint64            `json:"malformed"`
	MalformedBy map[string]uint64 `json:"malformed_by_reason,omitempty"`
	Streams     []StreamReport    `json:"streams"`
	// Drained counts datagrams read after the stop condition (idle,
	// duration, canceled) was met: queued by then, handled like the rest
	// rather than dropped with the socket.
	Drained uint64 `json:"drained"`
}

// Stream returns the report of (source, session), if any packet of it came.
func (r *Report) Stream(source, session uint16) (StreamReport, bool) {
	for _, s := range r.Streams {
		if s.Source == source && s.Session == session {
			return s, true
		}
	}
	return StreamReport{}, false
}

type stream struct {
	rep     StreamReport
	started bool
	latSum  time.Duration
	latN    uint64
}

// Receiver receives SMH DATA packets addressed to one receiver ID.
type Receiver struct {
	cfg     ReceiverConfig
	conn    *net.UDPConn
	buf     []byte
	streams map[uint32]*stream
	lastKey uint32
	last    *stream
	rep     Report
	mal     [numMalformed]uint64
	start   time.Time
}

// NewReceiver checks cfg and binds the socket.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	if cfg.Listen == "" {
		cfg.Listen = fmt.Sprintf(":%d", headers.DefaultUDPPort)
	}
	if cfg.SetCheck < SetExact || cfg.SetCheck > SetNone {
		return nil, fmt.Errorf("receiver: bad set check %d", cfg.SetCheck)
	}
	if cfg.Duration < 0 || cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("receiver: negative duration or idle timeout")
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = 8 << 20
	}
	addr, err := ResolveAddr(cfg.Listen, headers.DefaultUDPPort)
	if err != nil {
		return nil, fmt.Errorf("receiver: listen address: %w", err)
	}
	network := "udp"
	la := &net.UDPAddr{Port: int(addr.Port())}
	if addr.Addr().IsValid() {
		la.IP, la.Zone = addr.Addr().AsSlice(), addr.Addr().Zone()
		network = "udp4"
		if addr.Addr().Is6() {
			network = "udp6"
		}
	}
	conn, err := net.ListenUDP(network, la)
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	setReadBuffer(conn, cfg.ReadBuffer)
	r := &Receiver{
		cfg:     cfg,
		conn:    conn,
		buf:     make([]byte, 65536),
		streams: make(map[uint32]*stream),
	}
	r.rep.ID = cfg.ID
	r.rep.Listen = conn.LocalAddr().String()
	r.rep.SetCheck = cfg.SetCheck.String()
	return r, nil
}

// setReadBuffer asks for n bytes, beyond net.core.rmem_max if privileged.
func setReadBuffer(conn *net.UDPConn, n int) {
	if rc, err := conn.SyscallConn(); err == nil {
		var serr error
		_ = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		})
		if serr == nil {
			return
		}
	}
	_ = conn.SetReadBuffer(n)
}

// LocalAddr is the bound address.
func (r *Receiver) LocalAddr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close closes the socket.
func (r *Receiver) Close() error { return r.conn.Close() }

const tick = 50 * time.Millisecond

// Run receives until a stop condition and returns the report. A socket
// error other than the periodic deadline ends Run with that error.
func (r *Receiver) Run(ctx context.Context) (*Report, error) {
	start := time.Now()
	r.start = start
	r.rep.StopReason = ""
	var lastPacket time.Time
	deadline := start.Add(tick)
	if err := r.conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	for {
		n, err := r.conn.Read(r.buf)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				if errors.Is(err, syscall.ECONNREFUSED) {
					continue
				}
				return r.report(), fmt.Errorf("receiver: %w", err)
			}
			now := time.Now()
			switch {
			case ctx.Err() != nil:
				r.rep.StopReason = "canceled"
			case r.cfg.Duration > 0 && now.Sub(start) >= r.cfg.Duration:
				r.rep.StopReason = "duration"
			case r.cfg.IdleTimeout > 0 && !lastPacket.IsZero() && now.Sub(lastPacket) >= r.cfg.IdleTimeout:
				r.rep.StopReason = "idle"
			}
			if r.rep.StopReason != "" {
				r.drain()
				return r.report(), nil
			}
			deadline = now.Add(tick)
			if err := r.conn.SetReadDeadline(deadline); err != nil {
				return r.report(), err
			}
			continue
		}
		lastPacket = time.Now()
		r.handle(r.buf[:n], lastPacket)
		if r.cfg.Count > 0 && r.rep.Data >= r.cfg.Count {
			r.rep.StopReason = "count"
			return r.report(), nil
		}
	}
}

// drain handles the datagrams that arrived between the last read's timeout
// and the stop (a descheduled receiver may find many): closing the socket
// would drop them without a counter, where datagrams arriving after the
// close count as the host's UDP NoPorts. Report.Drained counts them.
func (r *Receiver) drain() {
	rc, err := r.conn.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		for {
			n, _, err := unix.Recvfrom(int(fd), r.buf, unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return true // EAGAIN: nothing left
			}
			r.rep.Drained++
			r.handle(r.buf[:n], time.Now())
		}
	})
}

func (r *Receiver) stream(source, session uint16) *stream {
	key := uint32(source)<<16 | uint32(session)
	if r.last != nil && r.lastKey == key {
		return r.last
	}
	s := r.streams[key]
	if s == nil {
		s = &stream{rep: StreamReport{Source: source, Session: session, Seqs: &SeqSet{}}}
		r.streams[key] = s
	}
	r.last, r.lastKey = s, key
	return s
}

func (r *Receiver) malformed(reason int, pkt []byte) {
	r.rep.Malformed++
	r.mal[reason]++
	if len(pkt) >= headers.FixedLen {
		h := headers.SMH(pkt)
		r.stream(h.SourceID(), h.SessionID()).rep.Malformed++
	}
}

// handle accounts for one datagram.
func (r *Receiver) handle(pkt []byte, now time.Time) {
	r.rep.Datagrams++
	h := headers.SMH(pkt)
	if err := h.Validate(); err != nil {
		r.malformed(malformedReason(err), pkt)
		return
	}
	if h.Type() != headers.TypeData {
		r.rep.Feedback++
		return
	}
	payload := h.Payload()
	if len(payload) < MinPayload {
		r.malformed(MalShortPayload, pkt)
		return
	}
	seq := h.Sequence()
	if binary.BigEndian.Uint32(payload[offPayloadSeq:]) != seq {
		r.malformed(MalPayloadMismatch, pkt)
		return
	}
	r.rep.Data++
	s := r.stream(h.SourceID(), h.SessionID())
	st := &s.rep
	st.Received++
	if !r.setOK(h) {
		st.SetViolations++
	}
	if !st.Seqs.Add(seq) {
		st.Duplicates++
		return
	}
	st.Unique++
	if !s.started {
		s.started = true
		st.Lowest, st.Highest = seq, seq
	} else if d := int32(seq - st.Highest); d > 0 {
		st.Highest = seq
	} else {
		st.OutOfOrder++
		if int32(seq-st.Lowest) < 0 {
			st.Lowest = seq
		}
	}
	lat := now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(payload[offPayloadTime:]))))
	if s.latN == 0 || lat < st.Latency.Min {
		st.Latency.Min = lat
	}
	if lat > st.Latency.Max {
		st.Latency.Max = lat
	}
	s.latSum += lat
	s.latN++
}

// setOK applies the SetCheck to a validated DATA header.
func (r *Receiver) setOK(h headers.SMH) bool {
	id := r.cfg.ID
	n := int(h.SetCount())
	switch r.cfg.SetCheck {
	case SetNone:
		return true
	case SetExact:
		switch h.Encoding() {
		case headers.EncList:
			return n == 1 && h.ListID(0) == id
		case headers.EncBlocks:
			if n != 1 {
				return false
			}
			b, m := h.Block(0)
			return b == id>>6 && m == 1<<(id&63)
		}
		return false
	}
	// SetMember.
	switch h.Encoding() {
	case headers.EncList:
		for i := 0; i < n; i++ {
			if h.ListID(i) == id {
				return true
			}
		}
	case headers.EncBlocks:
		for i := 0; i < n; i++ {
			if b, m := h.Block(i); b == id>>6 {
				return m&(1<<(id&63)) != 0
			}
		}
	}
	return false
}

// report finishes and returns the report.
func (r *Receiver) report() *Report {
	rep := r.rep
	rep.Elapsed = time.Since(r.start)
	rep.Streams = make([]StreamReport, 0, len(r.streams))
	for _, s := range r.streams {
		st := s.rep
		if s.latN > 0 {
			st.Latency.Avg = s.latSum / time.Duration(s.latN)
		}
		if s.started {
			st.Missing = uint64(st.Highest-st.Lowest) + 1 - st.Unique
		}
		rep.Streams = append(rep.Streams, st)
	}
	slices.SortFunc(rep.Streams, func(a, b StreamReport) int {
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
			rep.MalformedBy[MalformedReasons[i]] = c
		}
	}
	return &rep
}
