package lab

import (
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/dataplane/endpoint"
)

// got returns the set of 0..n-1 less the ranges in missing ([lo, hi)).
func got(n uint32, missing ...[2]uint32) *endpoint.SeqSet {
	s := &endpoint.SeqSet{}
	for seq := uint32(0); seq < n; seq++ {
		keep := true
		for _, m := range missing {
			keep = keep && (seq < m[0] || seq >= m[1])
		}
		if keep {
			s.Add(seq)
		}
	}
	return s
}

func input(n uint32, rs ...LossReceiver) LossInput {
	return LossInput{FirstSeq: 0, LastSeq: n - 1, Sent: uint64(n), Receivers: rs, RatePPS: 5000, LagSlack: DefaultLagSlack, RerouteBound: 40}
}

func TestAttributeLosses(t *testing.T) {
	const n = 20000
	tail := [2]uint32{16300, n}
	// The CI run of issue 14: the sender was descheduled for 1.6 s at
	// packet 16,300; every receiver timed out idle and missed the 3,700
	// packets after (they reached the hosts: NoPorts).
	stalled := []endpoint.LagEpisode{{FirstSeq: 16300, LastSeq: 16399, MaxLagNs: int64(1600 * time.Millisecond)}}
	cases := []struct {
		name string
		in   LossInput
		// want: reroute, unexplained, stall losses and failing receivers.
		reroute, unexplained, stall uint64
		fail                        []string
	}{
		{"clean", input(n, LossReceiver{ID: 1, Received: got(n)}, LossReceiver{ID: 2, Received: got(n)}), 0, 0, 0, nil},
		{"counted at the hosts", func() LossInput {
			in := input(n)
			for id := uint16(1); id <= 4; id++ {
				in.Receivers = append(in.Receivers, LossReceiver{ID: id, Affected: id%2 == 1, Received: got(n, tail), Counted: LossCounts{NoPort: 3700}})
			}
			return in
		}(), 0, 0, 4 * 3700, nil},
		{"shared, in the sender's stall", func() LossInput {
			in := input(n)
			in.Lag = stalled
			for id := uint16(1); id <= 4; id++ {
				in.Receivers = append(in.Receivers, LossReceiver{ID: id, Affected: id%2 == 1, Received: got(n, tail)})
			}
			return in
		}(), 0, 0, 4 * 3700, nil},
		// The same losses with the sender on time: something on the
		// shared path (the first switch's new table?) dropped them.
		{"shared, sender on time", func() LossInput {
			in := input(n)
			in.Lag = []endpoint.LagEpisode{{FirstSeq: 2000, LastSeq: 2010, MaxLagNs: int64(3 * time.Millisecond)}}
			for id := uint16(1); id <= 4; id++ {
				in.Receivers = append(in.Receivers, LossReceiver{ID: id, Affected: id%2 == 1, Received: got(n, [2]uint32{10000, 10050})})
			}
			return in
		}(), 2 * 40, 2*10 + 2*50, 0, []string{"receiver 1: lost 10 packets past", "receiver 2: lost 50 packets no stall", "receiver 3: lost 10", "receiver 4: lost 50"}},
		// A reroute that disturbs a receiver the failure did not touch.
		{"shared near a short lag", func() LossInput {
			in := input(n, LossReceiver{ID: 1, Affected: true, Received: got(n, [2]uint32{10000, 10030})},
				LossReceiver{ID: 2, Received: got(n, [2]uint32{10000, 10020})})
			in.Lag = []endpoint.LagEpisode{{FirstSeq: 9990, LastSeq: 10010, MaxLagNs: int64(5 * time.Millisecond)}}
			return in
		}(), 10, 0, 40, nil},
		// The shared losses are the sender's veth drops: counted once,
		// so the affected receiver's other losses are the reroute's.
		{"shared and counted", func() LossInput {
			in := input(n, LossReceiver{ID: 1, Affected: true, Received: got(n, [2]uint32{10000, 10030}), Counted: LossCounts{Veth: 20}},
				LossReceiver{ID: 2, Received: got(n, [2]uint32{10000, 10020}), Counted: LossCounts{Veth: 20}})
			in.Lag = []endpoint.LagEpisode{{FirstSeq: 9990, LastSeq: 10010, MaxLagNs: int64(5 * time.Millisecond)}}
			return in
		}(), 10, 0, 40, nil},
		{"unaffected loses alone, sender on time", input(n, LossReceiver{ID: 1, Affected: true, Received: got(n, [2]uint32{10000, 10030})},
			LossReceiver{ID: 2, Received: got(n, [2]uint32{10000, 10020})}), 30, 20, 0, []string{"receiver 2: lost 20 packets no stall explains (of 20 lost; stall none)"}},
		// A reroute that never reaches one affected receiver.
		{"reroute past the bound", input(n, LossReceiver{ID: 1, Affected: true, Received: got(n, [2]uint32{10000, 10025})},
			LossReceiver{ID: 3, Affected: true, Received: got(n, [2]uint32{10000, n})}, LossReceiver{ID: 2, Received: got(n)}),
			25 + 40, 10000 - 40, 0, []string{"receiver 3: lost 9960 packets past the reroute bound of 40"}},
		{"counted on the path", input(n, LossReceiver{ID: 1, Received: got(n, [2]uint32{500, 510}), Counted: LossCounts{Ring: 4, Veth: 2, Socket: 1}},
			LossReceiver{ID: 2, Received: got(n, [2]uint32{700, 705}), Counted: LossCounts{Ring: 4, SwitchQueue: 9}}),
			0, 3, 7 + 5, []string{"receiver 1: lost 3 packets no stall explains (of 10 lost; stall ring 4, veth 2, socket 1)"}},
		// A switch starved for ten probe intervals: control routed
		// around its links and the first switch had no route (counted
		// only while probes had a healthy link down, PathCounts).
		{"probe down", input(n, LossReceiver{ID: 1, Received: got(n, [2]uint32{5000, 8700}), Counted: LossCounts{ProbeDown: 3700}},
			LossReceiver{ID: 2, Received: got(n, [2]uint32{5000, 8700}), Counted: LossCounts{ProbeDown: 3700}}), 0, 0, 2 * 3700, nil},
		// One receiver's losses alone say nothing about a shared cause.
		{"one receiver in a stall", func() LossInput {
			in := input(n, LossReceiver{ID: 2, Received: got(n, tail)})
			in.Lag = stalled
			return in
		}(), 0, 3700, 0, []string{"receiver 2: lost 3700"}},
		{"nothing sent", LossInput{Receivers: []LossReceiver{{ID: 1}, {ID: 2}}}, 0, 0, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := AttributeLosses(c.in)
			var lost uint64
			for _, r := range rep.Receivers {
				lost += r.Lost
			}
			if rep.RerouteLost != c.reroute || rep.Unexplained != c.unexplained || rep.StallLost != c.stall || lost != rep.RerouteLost+rep.Unexplained+rep.StallLost {
				t.Errorf("reroute %d, unexplained %d, stall %d (%s) of %d; want %d, %d, %d", rep.RerouteLost, rep.Unexplained, rep.StallLost, rep.StallBy, lost, c.reroute, c.unexplained, c.stall)
			}
			fails := rep.Failures()
			if len(fails) != len(c.fail) {
				t.Fatalf("failures %q, want %d like %q", fails, len(c.fail), c.fail)
			}
			for i, f := range fails {
				if !strings.HasPrefix(f, c.fail[i]) {
					t.Errorf("failure %q, want %q...", f, c.fail[i])
				}
			}
			t.Log(rep.Summary())
		})
	}
}

func TestLossSummary(t *testing.T) {
	rep := AttributeLosses(LossInput{FirstSeq: 0, LastSeq: 9, Sent: 10, RerouteBound: 5, Receivers: []LossReceiver{
		{ID: 1, Affected: true, Received: got(10, [2]uint32{3, 5})}, {ID: 2, Received: got(10, [2]uint32{0, 1}), Counted: LossCounts{Ring: 1}}}})
	rep.SenderLatePackets, rep.SenderMaxLagNs, rep.SenderSkippedNs = 7, int64(30*time.Millisecond), int64(10*time.Millisecond)
	want := "losses: 2 to the reroute (bound 5 per affected receiver), 0 unexplained, 1 to stalls (ring 1); the sender sent 7 packets more than 2ms late (at most 30ms, 10ms of its schedule given up)"
	if got := rep.Summary(); got != want {
		t.Errorf("summary\n%s\nwant\n%s", got, want)
	}
	// Without a failure there is no reroute to speak of.
	rep = AttributeLosses(LossInput{FirstSeq: 0, LastSeq: 9, Sent: 10, Receivers: []LossReceiver{{ID: 2, Received: got(10)}}})
	if got, want := rep.Summary(), "losses: 0 unexplained, 0 to stalls (none); the sender kept its schedule"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
}

func TestRerouteBound(t *testing.T) {
	for _, c := range []struct {
		rate, deliveredUs float64
		lagNs             int64
		want              uint64
	}{
		{5000, 3351, 18_135_000, 118}, // a run above: 3.4 ms to the backup path, the sender 18 ms behind
		{5000, 1000, 0, 15},
		{5000, 1000, int64(time.Second), 115}, // the catch-up is at most 20 ms of the schedule
		{2000, 250_000, 0, 504},
	} {
		if got := RerouteBound(c.rate, c.deliveredUs, c.lagNs); got != c.want {
			t.Errorf("RerouteBound(%v, %v, %v) = %d, want %d", c.rate, c.deliveredUs, c.lagNs, got, c.want)
		}
	}
}
