package dataplane

import (
	"slices"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

func newAggFabric(t *testing.T, aggregate bool) *testFabric {
	return newAggFabricTimeout(t, aggregate, 100*time.Millisecond)
}

// newAggFabricTimeout is newAggFabric with another ack_timeout: a long one
// for tests in which no receiver may become a laggard however slowly the
// test runs (-race on a loaded machine).
func newAggFabricTimeout(t *testing.T, aggregate bool, ackTimeout time.Duration) *testFabric {
	id := uint16(900)
	return newTestFabric(t, 5, func(c *Config) {
		c.Routes = append(c.Routes, RouteEntry{Receivers: "0", Port: "p0"})
		c.SwitchID = &id
		c.Feedback = FeedbackConfig{Aggregate: &aggregate, AckTimeout: ackTimeout, NackWindow: time.Second, CNPInterval: time.Second}
	})
}

func data(t *testing.T, seq uint32, flags headers.Flags, ids ...uint16) []byte {
	return buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 4, SourceID: 0, SessionID: 1, Sequence: seq, Flags: flags}, ids: ids, payload: []byte("d")})
}

func fb(t *testing.T, typ headers.Type, seq uint32, reporter uint16, count uint16, set ...uint16) []byte {
	return buildFrame(t, frameOpts{fields: headers.Fields{Type: typ, HopLimit: 4, SourceID: 0, SessionID: 1, Sequence: seq, Count: count, SpeaksFor: 1, ReporterID: reporter}, ids: set})
}

// upstreamFrames returns the SMH of every frame that went back to the source.
func upstreamFrames(t *testing.T, f *testFabric) []headers.SMH {
	var out []headers.SMH
	for _, fr := range f.recv(0) {
		h, _ := checkFrame(t, fr)
		out = append(out, h)
	}
	return out
}

func drain(f *testFabric) {
	for p := 1; p < len(f.host); p++ {
		f.recv(p)
	}
}

func TestAggregatedACK(t *testing.T) {
	f := newAggFabric(t, true)
	for seq := uint32(0); seq < 10; seq++ {
		f.send(t, 0, data(t, seq, 0, 1, 2, 3, 4))
	}
	drain(f)
	for r := uint16(1); r <= 3; r++ {
		f.send(t, int(r), fb(t, headers.TypeACK, 10, r, 0))
	}
	if up := upstreamFrames(t, f); len(up) != 0 {
		t.Fatalf("ACK went up before every receiver reported: %v", up[0].Fields())
	}
	f.send(t, 4, fb(t, headers.TypeACK, 10, 4, 0))
	up := upstreamFrames(t, f)
	if len(up) != 1 {
		t.Fatalf("%d ACKs upstream, want 1", len(up))
	}
	h := up[0]
	if h.Type() != headers.TypeACK || h.Sequence() != 10 || h.SpeaksFor() != 4 || h.ReporterID() != 900 ||
		h.Flags()&headers.FlagAggregated == 0 || !slices.Equal(h.AppendReceivers(nil), []uint16{1, 2, 3, 4}) {
		t.Fatalf("aggregate %+v set %v", h.Fields(), h.AppendReceivers(nil))
	}

	// Sparse sets (S): 10 goes to 1 only, 11 to 2 only. Receivers 3 and 4
	// have everything they were sent; once 1 and 2 acknowledge, the
	// aggregate moves to 12. (Without S, TestFixedSetCreditsOwnACKOnly.)
	f.send(t, 0, data(t, 10, headers.FlagSparse, 1))
	f.send(t, 0, data(t, 11, headers.FlagSparse, 2))
	drain(f)
	f.send(t, 1, fb(t, headers.TypeACK, 11, 1, 0))
	if up := upstreamFrames(t, f); len(up) != 0 {
		t.Fatalf("ACK up while receiver 2 lacks 11: %+v", up[0].Fields())
	}
	f.send(t, 2, fb(t, headers.TypeACK, 12, 2, 0))
	up = upstreamFrames(t, f)
	if len(up) != 1 || up[0].Sequence() != 12 {
		t.Fatalf("after sparse sets: %d ACKs, want one for 12", len(up))
	}

	// A receiver that stops reporting is left out after the ACK timeout.
	f.send(t, 0, data(t, 12, 0, 1, 2, 3, 4))
	drain(f)
	for _, r := range []uint16{1, 2, 3} {
		f.send(t, int(r), fb(t, headers.TypeACK, 13, r, 0))
	}
	if up := upstreamFrames(t, f); len(up) != 0 {
		t.Fatal("ACK up before the timeout")
	}
	time.Sleep(120 * time.Millisecond)
	f.send(t, 1, fb(t, headers.TypeACK, 13, 1, 0))
	up = upstreamFrames(t, f)
	if len(up) != 1 || up[0].Sequence() != 13 || up[0].SpeaksFor() != 3 {
		t.Fatalf("timed-out aggregate: %d ACKs %+v", len(up), up)
	}
	if set := up[0].AppendReceivers(nil); !slices.Equal(set, []uint16{1, 2, 3}) {
		t.Fatalf("timed-out aggregate speaks for %v, want [1 2 3]: 4 is its exception", set)
	}
	if got := f.w.counters.Feedback[headers.TypeACK][FbAbsorbed].Load(); got != 10 {
		t.Fatalf("absorbed %d ACKs, want 10", got)
	}
}

// TestFixedSetCreditsOwnACKOnly: in a stream without S every packet is for
// every receiver, so packets that went to 1 and 2 only mean 3 and 4 are
// reached another way (a reroute upstream): the switch does not credit them
// with those packets, and the aggregate stays at what they acknowledged.
func TestFixedSetCreditsOwnACKOnly(t *testing.T) {
	f := newAggFabricTimeout(t, true, time.Minute) // 3 and 4 never become laggards
	for seq := uint32(0); seq < 10; seq++ {
		f.send(t, 0, data(t, seq, 0, 1, 2, 3, 4))
	}
	drain(f)
	for r := uint16(1); r <= 4; r++ {
		f.send(t, int(r), fb(t, headers.TypeACK, 10, r, 0))
	}
	if up := upstreamFrames(t, f); len(up) != 1 || up[0].Sequence() != 10 {
		t.Fatalf("%d ACKs upstream, want one for 10", len(up))
	}
	f.send(t, 0, data(t, 10, 0, 1, 2))
	f.send(t, 0, data(t, 11, 0, 1, 2))
	drain(f)
	f.send(t, 1, fb(t, headers.TypeACK, 12, 1, 0))
	f.send(t, 2, fb(t, headers.TypeACK, 12, 2, 0))
	if up := upstreamFrames(t, f); len(up) != 0 {
		t.Fatalf("ACK up to %d naming %v: 3 and 4 credited with packets they never acknowledged", up[0].Sequence(), up[0].AppendReceivers(nil))
	}
}

func TestNACKSuppressionAndRepairExpansion(t *testing.T) {
	f := newAggFabric(t, true)
	for seq := uint32(0); seq < 10; seq++ {
		f.send(t, 0, data(t, seq, 0, 1, 2, 3, 4))
	}
	drain(f)
	f.send(t, 1, fb(t, headers.TypeNACK, 5, 1, 2, 1))
	f.send(t, 2, fb(t, headers.TypeNACK, 6, 2, 1, 2))
	f.send(t, 3, fb(t, headers.TypeNACK, 5, 3, 1, 3))
	up := upstreamFrames(t, f)
	if len(up) != 1 || up[0].Sequence() != 5 || up[0].FeedbackCount() != 2 {
		t.Fatalf("%d NACKs upstream, want the first one only", len(up))
	}
	if got := f.w.counters.Feedback[headers.TypeNACK][FbSuppressed].Load(); got != 2 {
		t.Fatalf("suppressed %d NACKs, want 2", got)
	}
	// The source repairs 6 for receiver 1 only; the switch adds 2, which
	// asked for 6 (3 asked for 5 only).
	f.send(t, 0, data(t, 6, headers.FlagRetransmit, 1))
	for p, want := range map[int]int{1: 1, 2: 1, 3: 0, 4: 0} {
		if got := len(f.recv(p)); got != want {
			t.Fatalf("repair of 6: port %d got %d copies, want %d", p, got, want)
		}
	}
	// The repair of 5 goes to 1 and 3 (2 asked for 6 only).
	f.send(t, 0, data(t, 5, headers.FlagRetransmit, 1))
	for p, want := range map[int]int{1: 1, 2: 0, 3: 1, 4: 0} {
		if got := len(f.recv(p)); got != want {
			t.Fatalf("repair of 5: port %d got %d copies, want %d", p, got, want)
		}
	}
}

func TestSpoofedFeedbackAndCNP(t *testing.T) {
	f := newAggFabric(t, true)
	f.send(t, 0, data(t, 0, 0, 1, 2))
	drain(f)
	// Port 3 never got this stream: its ACK is spoofed.
	f.send(t, 3, fb(t, headers.TypeACK, 1, 3, 0))
	if f.w.counters.Drops[DropFeedbackSpoofed].Load() != 1 || len(upstreamFrames(t, f)) != 0 {
		t.Fatal("spoofed ACK not dropped")
	}
	// Two CNPs within the interval: the second, no more severe, is dropped;
	// a more severe one goes up.
	f.send(t, 1, fb(t, headers.TypeCNP, 0, 1, 1))
	f.send(t, 2, fb(t, headers.TypeCNP, 0, 2, 1))
	f.send(t, 2, fb(t, headers.TypeCNP, 0, 2, 3))
	up := upstreamFrames(t, f)
	if len(up) != 2 || up[0].FeedbackCount() != 1 || up[1].FeedbackCount() != 3 {
		t.Fatalf("CNPs upstream: %d", len(up))
	}
}

func TestAggregationOffForwardsEverything(t *testing.T) {
	f := newAggFabric(t, false)
	f.send(t, 0, data(t, 0, 0, 1, 2, 3, 4))
	drain(f)
	for r := uint16(1); r <= 4; r++ {
		f.send(t, int(r), fb(t, headers.TypeACK, 1, r, 0))
	}
	if up := upstreamFrames(t, f); len(up) != 4 {
		t.Fatalf("%d ACKs upstream without aggregation, want 4", len(up))
	}
}

func TestSwitchCNPOnDeepQueue(t *testing.T) {
	id := uint16(901)
	f := newTestFabric(t, 3, func(c *Config) {
		c.Routes = append(c.Routes, RouteEntry{Receivers: "0", Port: "p0"})
		c.SwitchID = &id
		c.QueueDepth = 64
		c.Feedback = FeedbackConfig{CNPQueueDepth: 8, CNPInterval: time.Minute}
	})
	// With a Transfer Epoch, which the switch's own CNP carries.
	f.send(t, 0, edata(t, 0x5EED, 3, 1))
	f.recv(1)
	fields := headers.Fields{Type: headers.TypeData, SourceID: 0, SessionID: 1, Sequence: 4, Epoch: 0x5EED}
	q := &f.w.queues[1]
	for depth, wantMark := range map[int]bool{7: false, 8: true} {
		q.size = depth // pretend the queue is this deep
		out := f.w.congest(1, fields)
		q.size = 0
		if got := out.Flags&headers.FlagCongestion != 0; got != wantMark {
			t.Fatalf("depth %d: C flag %v, want %v", depth, got, wantMark)
		}
	}
	q.size = 20
	f.w.congest(1, fields) // within the interval: marked, no second CNP
	q.size = 0
	f.w.flush()
	up := upstreamFrames(t, f)
	if len(up) != 1 || up[0].Type() != headers.TypeCNP || up[0].ReporterID() != 901 || up[0].Sequence() != 4 || up[0].Epoch() != 0x5EED {
		t.Fatalf("switch CNPs upstream: %d", len(up))
	}
}

// A lost aggregate must not stall the stream: a repeated ACK (receivers
// repeat when the source retransmits) sends the aggregate up again, at most
// once per repeat interval.
func TestLostAggregateIsRepeated(t *testing.T) {
	id := uint16(900)
	f := newTestFabric(t, 3, func(c *Config) {
		c.Routes = append(c.Routes, RouteEntry{Receivers: "0", Port: "p0"})
		c.SwitchID = &id
		c.Feedback = FeedbackConfig{NackWindow: 100 * time.Millisecond}
	})
	f.send(t, 0, data(t, 0, 0, 1, 2))
	drain(f)
	f.send(t, 1, fb(t, headers.TypeACK, 1, 1, 0))
	f.send(t, 2, fb(t, headers.TypeACK, 1, 2, 0))
	if up := upstreamFrames(t, f); len(up) != 1 || up[0].Sequence() != 1 {
		t.Fatalf("first aggregate: %d", len(up))
	}
	f.send(t, 1, fb(t, headers.TypeACK, 1, 1, 0))
	if up := upstreamFrames(t, f); len(up) != 0 {
		t.Fatal("aggregate repeated within the interval")
	}
	time.Sleep(120 * time.Millisecond)
	f.send(t, 2, fb(t, headers.TypeACK, 1, 2, 0))
	if up := upstreamFrames(t, f); len(up) != 1 || up[0].Sequence() != 1 || up[0].SpeaksFor() != 2 {
		t.Fatalf("repeat after the interval: %d", len(up))
	}
}

// A stream's DATA reaches a leaf over two spines, one behind the other. A
// receiver behind the slow spine that has everything that came its way is
// complete only up to what that spine delivered, not up to the stream's
// highest sequence number seen on the fast one (the aggregate used to claim
// the latter and the source freed packets still in flight to it).
func TestAggregatePerUpstreamHighest(t *testing.T) {
	f := newAggFabric(t, true)
	for seq := uint32(0); seq < 10; seq++ {
		f.send(t, 0, data(t, seq, 0, 1)) // receiver 1's DATA via p0: 0-9
	}
	for seq := uint32(0); seq < 5; seq++ {
		f.send(t, 3, data(t, seq, 0, 2)) // receiver 2's DATA via p3: 0-4 so far
	}
	drain(f)
	f.send(t, 2, fb(t, headers.TypeACK, 5, 2, 0))
	var acks []headers.SMH
	for _, fr := range f.recv(3) {
		if h, _ := checkFrame(t, fr); h.Type() == headers.TypeACK {
			acks = append(acks, h)
		}
	}
	if len(acks) != 1 {
		t.Fatalf("%d ACKs towards p3, want 1", len(acks))
	}
	if got := acks[0].Sequence(); got != 5 {
		t.Fatalf("aggregate towards the slow spine says %d, want 5 (receiver 2 was sent 0-4 only)", got)
	}
	f.send(t, 1, fb(t, headers.TypeACK, 10, 1, 0))
	up := upstreamFrames(t, f)
	if len(up) != 1 || up[0].Sequence() != 10 || up[0].SpeaksFor() != 1 {
		t.Fatalf("towards p0: %d ACKs, want one for 10 speaking for 1", len(up))
	}
}

// A neighbour's fast reroute turns a receiver's copies around: they go out
// of p1 (the primary), come back in on p1 and leave by the backup p2, the way
// the receiver's feedback now comes back. Aggregates arriving on p2 must
// count, while originals keep going out of p1 first.
func TestAggregateAcrossUTurn(t *testing.T) {
	aggregate, id := true, uint16(900)
	f := newTestFabric(t, 3, func(c *Config) {
		c.Routes = []RouteEntry{{Receivers: "0", Port: "p0"}, {Receivers: "7", Port: "p1", Backup: "p2"}}
		c.SwitchID = &id
		c.Feedback = FeedbackConfig{Aggregate: &aggregate, AckTimeout: time.Second, NackWindow: time.Second, CNPInterval: time.Second}
	})
	spine2ACK := func(x uint32) []byte { return fb(t, headers.TypeACK, x, 0xFE00, 0, 7) }
	turnAround := func() {
		out := f.recv(1)
		f.send(t, 1, out...) // spine1 sends them back
		if back := f.recv(2); len(back) != len(out) {
			t.Fatalf("%d copies came back in, %d went out by the backup", len(out), len(back))
		}
	}
	for seq := uint32(0); seq < 5; seq++ {
		f.send(t, 0, data(t, seq, 0, 7))
	}
	turnAround()
	f.send(t, 2, spine2ACK(5))
	if up := upstreamFrames(t, f); len(up) != 1 || up[0].Sequence() != 5 || !slices.Equal(up[0].AppendReceivers(nil), []uint16{7}) {
		t.Fatalf("after the U-turn: %d ACKs upstream, want one for 5 naming 7", len(up))
	}
	// New originals still go out of p1 first; feedback keeps coming on p2.
	for seq := uint32(5); seq < 10; seq++ {
		f.send(t, 0, data(t, seq, 0, 7))
	}
	turnAround()
	f.send(t, 0, data(t, 10, 0, 7)) // on its way round when the ACK comes
	f.send(t, 2, spine2ACK(10))
	if up := upstreamFrames(t, f); len(up) != 1 || up[0].Sequence() != 10 {
		t.Fatalf("originals during the detour: %d ACKs upstream, want one for 10", len(up))
	}
	if n := f.w.counters.Drops[DropFeedbackSpoofed].Load(); n != 0 {
		t.Fatalf("%d ACKs dropped as spoofed", n)
	}
}

// A failure moves receiver 1's path onto this switch mid-stream: its first
// packet here is 10, but it may lack anything before that (the lab's stalled
// link-failure transfer: a spine named the receiver at its first packet, and
// the source freed packets the receiver never got). Until it reports, an
// aggregate must not name it, while it still names the receivers it heard.
func TestAggregateNamesOnlyReceiversHeardFrom(t *testing.T) {
	f := newAggFabric(t, true)
	for seq := uint32(0); seq < 10; seq++ {
		f.send(t, 0, data(t, seq, 0, 2))
	}
	drain(f)
	f.send(t, 2, fb(t, headers.TypeACK, 10, 2, 0))
	if up := upstreamFrames(t, f); len(up) != 1 || up[0].Sequence() != 10 || !slices.Equal(up[0].AppendReceivers(nil), []uint16{2}) {
		t.Fatalf("before the move: %d ACKs upstream, want one for 10 naming 2", len(up))
	}
	for seq := uint32(10); seq < 15; seq++ {
		f.send(t, 0, data(t, seq, 0, 1, 2))
	}
	drain(f)
	names := func(when string, want ...uint16) {
		t.Helper()
		for _, h := range upstreamFrames(t, f) {
			if set := h.AppendReceivers(nil); slices.Contains(set, 1) && !slices.Contains(want, 1) {
				t.Fatalf("%s: an aggregate for %d names receiver 1 (set %v) before it reported", when, h.Sequence(), set)
			}
		}
	}
	f.send(t, 2, fb(t, headers.TypeACK, 15, 2, 0))
	names("receiver 2 at 15")
	time.Sleep(120 * time.Millisecond) // receiver 1 times out: a laggard
	f.send(t, 2, fb(t, headers.TypeACK, 15, 2, 0))
	names("after the ACK timeout")
	f.send(t, 1, fb(t, headers.TypeACK, 15, 1, 0))
	up := upstreamFrames(t, f)
	if len(up) != 1 || up[0].Sequence() != 15 || !slices.Equal(up[0].AppendReceivers(nil), []uint16{1, 2}) {
		t.Fatalf("once receiver 1 reported 15: %d ACKs upstream, want one for 15 naming 1 and 2", len(up))
	}
}

// Receiver 1's copies come in on the same port as receiver 2's but two hops
// later (a neighbour's fast reroute sends them round): when receiver 1 has
// acknowledged 0-9, its 10 may still be on the way while receiver 2's 10 is
// here. Counting it complete up to 11 let the lab's link-failure transfer
// free packet 10 before receiver 1 had it.
func TestAggregateLongerPathOnSamePort(t *testing.T) {
	f := newAggFabric(t, true)
	at := func(seq uint32, hops uint8, id uint16) []byte {
		return buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: hops, SourceID: 0, SessionID: 1, Sequence: seq}, ids: []uint16{id}, payload: []byte("d")})
	}
	for seq := uint32(0); seq <= 10; seq++ {
		f.send(t, 0, at(seq, 6, 2))
		if seq < 10 {
			f.send(t, 0, at(seq, 4, 1))
		}
	}
	drain(f)
	f.send(t, 2, fb(t, headers.TypeACK, 11, 2, 0))
	f.send(t, 1, fb(t, headers.TypeACK, 10, 1, 0))
	for _, h := range upstreamFrames(t, f) {
		if set := h.AppendReceivers(nil); slices.Contains(set, 1) && h.Sequence() != 10 {
			t.Fatalf("an aggregate for %d names receiver 1 (set %v): it has 0-9, its 10 is still on the way", h.Sequence(), set)
		}
	}
	f.send(t, 0, at(10, 4, 1)) // receiver 1's 10 arrives round the detour
	drain(f)
	f.send(t, 1, fb(t, headers.TypeACK, 11, 1, 0))
	up := upstreamFrames(t, f)
	if len(up) != 1 || up[0].Sequence() != 11 || !slices.Equal(up[0].AppendReceivers(nil), []uint16{1}) {
		t.Fatalf("after receiver 1's 10 arrived: %d ACKs upstream, want one for 11 naming 1", len(up))
	}
}

// NACK ranges live until their repair passes: a NACK reaching past what was
// asked for goes up (its new part would otherwise never be asked for), a
// NACK after the repair went by goes up (that repair was lost below), and
// with nack_ranges taken the oldest range is evicted, counted.
func TestNACKRangesUntilRepaired(t *testing.T) {
	aggregate, id := true, uint16(900)
	f := newTestFabric(t, 5, func(c *Config) {
		c.Routes = append(c.Routes, RouteEntry{Receivers: "0", Port: "p0"})
		c.SwitchID = &id
		c.Feedback = FeedbackConfig{Aggregate: &aggregate, NackWindow: time.Minute, NackRanges: 2}
	})
	for seq := uint32(0); seq < 20; seq++ {
		f.send(t, 0, data(t, seq, 0, 1, 2, 3, 4))
	}
	drain(f)
	up := func(want int, what string) {
		t.Helper()
		if got := len(upstreamFrames(t, f)); got != want {
			t.Fatalf("%s: %d NACKs upstream, want %d", what, got, want)
		}
	}
	f.send(t, 1, fb(t, headers.TypeNACK, 5, 1, 1, 1))
	up(1, "first NACK for 5")
	f.send(t, 2, fb(t, headers.TypeNACK, 5, 2, 1, 2))
	up(0, "the same range again")
	f.send(t, 3, fb(t, headers.TypeNACK, 5, 3, 2, 3))
	up(1, "5-6: 6 was not asked for")
	f.send(t, 0, data(t, 5, headers.FlagRetransmit, 1))
	if got := len(f.recv(2)); got != 1 {
		t.Fatalf("repair of 5 reached receiver 2 %d times, want 1", got)
	}
	drain(f)
	f.send(t, 2, fb(t, headers.TypeNACK, 5, 2, 1, 2))
	up(1, "5 after its repair went down")
	f.send(t, 4, fb(t, headers.TypeNACK, 9, 4, 1, 4))
	up(1, "a third range")
	if got := f.w.counters.Feedback[headers.TypeNACK][FbEvicted].Load(); got != 1 {
		t.Fatalf("evicted %d NACK ranges, want 1 (nack_ranges 2)", got)
	}
}

// Two receivers behind one port NACK the same packet: the higher ID's NACK
// goes up, the lower one's is suppressed. The repair comes down for the
// higher ID and the switch adds the lower one: the copy's set must still be
// written in ascending order (it used to go out with a half-written set
// whose last entry was read from the payload, and the bench fabric sent
// repairs to the wrong leaves).
func TestRepairAddsReceiversInOrder(t *testing.T) {
	aggregate, id := true, uint16(900)
	f := newTestFabric(t, 3, func(c *Config) {
		c.Routes = []RouteEntry{{Receivers: "0", Port: "p0"}, {Receivers: "5,6", Port: "p1"}, {Receivers: "7", Port: "p2"}}
		c.SwitchID = &id
		c.Feedback = FeedbackConfig{Aggregate: &aggregate, NackWindow: time.Minute}
	})
	for seq := uint32(0); seq < 4; seq++ {
		f.send(t, 0, data(t, seq, 0, 5, 6, 7))
	}
	drain(f)
	for seq := uint32(2); seq < 4; seq++ {
		f.send(t, 1, fb(t, headers.TypeNACK, seq, 6, 1, 6))
		f.send(t, 1, fb(t, headers.TypeNACK, seq, 5, 1, 5))
	}
	upstreamFrames(t, f)
	// One copy through emitCopy (p1, then p2 in place), and one as the
	// last copy in place, so both writers see an added receiver.
	for i, set := range [][]uint16{{6, 7}, {6}} {
		f.send(t, 0, data(t, uint32(2+i), headers.FlagRetransmit, set...))
		got := f.recv(1)
		if len(got) != 1 {
			t.Fatalf("repair to %v: %d copies on p1, want 1", set, len(got))
		}
		h, _ := checkFrame(t, got[0])
		if ids := h.AppendReceivers(nil); !slices.Equal(ids, []uint16{5, 6}) {
			t.Fatalf("repair to %v: the copy on p1 names %v, want [5 6]", set, ids)
		}
		drain(f)
	}
	if n := f.w.counters.Drops[DropBadSet].Load(); n != 0 {
		t.Fatalf("%d copies dropped as bad_set", n)
	}
}

// edata and efb are data and fb of a transfer with a Transfer Epoch.
func edata(t *testing.T, epoch, seq uint32, ids ...uint16) []byte {
	return buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 4, SourceID: 0, SessionID: 1, Sequence: seq, Epoch: epoch}, ids: ids, payload: []byte("d")})
}

func efb(t *testing.T, typ headers.Type, epoch, seq uint32, reporter uint16, count uint16, set ...uint16) []byte {
	return buildFrame(t, frameOpts{fields: headers.Fields{Type: typ, HopLimit: 4, SourceID: 0, SessionID: 1, Sequence: seq, Epoch: epoch,
		Count: count, SpeaksFor: uint16(max(1, len(set))), ReporterID: reporter}, ids: set})
}

// transfer sends DATA 0..n-1 of one epoch to receivers 1-4, then each
// receiver's ACK for n, and returns what went up.
func transfer(t *testing.T, f *testFabric, epoch, n uint32) []headers.SMH {
	t.Helper()
	for seq := uint32(0); seq < n; seq++ {
		f.send(t, 0, edata(t, epoch, seq, 1, 2, 3, 4))
	}
	for p := 1; p <= 4; p++ {
		for _, fr := range f.recv(p) {
			if h, _ := checkFrame(t, fr); h.Epoch() != epoch {
				t.Fatalf("a copy of epoch %#x's DATA carries epoch %#x", epoch, h.Epoch())
			}
		}
	}
	for r := uint16(1); r <= 4; r++ {
		f.send(t, int(r), efb(t, headers.TypeACK, epoch, n, r, 0))
	}
	return upstreamFrames(t, f)
}

// Two transfers in a row on one source and session, each starting at
// sequence 0 with its own epoch: the second's ACKs restart the state
// instead of being absorbed against the first's (issue 13: the lab's second
// checkpoint stayed at 0% acknowledged), and the aggregates carry the epoch.
func TestTransfersInARowWithEpochs(t *testing.T) {
	f := newAggFabricTimeout(t, true, time.Minute)
	for i, tr := range []struct{ epoch, n uint32 }{{0xA1, 20}, {0xB2, 5}, {0xC3, 3}} {
		up := transfer(t, f, tr.epoch, tr.n)
		if len(up) != 1 {
			t.Fatalf("transfer %d (epoch %#x): %d ACKs upstream, want 1", i, tr.epoch, len(up))
		}
		h := up[0]
		if h.Type() != headers.TypeACK || h.Sequence() != tr.n || h.Epoch() != tr.epoch || h.SpeaksFor() != 4 {
			t.Fatalf("transfer %d: aggregate %+v, want ACK %d of epoch %#x speaking for 4", i, h.Fields(), tr.n, tr.epoch)
		}
		if got := f.w.counters.StreamsRestarted.Load(); got != uint64(i) {
			t.Fatalf("after transfer %d: %d streams restarted, want %d", i, got, i)
		}
	}
	// A late ACK of the first transfer is stale: dropped, counted, and
	// nothing goes up.
	f.send(t, 1, efb(t, headers.TypeACK, 0xA1, 30, 1, 0))
	f.send(t, 2, efb(t, headers.TypeNACK, 0xA1, 7, 2, 1, 2))
	f.send(t, 3, fb(t, headers.TypeACK, 30, 3, 0)) // no epoch at all
	if up := upstreamFrames(t, f); len(up) != 0 {
		t.Fatalf("stale feedback went up: %+v", up[0].Fields())
	}
	if got := f.w.counters.Drops[DropFeedbackStale].Load(); got != 3 {
		t.Fatalf("%d feedback_stale drops, want 3", got)
	}
	// The current transfer goes on.
	f.send(t, 0, edata(t, 0xC3, 3, 1, 2, 3, 4))
	drain(f)
	for r := uint16(1); r <= 4; r++ {
		f.send(t, int(r), efb(t, headers.TypeACK, 0xC3, 4, r, 0))
	}
	if up := upstreamFrames(t, f); len(up) != 1 || up[0].Sequence() != 4 || up[0].Epoch() != 0xC3 {
		t.Fatalf("after the stale feedback: %d ACKs upstream, want one for 4 of epoch 0xc3", len(up))
	}
}

// A stream idle for feedback.idle_timeout loses its state (counted); its
// feedback then goes up unaggregated, as for any stream without state.
func TestIdleStreamExpires(t *testing.T) {
	aggregate, id := true, uint16(900)
	f := newTestFabric(t, 3, func(c *Config) {
		c.Routes = append(c.Routes, RouteEntry{Receivers: "0", Port: "p0"})
		c.SwitchID = &id
		c.Feedback = FeedbackConfig{Aggregate: &aggregate, Streams: 8, IdleTimeout: time.Minute, AckTimeout: time.Minute}
	})
	f.send(t, 0, edata(t, 9, 0, 1, 2))
	drain(f)
	f.send(t, 1, efb(t, headers.TypeACK, 9, 1, 1, 0))
	if up := upstreamFrames(t, f); len(up) != 0 {
		t.Fatal("the ACK of a stream with state was not absorbed")
	}
	// The worker's round clock, a minute on (no test sleeps that long):
	// two rounds sweep all 8 slots (idleSweep per round).
	a := f.w.agg
	s := a.stream(uint32(0)<<16|1, false)
	a.now = s.lastUse + int64(time.Minute)
	a.expireIdle()
	a.expireIdle()
	if got := f.w.counters.StreamsExpired.Load(); got != 0 {
		t.Fatalf("%d streams expired after exactly idle_timeout, want none yet", got)
	}
	a.now++
	a.expireIdle()
	a.expireIdle()
	if got := f.w.counters.StreamsExpired.Load(); got != 1 {
		t.Fatalf("%d streams expired, want 1", got)
	}
	if f.w.agg.n != 0 {
		t.Fatalf("%d streams with state after expiry", f.w.agg.n)
	}
	f.send(t, 2, efb(t, headers.TypeACK, 9, 1, 2, 0))
	if up := upstreamFrames(t, f); len(up) != 1 || up[0].ReporterID() != 2 || up[0].Flags()&headers.FlagAggregated != 0 {
		t.Fatalf("after expiry: %d frames upstream, want receiver 2's own ACK", len(up))
	}
	if got := f.w.counters.Feedback[headers.TypeACK][FbUnknown].Load(); got != 1 {
		t.Fatalf("%d ACKs for unknown streams, want 1", got)
	}
}

// An ABORT goes up as it is (counted as ABORT feedback) and takes the
// receiver it names out of the aggregate: the others' aggregate ACK goes
// up right away, not after ack_timeout (a minute here), and never names it.
func TestAbortForwardedAndUnblocksAggregate(t *testing.T) {
	f := newAggFabricTimeout(t, true, time.Minute)
	const epoch = 0xAB
	for seq := uint32(0); seq < 10; seq++ {
		f.send(t, 0, edata(t, epoch, seq, 1, 2, 3, 4))
	}
	drain(f)
	for r := uint16(1); r <= 3; r++ {
		f.send(t, int(r), efb(t, headers.TypeACK, epoch, 10, r, 0))
	}
	if up := upstreamFrames(t, f); len(up) != 0 {
		t.Fatal("ACK went up while receiver 4 holds it back")
	}
	// Port 1 does not lead to receiver 4: an ABORT naming it from there
	// takes nobody out (and is forwarded, as a NACK would be).
	f.send(t, 1, efb(t, headers.TypeABORT, epoch, 0, 1, uint16(headers.AbortNoSpace), 4))
	if up := upstreamFrames(t, f); len(up) != 1 || up[0].Type() != headers.TypeABORT {
		t.Fatalf("an ABORT from the wrong port: %d frames up, want the ABORT only", len(up))
	}
	f.send(t, 4, efb(t, headers.TypeABORT, epoch, 3, 4, uint16(headers.AbortNoSpace), 4))
	up := upstreamFrames(t, f)
	var abort, ack []headers.SMH
	for _, h := range up {
		switch h.Type() {
		case headers.TypeABORT:
			abort = append(abort, h)
		case headers.TypeACK:
			ack = append(ack, h)
		}
	}
	if len(abort) != 1 || abort[0].Epoch() != epoch || headers.AbortReason(abort[0].FeedbackCount()) != headers.AbortNoSpace ||
		!slices.Equal(abort[0].AppendReceivers(nil), []uint16{4}) {
		t.Fatalf("%d ABORTs upstream, want receiver 4's as it was sent", len(abort))
	}
	if len(ack) != 1 || ack[0].Sequence() != 10 || ack[0].Epoch() != epoch || !slices.Equal(ack[0].AppendReceivers(nil), []uint16{1, 2, 3}) {
		t.Fatalf("%d ACKs upstream after the ABORT, want one for 10 naming 1-3", len(ack))
	}
	// Receiver 4 no longer holds anything back nor is named.
	f.send(t, 0, edata(t, epoch, 10, 1, 2, 3, 4))
	drain(f)
	for r := uint16(1); r <= 4; r++ {
		f.send(t, int(r), efb(t, headers.TypeACK, epoch, 11, r, 0))
	}
	if up := upstreamFrames(t, f); len(up) != 1 || !slices.Equal(up[0].AppendReceivers(nil), []uint16{1, 2, 3}) {
		t.Fatalf("after the ABORT: %d ACKs up, want one naming 1-3 only", len(up))
	}
	c := &f.w.counters.Feedback[headers.TypeABORT]
	if in, upc := c[FbIn].Load(), c[FbUp].Load(); in != 2 || upc != 2 {
		t.Fatalf("ABORT counters in %d up %d, want 2 and 2", in, upc)
	}
	if got := f.w.counters.Drops[DropFeedbackSpoofed].Load(); got != 0 {
		t.Fatalf("%d spoofed drops", got)
	}
}

// An ABORT from a port the stream never went out of is spoofed, as any
// other feedback.
func TestSpoofedAbortDropped(t *testing.T) {
	f := newAggFabricTimeout(t, true, time.Minute)
	f.send(t, 0, edata(t, 5, 0, 1, 2))
	drain(f)
	f.send(t, 3, efb(t, headers.TypeABORT, 5, 0, 3, uint16(headers.AbortIO), 1, 2))
	if f.w.counters.Drops[DropFeedbackSpoofed].Load() != 1 || len(upstreamFrames(t, f)) != 0 {
		t.Fatal("spoofed ABORT not dropped")
	}
	f.send(t, 1, efb(t, headers.TypeACK, 5, 1, 1, 0))
	f.send(t, 2, efb(t, headers.TypeACK, 5, 1, 2, 0))
	if up := upstreamFrames(t, f); len(up) != 1 || !slices.Equal(up[0].AppendReceivers(nil), []uint16{1, 2}) {
		t.Fatalf("after a spoofed ABORT: %d ACKs, want one naming 1 and 2", len(up))
	}
}

func blockNACK(t *testing.T, b uint32, reporter, count uint16) []byte {
	return buildFrame(t, frameOpts{fields: headers.Fields{Type: headers.TypeNACK, Flags: headers.FlagParity, HopLimit: 4, SourceID: 0, SessionID: 1,
		Sequence: b, Count: count, SpeaksFor: 1, ReporterID: reporter}, ids: []uint16{reporter}})
}

// Block NACKs (P) are aggregated per block: one asking for no more symbols
// than one already sent up is suppressed and its reporter gets every parity
// repair of the block coming down, until as many as were asked for passed;
// one asking for more goes up. Block NACKs and NACKs by name never suppress
// each other.
func TestBlockNACKSuppressionAndParityWidening(t *testing.T) {
	f := newAggFabric(t, true)
	for seq := uint32(0); seq < 64; seq++ {
		f.send(t, 0, data(t, seq, 0, 1, 2, 3, 4))
	}
	drain(f)
	up := func(want int, what string) []headers.SMH {
		t.Helper()
		got := upstreamFrames(t, f)
		if len(got) != want {
			t.Fatalf("%s: %d NACKs upstream, want %d", what, len(got), want)
		}
		return got
	}
	f.send(t, 1, blockNACK(t, 32, 1, 2))
	if u := up(1, "first block NACK"); u[0].Flags()&headers.FlagParity == 0 || u[0].Sequence() != 32 || u[0].FeedbackCount() != 2 {
		t.Fatalf("forwarded %+v", u[0].Fields())
	}
	f.send(t, 2, blockNACK(t, 32, 2, 1))
	up(0, "a block NACK asking for fewer symbols")
	f.send(t, 3, blockNACK(t, 32, 3, 3))
	up(1, "a block NACK asking for more symbols")
	f.send(t, 4, fb(t, headers.TypeNACK, 32, 4, 1, 4))
	up(1, "a NACK by name for the block's first packet")
	f.send(t, 4, blockNACK(t, 0, 4, 1))
	up(1, "another block")
	if got := f.w.counters.Feedback[headers.TypeNACK][FbSuppressed].Load(); got != 1 {
		t.Fatalf("suppressed %d NACKs, want 1", got)
	}
	// Parity of block 32 comes down for 1 and 3: the switch adds 2. Three
	// symbols were asked for (the largest count): after three, the
	// reporters are forgotten.
	for i := 0; i < 4; i++ {
		f.send(t, 0, data(t, 32, headers.FlagRetransmit|headers.FlagParity, 1, 3))
		want := 1
		if i == 3 {
			want = 0
		}
		if got := len(f.recv(2)); got != want {
			t.Fatalf("parity %d of block 32: receiver 2 got %d copies, want %d", i, got, want)
		}
		if got := len(f.recv(4)); got != 0 {
			t.Fatalf("parity %d of block 32 reached 4, which asked for packet 32 by name", i)
		}
		drain(f)
	}
	// The repair of packet 32 by name goes to 4 only: parity did not retire
	// its range, and 2's block NACK does not widen it.
	f.send(t, 0, data(t, 32, headers.FlagRetransmit, 4))
	if got := len(f.recv(4)); got != 1 {
		t.Fatalf("repair of 32 by name: receiver 4 got %d copies, want 1", got)
	}
	if got := len(f.recv(2)); got != 0 {
		t.Fatalf("repair of 32 by name reached 2 %d times", got)
	}
	// Block 32 asked for again after its parity passed: up again.
	f.send(t, 2, blockNACK(t, 32, 2, 1))
	up(1, "block 32 after its parity went down")
}

// The suppression window of a range asked for follows the stream's repair
// delay (from a NACK going up to its first repair passing down): 1.5 times
// it, at least nack_window. On a path whose repairs take 20 ms, a second
// block NACK 10 ms after the first is suppressed, not sent up again.
func TestNACKWindowFollowsRepairDelay(t *testing.T) {
	f := newAggFabric(t, true)
	for seq := uint32(0); seq < 96; seq++ {
		f.send(t, 0, data(t, seq, 0, 1, 2, 3, 4))
	}
	drain(f)
	st := f.w.agg.stream(0<<16|1, false)
	if st == nil {
		t.Fatal("no stream state")
	}
	f.w.agg.cfg.NackWindow = 5 * time.Millisecond // the default (the fixture's is 1 s)
	f.send(t, 1, blockNACK(t, 0, 1, 1))
	if n := len(upstreamFrames(t, f)); n != 1 {
		t.Fatalf("%d block NACKs up", n)
	}
	time.Sleep(20 * time.Millisecond)
	f.send(t, 0, data(t, 0, headers.FlagRetransmit|headers.FlagParity, 1))
	drain(f)
	if st.repairDelay < int64(20*time.Millisecond) {
		t.Fatalf("repair delay %v after a 20 ms repair", time.Duration(st.repairDelay))
	}
	// Without a repair delay, a duplicate after nack_window goes up.
	st.repairDelay = 0
	f.send(t, 1, blockNACK(t, 32, 1, 2))
	time.Sleep(10 * time.Millisecond)
	f.send(t, 2, blockNACK(t, 32, 2, 2))
	if n := len(upstreamFrames(t, f)); n != 2 {
		t.Fatalf("no repair delay: %d block NACKs up, want 2", n)
	}
	// With one (set long, so machine load cannot outlast it), it is
	// suppressed.
	st.repairDelay = int64(10 * time.Second)
	f.send(t, 1, blockNACK(t, 64, 1, 2))
	time.Sleep(10 * time.Millisecond)
	f.send(t, 2, blockNACK(t, 64, 2, 2))
	f.send(t, 3, fb(t, headers.TypeNACK, 70, 3, 1, 3))
	time.Sleep(10 * time.Millisecond)
	f.send(t, 4, fb(t, headers.TypeNACK, 70, 4, 1, 4))
	if n := len(upstreamFrames(t, f)); n != 2 {
		t.Fatalf("repairs take 10 s: %d NACKs up, want 2 (one block, one by name)", n)
	}
}

// TestLaggardProgressReachesSource: a receiver that was late once (silent
// for ack_timeout) becomes an exception of the aggregate. Its own later
// ACKs must still reach the source, below the aggregate: before laggard
// reports it was named again only once it overtook the aggregate, which a
// slow receiver under steady load never does (on the 64-receiver veth lab
// receivers were credited 0-1 packets after hundreds of ACKs).
func TestLaggardProgressReachesSource(t *testing.T) {
	f := newAggFabricTimeout(t, true, 20*time.Millisecond)
	for seq := uint32(0); seq < 100; seq++ {
		f.send(t, 0, data(t, seq, 0, 1, 2))
	}
	drain(f)
	named := func(up []headers.SMH, seq uint32, ids ...uint16) bool {
		for _, h := range up {
			if h.Type() == headers.TypeACK && h.Sequence() == seq && slices.Equal(h.AppendReceivers(nil), ids) {
				return true
			}
		}
		return false
	}
	f.send(t, 1, fb(t, headers.TypeACK, 10, 1, 0))
	f.send(t, 2, fb(t, headers.TypeACK, 5, 2, 0))
	if up := upstreamFrames(t, f); len(up) != 1 || !named(up, 5, 1, 2) {
		t.Fatalf("first aggregate: %d frames, want one at 5", len(up))
	}
	time.Sleep(30 * time.Millisecond) // 2 is now a laggard
	f.send(t, 1, fb(t, headers.TypeACK, 10, 1, 0))
	if up := upstreamFrames(t, f); len(up) != 1 || !named(up, 10, 1) {
		t.Fatalf("aggregate past the laggard: %d frames %v", len(up), up)
	}
	// A small step alone waits for the next aggregate, and rides with it.
	f.send(t, 2, fb(t, headers.TypeACK, 8, 2, 0))
	if up := upstreamFrames(t, f); len(up) != 0 {
		t.Fatalf("a 3-packet step of a laggard went up alone: %d frames", len(up))
	}
	f.send(t, 1, fb(t, headers.TypeACK, 12, 1, 0))
	up := upstreamFrames(t, f)
	if len(up) != 2 || !named(up, 12, 1) || !named(up, 8, 2) {
		t.Fatalf("aggregate at 12 with receiver 2's 8: %d frames", len(up))
	}
	// A step of lagStep goes up alone, once ack_timeout has passed since
	// the last report; the same progress is not reported twice.
	f.send(t, 1, fb(t, headers.TypeACK, 60, 1, 0))
	if up := upstreamFrames(t, f); len(up) != 1 || !named(up, 60, 1) {
		t.Fatalf("aggregate at 60: %d frames", len(up))
	}
	time.Sleep(25 * time.Millisecond)
	f.send(t, 2, fb(t, headers.TypeACK, 45, 2, 0))
	f.send(t, 2, fb(t, headers.TypeACK, 45, 2, 0))
	up = upstreamFrames(t, f)
	if len(up) != 1 || !named(up, 45, 2) {
		t.Fatalf("laggard's step to 45: %d frames", len(up))
	}
	for _, h := range up {
		if h.Sequence() > 45 && slices.Contains(h.AppendReceivers(nil), 2) {
			t.Fatalf("receiver 2 credited with %d, it acknowledged 45", h.Sequence())
		}
	}
	// Caught up: back in the aggregate proper.
	f.send(t, 1, fb(t, headers.TypeACK, 100, 1, 0))
	f.send(t, 2, fb(t, headers.TypeACK, 100, 2, 0))
	up = upstreamFrames(t, f)
	if len(up) == 0 || !named(up[len(up)-1:], 100, 1, 2) {
		t.Fatalf("after catching up: %v", up)
	}
}
