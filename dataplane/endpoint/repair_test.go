package endpoint

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

func nack(seq uint32, count uint16, flags headers.Flags, ids ...uint16) []byte {
	b := make([]byte, 256)
	n := headers.PutHeader(b, headers.Fields{Type: headers.TypeNACK, Flags: flags, HopLimit: 4, SourceID: 7, SessionID: 3, Epoch: testEpoch,
		Sequence: seq, Count: count, SpeaksFor: uint16(len(ids)), ReporterID: ids[0]}, ids)
	return b[:n]
}

// repairsSent returns the DATA repairs among the datagrams sent.
func repairsSent(p *pipeTransport) []headers.SMH {
	var out []headers.SMH
	for _, d := range p.sent {
		if h := headers.SMH(d); h.Validate() == nil && h.Flags()&headers.FlagRetransmit != 0 {
			out = append(out, h)
		}
	}
	return out
}

// TestSenderMergesNACKs: NACKs for the same packet from receivers under
// different leaves, heard within the repair window, cost one repair
// addressed to all of them (within the packet's set, less whoever
// acknowledged it).
func TestSenderMergesNACKs(t *testing.T) {
	p := &pipeTransport{}
	s, err := NewReliableSender(p, SessionConfig{SourceID: 7, SessionID: 3, Epoch: testEpoch, Receivers: []uint16{1, 2, 64, 65, 128},
		CC: CCConfig{InitialRate: 1e6, MaxRate: 1e6}, RepairWindow: time.Second, FECBlock: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMessage(context.Background(), nil, make([]byte, 6*1000)); err != nil {
		t.Fatal(err)
	}
	p.sent = nil
	p.in = append(p.in, nack(2, 1, 0, 1), nack(1, 3, 0, 64, 65), nack(2, 1, 0, 128, 300))
	s.poll()
	if r := repairsSent(p); len(r) != 0 {
		t.Fatalf("%d repairs sent before the window ended", len(r))
	}
	if s.rep.MergedRequests != 2 {
		t.Errorf("merged requests %d, want 2 (64/65's and 128's NACKs of 2 joined 1's)", s.rep.MergedRequests)
	}
	// 64 acknowledges packets 0-2 meanwhile: their repairs leave it out.
	p.in = append(p.in, ack(3, 1, 64, nil))
	s.poll()
	s.flushRepairs(s.now + int64(2*time.Second))
	r := repairsSent(p)
	if len(r) != 3 {
		t.Fatalf("%d repairs, want 3 (packets 1, 2, 3 once each)", len(r))
	}
	want := map[uint32][]uint16{1: {65}, 2: {1, 65, 128}, 3: {64, 65}}
	for _, h := range r {
		if ids := h.AppendReceivers(nil); !slices.Equal(ids, want[h.Sequence()]) {
			t.Errorf("repair of %d to %v, want %v", h.Sequence(), ids, want[h.Sequence()])
		}
	}
	if s.rep.NACKRetransmits != 3 || s.rep.Retransmissions != 3 {
		t.Errorf("nack retransmissions %d, retransmissions %d", s.rep.NACKRetransmits, s.rep.Retransmissions)
	}
	// Once sent, a new NACK for the same packet is a new repair.
	p.sent = nil
	p.in = append(p.in, nack(2, 1, 0, 2))
	s.poll()
	s.flushRepairs(s.now + int64(2*time.Second))
	if r := repairsSent(p); len(r) != 1 || !slices.Equal(r[0].AppendReceivers(nil), []uint16{2}) {
		t.Errorf("second NACK: %d repairs", len(r))
	}
}

// TestNACKWithdrawsCredit: an aggregate credits 1 up to 5 (2 has
// acknowledged 0-1, so 2 on are kept); 1's own NACK for 3 says it lacks 3:
// its ACK goes back to 3, and 3 and 4 are repaired to it.
func TestNACKWithdrawsCredit(t *testing.T) {
	p := &pipeTransport{}
	s, err := NewReliableSender(p, SessionConfig{SourceID: 7, SessionID: 3, Epoch: testEpoch, Receivers: []uint16{1, 2},
		CC: CCConfig{InitialRate: 1e6, MaxRate: 1e6}, RepairWindow: -1, FECBlock: -1,
		MinRTO: time.Minute, MaxRTO: time.Minute, GiveUp: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMessage(context.Background(), nil, make([]byte, 8*1000)); err != nil {
		t.Fatal(err)
	}
	p.sent = nil
	p.in = append(p.in, ack(5, 1, 900, []uint16{1}), ack(2, 1, 2, nil), nack(3, 2, 0, 1))
	s.poll()
	if s.rep.CreditsWithdrawn != 1 {
		t.Fatalf("credits withdrawn %d, want 1", s.rep.CreditsWithdrawn)
	}
	r := repairsSent(p)
	if len(r) != 2 || r[0].Sequence() != 3 || r[1].Sequence() != 4 {
		t.Fatalf("%d repairs, want 3 and 4 to receiver 1", len(r))
	}
	for _, h := range r {
		if ids := h.AppendReceivers(nil); !slices.Equal(ids, []uint16{1}) {
			t.Errorf("repair of %d to %v, want [1]", h.Sequence(), ids)
		}
	}
	rep := s.Report()
	for _, c := range rep.Receivers {
		if c.ID == 1 && c.Acked != 3 {
			t.Errorf("receiver 1 acked %d, want 3", c.Acked)
		}
	}
	if s.head != 2 {
		t.Errorf("head %d, want 2", s.head)
	}
}
