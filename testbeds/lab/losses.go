package lab

// Losses on an unreliable stream, told apart by cause. In: each receiver's
// received sequence numbers, the drop counters on its path (drops.go) and
// the sender's lag (endpoint.SendStats). Out: a LossReport that says which
// losses a starved process caused and which the code under test did.
//
// A lab runs a dozen switch and host processes on a few shared cores. A
// process starved for a second loses packets that no switch decided to
// drop: a switch's receive ring overflows (the kernel's tp_drops, on the
// switch's /metrics), a switch's pool or transmit queue runs out
// (drops_total queue_full, no_buffer), a veth's peer backlog overflows
// (the veth's tx_dropped), a receiver's socket buffer fills (UDP
// RcvbufErrors in its namespace), or a receiver idle for its timeout exits
// before the stream ends (UDP NoPorts). A switch starved for ten probe
// intervals looks dead to its neighbours: they declare its links down
// (probe_timeout), control routes around them, and until the probes
// recover the fabric drops what it has no route for (no_route: a switch
// paused for 400 ms here cost 0.2-1 s of the stream). Or the sender itself falls behind
// its schedule, and what held it up held the fabric up too: then every
// receiver, on any path, misses the same packets. Those are stall losses:
// counted, reported, never a test failure. What is left is the code's: at
// a receiver whose path the failure changed, reroute losses, which must
// stay within a bound; anywhere else, unexplained losses, which fail.
//
// The drop counters are totals over the stream, not tied to sequence
// numbers, so a counter explains at most its count of losses at each
// receiver behind it (a frame dropped on a shared hop is lost by every
// receiver after it), and only losses the counters do not explain are
// matched against the sender's late runs.

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/sparsecast/sparsecast/dataplane/endpoint"
)

// LossCounts are drops counted where a starved process leaves them, on one
// receiver's path (LossInput) or, in a report, the stall losses put down
// to each.
type LossCounts struct {
	// Ring: frames the kernel dropped on a switch's receive ring
	// (sparsecast_switch_port_kernel_drops_total) on the path's ingress ports.
	Ring uint64 `json:"ring"`
	// SwitchQueue: frames switches on the path dropped for want of a
	// buffer or transmit queue slot (drops_total queue_full, no_buffer).
	SwitchQueue uint64 `json:"switch_queue"`
	// Veth: frames a veth on the path dropped on transmit (its peer's
	// backlog was full; tx_dropped), the sender's included.
	Veth uint64 `json:"veth"`
	// Socket: datagrams the receiver's socket buffer had no room for
	// (UDP RcvbufErrors in its namespace).
	Socket uint64 `json:"socket"`
	// NoPort: datagrams that reached the receiver's host after the receiver
	// had exited (UDP NoPorts): it timed out idle while the stream stalled.
	NoPort uint64 `json:"no_port"`
	// ProbeDown: frames the switches dropped as no_route, hop_limit or
	// ingress_port while probes had declared a healthy link down (its far end was starved for ten probe intervals, and control
	// routed around it): counted only if the stream saw such a link event.
	ProbeDown uint64 `json:"probe_down"`
	// SenderLag (reports only): losses every receiver shared in or near a
	// run of packets the sender sent late.
	SenderLag uint64 `json:"sender_lag"`
}

// Total sums the counts.
func (c LossCounts) Total() uint64 {
	return c.Ring + c.SwitchQueue + c.Veth + c.Socket + c.NoPort + c.ProbeDown + c.SenderLag
}

func (c *LossCounts) add(o LossCounts) {
	c.Ring += o.Ring
	c.SwitchQueue += o.SwitchQueue
	c.Veth += o.Veth
	c.Socket += o.Socket
	c.NoPort += o.NoPort
	c.ProbeDown += o.ProbeDown
	c.SenderLag += o.SenderLag
}

// String lists the non-zero counts ("none" if all are zero).
func (c LossCounts) String() string {
	var parts []string
	for _, p := range []struct {
		name string
		n    uint64
	}{{"ring", c.Ring}, {"switch queue", c.SwitchQueue}, {"veth", c.Veth}, {"socket", c.Socket}, {"no port", c.NoPort}, {"probe down", c.ProbeDown}, {"sender lag", c.SenderLag}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", p.name, p.n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// LossReceiver is one receiver's share of a stream, for AttributeLosses.
type LossReceiver struct {
	ID uint16
	// Affected: the failure changed this receiver's path.
	Affected bool
	// Received holds the sequence numbers it got (nil: none).
	Received *endpoint.SeqSet
	// Counted are the drop counters on its path over the stream.
	Counted LossCounts
}

// LossInput is what AttributeLosses weighs.
type LossInput struct {
	// FirstSeq and LastSeq are the first and last sequence numbers sent
	// (Sent packets in all; 0: none was sent).
	FirstSeq, LastSeq uint32
	Sent              uint64
	Receivers         []LossReceiver
	// Lag are the sender's runs of late packets and RatePPS its schedule's
	// rate: a shared loss within a run's lag (in packets at the rate)
	// before or after it, or LagSlack more, counts as the stall's.
	Lag      []endpoint.LagEpisode
	RatePPS  float64
	LagSlack time.Duration
	// RerouteBound is the most packets one affected receiver may lose to
	// the reroute (losses the stall does not explain).
	RerouteBound uint64
}

// DefaultLagSlack: a shared loss this close to a late run of the sender
// (beyond the run's own lag) counts as the stall's.
const DefaultLagSlack = 50 * time.Millisecond

// ReceiverLoss is one receiver's losses by cause.
type ReceiverLoss struct {
	ID       uint16 `json:"id"`
	Affected bool   `json:"affected"`
	Lost     uint64 `json:"lost"`
	// Counted are the drop counters on its path; Stall the losses put down
	// to each (at most the counts, at most Lost in all).
	Counted     LossCounts `json:"counted"`
	Stall       LossCounts `json:"stall"`
	Reroute     uint64     `json:"reroute"`
	Unexplained uint64     `json:"unexplained"`
}

// LossReport is a stream's losses by cause: StallLost + RerouteLost +
// Unexplained is every loss of every receiver.
type LossReport struct {
	Receivers   []ReceiverLoss `json:"receivers"`
	StallLost   uint64         `json:"stall_lost"`
	StallBy     LossCounts     `json:"stall_by"`
	RerouteLost uint64         `json:"reroute_lost"`
	// RerouteBound is the most one affected receiver may lose to the
	// reroute; Unexplained are losses no stall explains at receivers the
	// failure did not touch, or past the bound at those it did.
	RerouteBound uint64 `json:"reroute_bound"`
	Unexplained  uint64 `json:"unexplained"`
	// The sender's lag over the stream (endpoint.SendStats).
	SenderLatePackets uint64 `json:"sender_late_packets"`
	SenderMaxLagNs    int64  `json:"sender_max_lag_ns"`
	SenderSkippedNs   int64  `json:"sender_skipped_ns"`
	// CountersMissing says why the drop counters could not be read (then
	// they explain nothing).
	CountersMissing string `json:"counters_missing,omitempty"`
	// Counted lists the drop counters that moved during the stream
	// ("ring leaf1:h0=3"; DropCounters.NonZero).
	Counted []string `json:"counted,omitempty"`
	// LinkEvents are the switches' link changes during the stream;
	// ProbeDown says whether probes declared a link down that the test did
	// not fail (a starved switch's sign).
	LinkEvents []string `json:"link_events,omitempty"`
	ProbeDown  bool     `json:"probe_down"`
}

// AttributeLosses sorts every receiver's losses into stall, reroute and
// unexplained ones. At each receiver, losses up to the drop counts on its
// path are the stall's (socket, no port, veth, ring, switch queue, probe
// down, in that order); of the rest, those every receiver shared within a late run of the
// sender, less what the least of the receivers' counts may already have
// explained of them, are the stall's too (with two receivers or more: one receiver's
// losses alone say nothing about a shared cause). What remains is the
// reroute's at an affected receiver, unexplained at any other.
func AttributeLosses(in LossInput) *LossReport {
	rep := &LossReport{RerouteBound: in.RerouteBound}
	missing := make([]map[uint32]bool, len(in.Receivers))
	if in.Sent > 0 {
		for i, r := range in.Receivers {
			missing[i] = map[uint32]bool{}
			for seq := in.FirstSeq; ; seq++ {
				if r.Received == nil || !r.Received.Contains(seq) {
					missing[i][seq] = true
				}
				if seq == in.LastSeq {
					break
				}
			}
		}
	}
	// Losses every receiver shared, near a late run.
	shared := map[uint32]bool{}
	if len(in.Receivers) >= 2 {
		for seq := range missing[0] {
			if !nearLag(seq, in) {
				continue
			}
			all := true
			for _, m := range missing[1:] {
				all = all && m[seq]
			}
			if all {
				shared[seq] = true
			}
		}
	}
	// The shared losses may be the very packets a counter on the shared
	// part of the paths (the sender's veth, the first switch's ring)
	// counted: those explain them once, not twice. Every receiver's count
	// includes the shared part's, so the least count bounds it.
	var sharedCounted uint64
	for i, r := range in.Receivers {
		if c := r.Counted.Total() - r.Counted.SenderLag; i == 0 || c < sharedCounted {
			sharedCounted = c
		}
	}
	for i, r := range in.Receivers {
		rl := ReceiverLoss{ID: r.ID, Affected: r.Affected, Lost: uint64(len(missing[i])), Counted: r.Counted}
		left := rl.Lost
		take := func(n uint64) uint64 {
			n = min(n, left)
			left -= n
			return n
		}
		rl.Stall.Socket = take(r.Counted.Socket)
		rl.Stall.NoPort = take(r.Counted.NoPort)
		rl.Stall.Veth = take(r.Counted.Veth)
		rl.Stall.Ring = take(r.Counted.Ring)
		rl.Stall.SwitchQueue = take(r.Counted.SwitchQueue)
		rl.Stall.ProbeDown = take(r.Counted.ProbeDown)
		var inShared uint64
		for seq := range missing[i] {
			if shared[seq] {
				inShared++
			}
		}
		rl.Stall.SenderLag = take(inShared - min(inShared, sharedCounted))
		if r.Affected {
			rl.Reroute = min(left, in.RerouteBound)
			left -= rl.Reroute
		}
		rl.Unexplained = left
		rep.StallBy.add(rl.Stall)
		rep.RerouteLost += rl.Reroute
		rep.Unexplained += rl.Unexplained
		rep.Receivers = append(rep.Receivers, rl)
	}
	rep.StallLost = rep.StallBy.Total()
	return rep
}

// nearLag: seq is within a late run of the sender, or within that run's
// lag (as packets at the schedule's rate) plus LagSlack of it. A stall of
// a second holds up the packets sent around it, not only the late ones
// (after a stall longer than its catch-up bound the sender keeps to its
// schedule again, but a fabric starved with it is still behind).
func nearLag(seq uint32, in LossInput) bool {
	for _, e := range in.Lag {
		reach := uint64(math.Ceil(in.RatePPS * (time.Duration(e.MaxLagNs) + in.LagSlack).Seconds()))
		lo := uint64(e.FirstSeq) - min(reach, uint64(e.FirstSeq))
		if s := uint64(seq); s >= lo && s <= uint64(e.LastSeq)+reach {
			return true
		}
	}
	return false
}

// Failures says, one line per receiver, what the code under test lost:
// unexplained losses, or reroute losses past the bound. Stall losses are
// never a failure.
func (r *LossReport) Failures() []string {
	var out []string
	for _, rl := range r.Receivers {
		if rl.Unexplained == 0 {
			continue
		}
		what := "lost %d packets no stall explains (of %d lost; stall %s)"
		if rl.Affected {
			what = "lost %d packets past the reroute bound of " + fmt.Sprint(r.RerouteBound) + " (of %d lost; stall %s)"
		}
		out = append(out, fmt.Sprintf("receiver %d: "+what, rl.ID, rl.Unexplained, rl.Lost, rl.Stall))
	}
	return out
}

// Summary is a line for people: every loss by cause, and the sender's lag.
func (r *LossReport) Summary() string {
	var b strings.Builder
	b.WriteString("losses: ")
	for _, rl := range r.Receivers {
		if rl.Affected {
			fmt.Fprintf(&b, "%d to the reroute (bound %d per affected receiver), ", r.RerouteLost, r.RerouteBound)
			break
		}
	}
	fmt.Fprintf(&b, "%d unexplained, %d to stalls (%s)", r.Unexplained, r.StallLost, r.StallBy)
	if r.SenderLatePackets > 0 {
		fmt.Fprintf(&b, "; the sender sent %d packets more than %v late (at most %v, %v of its schedule given up)",
			r.SenderLatePackets, endpoint.LagThreshold, time.Duration(r.SenderMaxLagNs).Round(time.Microsecond),
			time.Duration(r.SenderSkippedNs).Round(time.Microsecond))
	} else {
		b.WriteString("; the sender kept its schedule")
	}
	if len(r.Counted) > 0 {
		fmt.Fprintf(&b, "; counted drops: %s", strings.Join(r.Counted, ", "))
	}
	if len(r.LinkEvents) > 0 {
		fmt.Fprintf(&b, "; link events: %s", strings.Join(r.LinkEvents, ", "))
	}
	if r.CountersMissing != "" {
		fmt.Fprintf(&b, "; no drop counters: %s", r.CountersMissing)
	}
	return b.String()
}
