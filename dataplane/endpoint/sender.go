package endpoint

// The send path, in order:
//
//  1. NewSender resolves the gateway (the switch port's IP and SMH port) and
//     binds a UDP socket whose source port is SourcePort(source, session)
//     unless the caller fixes one.
//  2. Run paces packets at Rate; for each it asks Receivers for the set,
//     writes SMH with headers.PutHeader and the payload (sequence number,
//     send time) into the one buffer the Sender owns, and writes the
//     datagram to the gateway. Nothing is allocated per packet.
//  3. A full socket or device queue (ENOBUFS, EAGAIN) is retried after a short
//     pause, so a fast sender slows down instead of losing packets on the
//     host; other errors end the run.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/headers"
)

// SenderConfig configures a Sender.
type SenderConfig struct {
	// Gateway is where datagrams go: the switch port's IP and SMH UDP port,
	// "10.77.0.1:9471", "[fd00::1]:9471", or a host without port (9471).
	Gateway string
	// Local optionally binds the socket: "IP", "IP:port" or ":port". A zero
	// or missing port becomes SourcePort(SourceID, SessionID).
	Local string
	// SourceID and SessionID name the stream.
	SourceID  uint16
	SessionID uint16
	// HopLimit goes into SMH; 0 means headers.DefaultHopLimit.
	HopLimit uint8
	// PayloadSize is the payload length after SMH, MinPayload-MaxPayload;
	// 0 means MinPayload.
	PayloadSize int
	// Rate is the packet rate in packets per second; 0 sends as fast as the
	// socket takes them.
	Rate float64
	// Receivers returns the receiver set of packet seq, strictly ascending and
	// non-empty. The Sender uses the slice before asking for the next one.
	Receivers func(seq uint32) []uint16
	// FirstSeq is the sequence number of the first packet Run sends.
	FirstSeq uint32
}

// SendStats are a Run's totals.
type SendStats struct {
	Packets uint64        `json:"packets"`
	Bytes   uint64        `json:"bytes"` // UDP payload bytes: SMH + payload
	Retries uint64        `json:"retries"`
	Elapsed time.Duration `json:"-"`
	// FirstSeq and LastSeq are the first and last sequence numbers sent
	// (LastSeq is meaningless when Packets is 0).
	FirstSeq uint32 `json:"first_seq"`
	LastSeq  uint32 `json:"last_seq"`
	// How far a paced Run fell behind its schedule (it was descheduled, or
	// the socket stayed full): LatePackets left more than LagThreshold
	// after their place in the schedule, MaxLagNs is the most any did,
	// SkippedNs the schedule given up after stalls longer than maxLag (the
	// stream paused that long), and Lag the runs of late packets by
	// sequence number (LagEpisode) (the first maxLagEpisodes; LagOmitted counts the
	// late packets of later runs). A receiver's losses in those runs may be the stall's, not
	// the network's: lab tests tell them apart (testbeds/lab/losses.go).
	LatePackets uint64       `json:"late_packets"`
	MaxLagNs    int64        `json:"max_lag_ns"`
	SkippedNs   int64        `json:"skipped_ns"`
	Lag         []LagEpisode `json:"lag,omitempty"`
	LagOmitted  uint64       `json:"lag_omitted,omitempty"`
}

// LagEpisode is a run of packets a paced Run sent more than LagThreshold
// late, with fewer than lagJoin packets on time between any two.
type LagEpisode struct {
	FirstSeq uint32 `json:"first_seq"`
	LastSeq  uint32 `json:"last_seq"`
	MaxLagNs int64  `json:"max_lag_ns"`
}

// LagThreshold: a paced packet sent later than this after its place in the
// schedule is late (SendStats.LatePackets). Ten 5,000 pps intervals: the
// pacing's own jitter (a nanosleep overshooting by tens of µs) stays under it.
const LagThreshold = 2 * time.Millisecond

// maxLagEpisodes bounds SendStats.Lag; late packets at most lagJoin apart
// are one episode (a starved sender is late in bursts, on time between).
const (
	maxLagEpisodes = 128
	lagJoin        = 64
)

// noteLag records that packet seq left lag after its place in the schedule.
// It allocates only when a new episode starts, at most maxLagEpisodes times.
func (s *SendStats) noteLag(seq uint32, lag time.Duration) {
	if lag <= LagThreshold {
		return
	}
	s.LatePackets++
	s.MaxLagNs = max(s.MaxLagNs, int64(lag))
	if n := len(s.Lag); n > 0 && seq-s.Lag[n-1].LastSeq <= lagJoin {
		e := &s.Lag[n-1]
		e.LastSeq, e.MaxLagNs = seq, max(e.MaxLagNs, int64(lag))
		return
	}
	if len(s.Lag) == maxLagEpisodes {
		s.LagOmitted++
		return
	}
	s.Lag = append(s.Lag, LagEpisode{FirstSeq: seq, LastSeq: seq, MaxLagNs: int64(lag)})
}

// PPS is the achieved packet rate.
func (s SendStats) PPS() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Packets) / s.Elapsed.Seconds()
}

// Mbps is the achieved UDP payload rate in megabits per second.
func (s SendStats) Mbps() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Bytes) * 8 / s.Elapsed.Seconds() / 1e6
}

// Sender sends one stream's DATA packets. It is not safe for concurrent use.
type Sender struct {
	cfg     SenderConfig
	conn    *net.UDPConn
	gateway netip.AddrPort
	buf     []byte
	next    uint32
}

// Errors a Run survives by retrying.
func transient(err error) bool {
	return errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN)
}

const (
	maxRetries = 2000
	retryPause = 200 * time.Microsecond
	// maxLag bounds how far pacing catches up after a stall, so a sender that
	// was descheduled does not fire a long burst at the line rate.
	maxLag = 20 * time.Millisecond
	// preciseSleep: pacing waits shorter than this sleep in nanosleep(2)
	// rather than on a Go timer (see Run); a cancelled ctx is noticed
	// after at most this long.
	preciseSleep = 2 * time.Millisecond
)

// NewSender checks cfg, opens the socket and returns a ready Sender.
func NewSender(cfg SenderConfig) (*Sender, error) {
	if cfg.Receivers == nil {
		return nil, fmt.Errorf("sender: no receiver function")
	}
	if cfg.PayloadSize == 0 {
		cfg.PayloadSize = MinPayload
	}
	if cfg.PayloadSize < MinPayload || cfg.PayloadSize > MaxPayload {
		return nil, fmt.Errorf("sender: payload size %d: want %d-%d bytes", cfg.PayloadSize, MinPayload, MaxPayload)
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("sender: rate %v: want >= 0 packets per second (0 = unlimited)", cfg.Rate)
	}
	if cfg.HopLimit == 0 {
		cfg.HopLimit = headers.DefaultHopLimit
	}
	gw, err := ResolveAddr(cfg.Gateway, headers.DefaultUDPPort)
	if err != nil {
		return nil, fmt.Errorf("sender: gateway: %w", err)
	}
	if !gw.Addr().IsValid() || gw.Addr().IsUnspecified() {
		return nil, fmt.Errorf("sender: gateway %q: need an IP address", cfg.Gateway)
	}
	if gw.Port() == 0 {
		return nil, fmt.Errorf("sender: gateway %q: port 0", cfg.Gateway)
	}
	local := netip.AddrPort{}
	if cfg.Local != "" {
		if local, err = ResolveAddr(cfg.Local, 0); err != nil {
			return nil, fmt.Errorf("sender: local address: %w", err)
		}
	}
	port := local.Port()
	if port == 0 {
		port = SourcePort(cfg.SourceID, cfg.SessionID)
	}
	network := "udp4"
	if gw.Addr().Is6() {
		network = "udp6"
	}
	la := &net.UDPAddr{Port: int(port)}
	if local.Addr().IsValid() {
		if local.Addr().Is6() != gw.Addr().Is6() {
			return nil, fmt.Errorf("sender: local address %s and gateway %s are of different IP versions", local.Addr(), gw.Addr())
		}
		la.IP = local.Addr().AsSlice()
		la.Zone = local.Addr().Zone()
	}
	conn, err := net.ListenUDP(network, la)
	if err != nil {
		return nil, fmt.Errorf("sender: bind %s (source port of stream %d/%d): %w", la, cfg.SourceID, cfg.SessionID, err)
	}
	_ = conn.SetWriteBuffer(4 << 20)
	return &Sender{
		cfg:     cfg,
		conn:    conn,
		gateway: gw,
		buf:     make([]byte, headers.FixedLen+maxSetLen+cfg.PayloadSize),
		next:    cfg.FirstSeq,
	}, nil
}

// LocalAddr is the socket's address (its port is the stream's source port).
func (s *Sender) LocalAddr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Gateway is the resolved destination.
func (s *Sender) Gateway() netip.AddrPort { return s.gateway }

// Close closes the socket.
func (s *Sender) Close() error { return s.conn.Close() }

// build writes packet seq into s.buf and returns the datagram.
func (s *Sender) build(seq uint32, now time.Time) ([]byte, error) {
	ids := s.cfg.Receivers(seq)
	if len(ids) == 0 {
		return nil, fmt.Errorf("sender: empty receiver set for sequence %d", seq)
	}
	n := headers.PutHeader(s.buf, headers.Fields{
		Type:      headers.TypeData,
		HopLimit:  s.cfg.HopLimit,
		SourceID:  s.cfg.SourceID,
		SessionID: s.cfg.SessionID,
		Sequence:  seq,
	}, ids)
	if n == 0 {
		return nil, fmt.Errorf("sender: receiver set of sequence %d is not strictly ascending", seq)
	}
	end := n + s.cfg.PayloadSize
	if end > MaxDatagram {
		return nil, fmt.Errorf("sender: sequence %d: %d-byte header and %d-byte payload exceed a UDP datagram", seq, n, s.cfg.PayloadSize)
	}
	p := s.buf[n:end]
	binary.BigEndian.PutUint32(p[offPayloadSeq:], seq)
	binary.BigEndian.PutUint64(p[offPayloadTime:], uint64(now.UnixNano()))
	clear(p[MinPayload:])
	return s.buf[:end], nil
}

// Send sends the next packet now, without pacing (retrying a full queue),
// and returns its sequence number and datagram length.
func (s *Sender) Send() (seq uint32, n int, err error) {
	var st SendStats
	seq = s.next
	n, err = s.send(time.Now(), &st)
	return seq, n, err
}

func (s *Sender) send(now time.Time, st *SendStats) (int, error) {
	seq := s.next
	pkt, err := s.build(seq, now)
	if err != nil {
		return 0, err
	}
	for try := 0; ; try++ {
		_, err = s.conn.WriteToUDPAddrPort(pkt, s.gateway)
		if err == nil {
			break
		}
		if !transient(err) || try >= maxRetries {
			return 0, fmt.Errorf("sender: sequence %d to %s: %w", seq, s.gateway, err)
		}
		st.Retries++
		time.Sleep(retryPause)
	}
	s.next++
	if st.Packets == 0 {
		st.FirstSeq = seq
	}
	st.LastSeq = seq
	st.Packets++
	st.Bytes += uint64(len(pkt))
	return len(pkt), nil
}

// Run sends count packets (count < 0: until ctx ends) at the configured rate
// and returns what it sent. Cancelling ctx ends the run without an error.
func (s *Sender) Run(ctx context.Context, count int) (SendStats, error) {
	var st SendStats
	st.FirstSeq = s.next
	done := ctx.Done()
	var interval float64
	if s.cfg.Rate > 0 {
		interval = float64(time.Second) / s.cfg.Rate
	}
	// One timer for the whole run: no allocation per paced packet.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	start := time.Now()
	base, sent := start, 0
	for i := 0; count < 0 || i < count; i++ {
		select {
		case <-done:
			st.Elapsed = time.Since(start)
			return st, nil
		default:
		}
		now := time.Now()
		if interval > 0 {
			due := base.Add(time.Duration(float64(sent) * interval))
			if d := due.Sub(now); d > 0 && d < preciseSleep {
				// Go's timers wake through epoll_wait, whose timeout is in
				// whole milliseconds: a 200 µs wait took a millisecond or
				// more, and 5,000 pps left in clumps of five to seven
				// every 1-1.5 ms (a rerouted stream's first packet waited
				// for the next clump). nanosleep(2) wakes on time; it
				// blocks this thread only, briefly.
				ts := unix.NsecToTimespec(int64(d))
				_ = unix.Nanosleep(&ts, nil)
				now = time.Now()
			} else if d > 0 {
				timer.Reset(d)
				select {
				case <-done:
					timer.Stop()
					st.Elapsed = time.Since(start)
					return st, nil
				case now = <-timer.C:
				}
			} else {
				st.noteLag(s.next, -d)
				if -d > maxLag {
					// Fell behind (descheduled): forget the debt beyond maxLag.
					st.SkippedNs += int64(-d - maxLag)
					base = now.Add(-maxLag - time.Duration(float64(sent)*interval))
				}
			}
		}
		if _, err := s.send(now, &st); err != nil {
			st.Elapsed = time.Since(start)
			return st, err
		}
		sent++
	}
	st.Elapsed = time.Since(start)
	return st, nil
}
