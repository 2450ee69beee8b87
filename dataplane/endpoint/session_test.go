package endpoint

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/headers"
)

// memSwitch runs one in-memory switch with a host per ID, ids[i] on port
// hi; loss is the fault injector's loss on the ports towards receivers
// (every host but the first, the sender).
//
// The switch forwards feedback unchanged (feedback.aggregate: false), so
// these tests exercise the sender's handling of individual feedback; the
// aggregated path runs in perf's multi-switch fabric and in
// TestSenderAggregatedACK.
func memSwitch(t *testing.T, ids []uint16, loss float64) []*MemTransport {
	t.Helper()
	return memSwitchAgg(t, ids, loss, false)
}

// memSwitchAgg is memSwitch with feedback aggregation on or off.
func memSwitchAgg(t *testing.T, ids []uint16, loss float64, aggregate bool) []*MemTransport {
	t.Helper()
	cfg := &dataplane.Config{Name: "sw", PollMode: dataplane.PollAdaptive, Buffers: 4096, BufferSize: 2048 + dataplane.Headroom,
		Feedback: dataplane.FeedbackConfig{Aggregate: &aggregate}}
	var ports []dataplane.Port
	var trs []*MemTransport
	for i, id := range ids {
		name := fmt.Sprintf("h%d", i)
		swEnd, hostEnd := dataplane.NewMemPair(name, name+"-host", 1024, 2048)
		hostIP := netip.AddrFrom4([4]byte{10, 1, byte(i), 2})
		pc := dataplane.PortConfig{Name: name, Type: "mem", NeighborMAC: hostEnd.HardwareAddr().String(), NeighborIP: hostIP.String()}
		if i > 0 {
			pc.Fault = dataplane.FaultConfig{Loss: loss, Seed: uint64(i) + 7}
		}
		cfg.Ports = append(cfg.Ports, pc)
		cfg.Routes = append(cfg.Routes, dataplane.RouteEntry{Receivers: fmt.Sprint(id), Port: name})
		ports = append(ports, swEnd)
		tr, err := NewMemTransport(hostEnd, MemConfig{HostIP: hostIP, GatewayIP: netip.AddrFrom4([4]byte{10, 1, byte(i), 1}), GatewayMAC: swEnd.HardwareAddr()})
		if err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
	}
	cfg.Groups = []dataplane.GroupEntry{{ID: 77, Members: headers.FormatIDSet(ids[1:])}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tables, err := dataplane.TablesFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := dataplane.NewSwitch(cfg, ports, tables)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("switch: %v", err)
		}
	})
	return trs
}

// collector gathers the messages one receiver delivers.
type collector struct {
	mu   sync.Mutex
	msgs map[uint16][][]byte // by source
	cur  []byte
	err  error
	seqs []uint32
}

func (c *collector) deliver(d Delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.Start && len(c.cur) != 0 {
		c.err = fmt.Errorf("message start inside a message at seq %d", d.Seq)
	}
	if d.Start {
		c.cur = c.cur[:0]
	}
	c.cur = append(c.cur, d.Data...)
	c.seqs = append(c.seqs, d.Seq)
	if d.End {
		if c.msgs == nil {
			c.msgs = map[uint16][][]byte{}
		}
		c.msgs[d.Source] = append(c.msgs[d.Source], bytes.Clone(c.cur))
		c.cur = c.cur[:0]
	}
}

func startReceivers(t *testing.T, trs []*MemTransport, ids []uint16, window int) ([]*collector, func() []*SessionReport) {
	ctx, cancel := context.WithCancel(context.Background())
	cols := make([]*collector, len(ids))
	reps := make([]*SessionReport, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		cols[i] = &collector{}
		r, err := NewReliableReceiver(trs[i], SessionReceiverConfig{ID: id, Window: window, Deliver: cols[i].deliver})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := r.Run(ctx)
			if err != nil {
				t.Errorf("receiver %d: %v", id, err)
			}
			reps[i] = rep
		}()
	}
	stop := func() []*SessionReport {
		cancel()
		wg.Wait()
		return reps
	}
	t.Cleanup(func() { stop() })
	return cols, stop
}

func TestReliableFixedUnderLoss(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			ids := []uint16{100, 1, 2, 3, 70}
			trs := memSwitch(t, ids, 0.05)
			rcv := slices.Clone(ids[1:])
			slices.Sort(rcv)
			cols, stop := startReceivers(t, trs[1:], ids[1:], 1024)
			s, err := NewReliableSender(trs[0], SessionConfig{
				SourceID: 100, SessionID: 5, Receivers: rcv, UseGroup: group, Group: 77, FirstSeq: 4000000000,
				GiveUp: 5 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			small := []byte("manifest")
			big := make([]byte, 700_000)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range big {
				big[i] = byte(rng.Uint32())
			}
			if err := s.SendMessage(ctx, nil, small); err != nil {
				t.Fatal(err)
			}
			if err := s.SendMessageFrom(ctx, nil, bytes.NewReader(big), int64(len(big))); err != nil {
				t.Fatal(err)
			}
			if err := s.SendMessage(ctx, nil, nil); err != nil {
				t.Fatal(err)
			}
			rep, err := s.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Complete || len(rep.Receivers) != 4 {
				for _, r := range stop() {
					t.Logf("receiver %+v", r)
				}
				t.Fatalf("report %+v", rep)
			}
			if rep.Retransmissions == 0 || rep.NACKs == 0 {
				t.Errorf("5%% loss but %d retransmissions, %d NACKs", rep.Retransmissions, rep.NACKs)
			}
			reps := stop()
			for i, c := range cols {
				if c.err != nil {
					t.Errorf("receiver %d: %v", ids[i+1], c.err)
				}
				m := c.msgs[100]
				if len(m) != 3 || !bytes.Equal(m[0], small) || !bytes.Equal(m[1], big) || len(m[2]) != 0 {
					t.Errorf("receiver %d: %d messages, lens %v", ids[i+1], len(m), lens(m))
				}
				if !slices.IsSortedFunc(c.seqs, func(a, b uint32) int { return int(int32(a - b)) }) {
					t.Errorf("receiver %d: out-of-order delivery", ids[i+1])
				}
				if reps[i].Malformed != 0 || len(reps[i].Streams) != 1 || reps[i].Streams[0].NACKs == 0 {
					t.Errorf("receiver report %+v", reps[i])
				}
			}
			t.Logf("sender: %d packets, %d retransmissions, %d feedback, %d acks (%d aggregated), %d nacks, rate %.0f, srtt %v, %v",
				rep.Packets, rep.Retransmissions, rep.FeedbackPackets, rep.ACKs, rep.AggregatedACKs, rep.NACKs, rep.FinalRatePPS, rep.SRTT, rep.Elapsed)
		})
	}
}

func lens(m [][]byte) []int {
	var l []int
	for _, b := range m {
		l = append(l, len(b))
	}
	return l
}

func TestReliableChainUnderLoss(t *testing.T) {
	ids := []uint16{200, 1, 2, 3, 4, 5, 6, 7, 8}
	trs := memSwitch(t, ids, 0.05)
	cols, stop := startReceivers(t, trs[1:], ids[1:], 1024)
	s, err := NewReliableSender(trs[0], SessionConfig{SourceID: 200, SessionID: 1, Chain: true, MaxSet: 8, GiveUp: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rng := rand.New(rand.NewPCG(3, 4))
	want := map[uint16][][]byte{}
	set := make([]uint16, 0, 3)
	for tok := 0; tok < 3000; tok++ {
		set = set[:0]
		for _, j := range rng.Perm(8)[:3] {
			set = append(set, uint16(j+1))
		}
		slices.Sort(set)
		data := []byte(fmt.Sprintf("token %d to %v", tok, set))
		for _, id := range set {
			want[id] = append(want[id], data)
		}
		if err := s.SendMessage(ctx, set, data); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete {
		t.Fatalf("incomplete: %+v", rep.Receivers)
	}
	stop()
	for i, c := range cols {
		id := ids[i+1]
		got := c.msgs[200]
		if len(got) != len(want[id]) {
			t.Errorf("receiver %d: %d tokens, want %d", id, len(got), len(want[id]))
			continue
		}
		for j := range got {
			if !bytes.Equal(got[j], want[id][j]) {
				t.Errorf("receiver %d token %d: %q, want %q", id, j, got[j], want[id][j])
				break
			}
		}
	}
	t.Logf("sender: %d packets, %d retransmissions (%d NACK, %d RTO), %d feedback, %v", rep.Packets, rep.Retransmissions, rep.NACKRetransmits, rep.RTORetransmits, rep.FeedbackPackets, rep.Elapsed)
}

// TestReliableGiveUp: receiver 9 has a route but nobody listens; the
// others complete, 9 is reported failed.
func TestReliableGiveUp(t *testing.T) {
	ids := []uint16{50, 1, 9}
	trs := memSwitch(t, ids, 0)
	_, stop := startReceivers(t, trs[1:2], ids[1:2], 1024)
	defer stop()
	s, err := NewReliableSender(trs[0], SessionConfig{SourceID: 50, Receivers: []uint16{1, 9}, GiveUp: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.SendMessage(ctx, nil, make([]byte, 20000)); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Complete || !slices.Equal(rep.Failed(), []uint16{9}) {
		t.Fatalf("complete %v, failed %v", rep.Complete, rep.Failed())
	}
	if !rep.Receivers[0].Complete || !rep.Receivers[1].Failed {
		t.Errorf("receivers %+v", rep.Receivers)
	}
}

// Two transfers in a row on one source and session, each a new sender
// starting at sequence 0, through a switch that aggregates feedback and
// receivers that keep running: both complete byte-exact (issue 13: the
// second one's ACKs were absorbed against the first's state and it never
// completed). Each transfer is its own stream at the receivers, under the
// sender's epoch.
func TestTransfersInARowOneSession(t *testing.T) {
	ids := []uint16{100, 1, 2, 3}
	trs := memSwitchAgg(t, ids, 0.02, true)
	cols, stop := startReceivers(t, trs[1:], ids[1:], 1024)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rng := rand.New(rand.NewPCG(3, 4))
	var sent [][]byte
	var epochs []uint32
	for i, size := range []int{300_000, 200_000, 100_000} {
		s, err := NewReliableSender(trs[0], SessionConfig{SourceID: 100, SessionID: 9, Receivers: ids[1:], GiveUp: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		if err := s.SendMessageFrom(ctx, nil, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		rep, err := s.Flush(ctx)
		if err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
		if !rep.Complete || rep.Epoch == 0 || rep.AggregatedACKs == 0 {
			t.Fatalf("transfer %d: complete %v, epoch %#x, %d aggregated ACKs (%d stale feedback)", i, rep.Complete, rep.Epoch, rep.AggregatedACKs, rep.StaleFeedback)
		}
		sent, epochs = append(sent, data), append(epochs, rep.Epoch)
	}
	if epochs[0] == epochs[1] || epochs[1] == epochs[2] {
		t.Fatalf("senders drew the same epoch: %#x", epochs)
	}
	reps := stop()
	for i, c := range cols {
		if c.err != nil {
			t.Errorf("receiver %d: %v", ids[i+1], c.err)
		}
		m := c.msgs[100]
		if len(m) != len(sent) {
			t.Fatalf("receiver %d: %d messages, want %d", ids[i+1], len(m), len(sent))
		}
		for k := range sent {
			if !bytes.Equal(m[k], sent[k]) {
				t.Errorf("receiver %d: transfer %d differs (%d bytes, want %d)", ids[i+1], k, len(m[k]), len(sent[k]))
			}
		}
		st := reps[i].Streams
		if len(st) != len(sent) {
			t.Fatalf("receiver %d: %d streams, want one per transfer", ids[i+1], len(st))
		}
		for k := range st {
			if st[k].Epoch != epochs[k] || st[k].Session != 9 || st[k].Bytes != uint64(len(sent[k])) {
				t.Errorf("receiver %d stream %d: epoch %#x session %d bytes %d, want epoch %#x, %d bytes", ids[i+1], k, st[k].Epoch, st[k].Session, st[k].Bytes, epochs[k], len(sent[k]))
			}
		}
	}
}
