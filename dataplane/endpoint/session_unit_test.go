package endpoint

import (
	"context"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

// pipeTransport records what a session sends and replays queued datagrams.
type pipeTransport struct {
	sent [][]byte
	in   [][]byte
	st   TransportStats
}

func (p *pipeTransport) Send(b []byte) error {
	p.sent = append(p.sent, append([]byte(nil), b...))
	p.st.countSend(b)
	return nil
}

func (p *pipeTransport) Recv(b []byte, deadline time.Time) (int, error) {
	if len(p.in) == 0 {
		return 0, ErrTimeout
	}
	n := copy(b, p.in[0])
	p.in = p.in[1:]
	p.st.countRecv(b[:n])
	return n, nil
}

func (p *pipeTransport) Stats() TransportStats { return p.st }
func (p *pipeTransport) Close() error          { return nil }

// testEpoch is the Transfer Epoch the unit tests' senders are forced to.
const testEpoch = 0x7E57

func ack(x uint32, speaks, reporter uint16, exc []uint16) []byte {
	b := make([]byte, 256)
	n := headers.PutHeader(b, headers.Fields{Type: headers.TypeACK, HopLimit: 4, SourceID: 7, SessionID: 3, Sequence: x, Epoch: testEpoch, SpeaksFor: speaks, ReporterID: reporter}, exc)
	return b[:n]
}

// TestSenderAggregatedACK checks how ACKs move receivers: individually, and
// as an aggregate naming the receivers it speaks for (names the stream never
// addressed are ambiguous and move no one).
func TestSenderAggregatedACK(t *testing.T) {
	p := &pipeTransport{}
	// Repairs at once (RepairWindow < 0): TestSenderMergesNACKs holds them.
	s, err := NewReliableSender(p, SessionConfig{SourceID: 7, SessionID: 3, Epoch: testEpoch, Receivers: []uint16{1, 2, 3, 4},
		CC: CCConfig{InitialRate: 1e6, MaxRate: 1e6}, RepairWindow: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.SendMessage(ctx, nil, make([]byte, 10*1442+1)); err != nil {
		t.Fatal(err)
	}
	if s.next != 11 {
		t.Fatalf("sent %d packets", s.next)
	}
	acked := func() []uint32 {
		var a []uint32
		for _, r := range s.Report().Receivers {
			a = append(a, r.Acked)
		}
		return a
	}
	stale := headers.Fields{Type: headers.TypeACK, HopLimit: 4, SourceID: 7, SessionID: 3, Sequence: 11, SpeaksFor: 4, ReporterID: 0xFFFF}
	var old, none [64]byte
	stale.Epoch = testEpoch + 1
	nOld := headers.PutHeader(old[:], stale, []uint16{1, 2, 3, 4})
	stale.Epoch = 0
	nNone := headers.PutHeader(none[:], stale, []uint16{1, 2, 3, 4})
	p.in = append(p.in,
		old[:nOld], none[:nNone], // another transfer's, and one without an epoch: stale
		ack(5, 1, 2, nil),                     // individual: 2 -> 5
		ack(8, 2, 0xFFFF, nil),                // no set, reporter not a receiver: ambiguous
		ack(9, 3, 0xFFFF, []uint16{1, 2, 4}),  // aggregate: 1, 2 and 4 -> 9
		ack(12, 4, 0xFFFF, []uint16{1, 2, 3}), // beyond what was sent: bad
		ack(11, 1, 99, nil),                   // unknown reporter: ambiguous
		ack(11, 1, 3, nil),                    // individual: 3 -> 11
		ack(10, 2, 0xFFFF, []uint16{3, 77}),   // 3 is ahead already; 77 never addressed: ambiguous
	)
	s.poll()
	if got, want := acked(), []uint32{9, 9, 11, 9}; !equalU32(got, want) {
		t.Fatalf("acks %v, want %v", got, want)
	}
	rep := s.Report()
	if rep.AmbiguousACKs != 3 || rep.BadFeedback != 1 || rep.AggregatedACKs != 2 || s.head != 9 || rep.StaleFeedback != 2 || rep.Epoch != testEpoch {
		t.Errorf("ambiguous %d, bad %d, aggregated %d, head %d, stale %d, epoch %#x", rep.AmbiguousACKs, rep.BadFeedback, rep.AggregatedACKs, s.head, rep.StaleFeedback, rep.Epoch)
	}
	// A NACK from 1 and 4 for 9-10 repairs exactly them, with R.
	b := make([]byte, 256)
	n := headers.PutHeader(b, headers.Fields{Type: headers.TypeNACK, HopLimit: 4, SourceID: 7, SessionID: 3, Sequence: 9, Epoch: testEpoch, Count: 2, SpeaksFor: 2, ReporterID: 0xFFFF}, []uint16{1, 4, 9})
	p.sent = nil
	p.in = append(p.in, b[:n])
	s.poll()
	if len(p.sent) != 2 {
		t.Fatalf("%d retransmissions, want 2", len(p.sent))
	}
	for i, d := range p.sent {
		h := headers.SMH(d)
		if h.Sequence() != uint32(9+i) || h.Flags()&headers.FlagRetransmit == 0 || h.Epoch() != testEpoch {
			t.Errorf("retransmission %d: seq %d flags %x", i, h.Sequence(), h.Flags())
		}
		if ids := h.AppendReceivers(nil); len(ids) != 2 || ids[0] != 1 || ids[1] != 4 {
			t.Errorf("retransmission %d to %v, want [1 4]", i, ids)
		}
	}
	if headers.SMH(p.sent[1]).Flags()&headers.FlagFinal == 0 {
		t.Error("last packet of the message lacks F")
	}
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParsePayload(t *testing.T) {
	p := make([]byte, PayloadHeaderLen+3*ChainEntryLen+4)
	putPayloadHeader(p, ModeChain, 3, 0)
	putChainEntry(p, 0, 2, 90)
	putChainEntry(p, 1, 5, 100)
	putChainEntry(p, 2, 9, 95)
	copy(p[PayloadHeaderLen+3*ChainEntryLen:], "data")
	for _, tc := range []struct {
		id     uint16
		prev   uint32
		head   bool
		status int
	}{{2, 90, false, payloadOK}, {5, 100, true, payloadOK}, {9, 95, false, payloadOK}, {3, 0, false, payloadNotInChain}, {10, 0, false, payloadNotInChain}} {
		prev, head, data, fixed, _, st := parsePayload(p, tc.id, 100)
		if st != tc.status || (st == payloadOK && (prev != tc.prev || head != tc.head || string(data) != "data" || fixed)) {
			t.Errorf("id %d: prev %d head %v data %q status %d", tc.id, prev, head, data, st)
		}
	}
	if _, _, _, _, _, st := parsePayload(p[:10], 2, 100); st != payloadShort {
		t.Errorf("short chain: status %d", st)
	}
	putPayloadHeader(p, ModeFixed, 0, 50)
	if prev, head, _, fixed, base, _ := parsePayload(p, 1, 50); !head || !fixed || base != 50 || prev != 50 {
		t.Error("fixed head")
	}
	if prev, head, _, _, _, _ := parsePayload(p, 1, 60); head || prev != 59 {
		t.Error("fixed prev")
	}
	p[0] = 2 << 4
	if _, _, _, _, _, st := parsePayload(p, 1, 60); st != payloadBadVersion {
		t.Error("bad version accepted")
	}
}

// TestUDPTransport: DATA leaves from the stream's entropy port, feedback
// from the listening port; Recv waits until its deadline and no longer.
func TestUDPTransport(t *testing.T) {
	gw, err := NewUDPTransport(UDPConfig{Listen: "127.0.0.1:0", Gateway: "127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	h, err := NewUDPTransport(UDPConfig{Listen: "127.0.0.1:0", Gateway: gw.LocalAddr().String(), Data: true, Local: "127.0.0.1", SourceID: 4, SessionID: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.DataAddr().Port() != SourcePort(4, 5) {
		t.Errorf("DATA port %d, want %d", h.DataAddr().Port(), SourcePort(4, 5))
	}
	buf := make([]byte, 2048)
	start := time.Now()
	if _, err := gw.Recv(buf, start.Add(30*time.Millisecond)); err != ErrTimeout || time.Since(start) < 25*time.Millisecond {
		t.Fatalf("empty Recv: %v after %v", err, time.Since(start))
	}
	data := make([]byte, 64)
	n := headers.PutHeader(data, headers.Fields{SourceID: 4, SessionID: 5, HopLimit: 1}, []uint16{1})
	if err := h.Send(data[:n+8]); err != nil {
		t.Fatal(err)
	}
	fb := ack(3, 1, 1, nil)
	if err := h.Send(fb); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{n + 8, len(fb)} {
		got, err := gw.Recv(buf, time.Now().Add(2*time.Second))
		if err != nil || got != want {
			t.Fatalf("datagram %d: %d bytes, %v; want %d", i, got, err, want)
		}
	}
	st := h.Stats()
	if st.SentData != 1 || st.SentFeedback != 1 || gw.Stats().Received != 2 {
		t.Errorf("stats %+v / %+v", st, gw.Stats())
	}
	// A receiver-only transport refuses DATA.
	if err := gw.Send(data[:n+8]); err != ErrNoDataSocket {
		t.Errorf("DATA without a DATA socket: %v", err)
	}
	if _, err := NewUDPTransport(UDPConfig{Gateway: "0.0.0.0"}); err == nil {
		t.Error("unspecified gateway accepted")
	}
}

// TestSessionsDoNotAllocate: in the steady state a packet's trip through
// the sender (send, ACK, free) and the receiver (deliver, ACK) allocates
// nothing.
func TestSessionsDoNotAllocate(t *testing.T) {
	sp := &pipeTransport{}
	s, err := NewReliableSender(sp, SessionConfig{SourceID: 7, SessionID: 3, Receivers: []uint16{1}, CC: CCConfig{InitialRate: 1e6, MaxRate: 1e6, Fixed: true}})
	if err != nil {
		t.Fatal(err)
	}
	rp := &pipeTransport{}
	delivered := 0
	r, err := NewReliableReceiver(rp, SessionReceiverConfig{ID: 1, Deliver: func(Delivery) { delivered++ }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msg := make([]byte, 1000)
	ackBuf := make([]byte, 64)
	step := func() {
		sp.sent = sp.sent[:0]
		if err := s.SendMessage(ctx, nil, msg); err != nil {
			t.Fatal(err)
		}
		r.clock()
		r.handle(sp.sent[0])
		r.timers(r.now)
		// Acknowledge at once, as a receiver would every 32 packets.
		n := putFeedback(ackBuf, headers.TypeACK, 7, 3, s.cfg.Epoch, 1, s.next, 0, 4)
		s.handle(ackBuf[:n])
	}
	for i := 0; i < 2000; i++ { // warm up: streams, pages, scratch capacity
		step()
	}
	// pipeTransport copies what is sent; reuse its buffers.
	buf := make([]byte, 2048)
	sp2 := &reusePipe{buf: buf}
	s.tr = sp2
	r.tr = &reusePipe{buf: make([]byte, 2048)}
	step2 := func() {
		if err := s.SendMessage(ctx, nil, msg); err != nil {
			t.Fatal(err)
		}
		r.clock()
		r.handle(sp2.buf[:sp2.n])
		r.timers(r.now)
		n := putFeedback(ackBuf, headers.TypeACK, 7, 3, s.cfg.Epoch, 1, s.next, 0, 4)
		s.handle(ackBuf[:n])
	}
	if a := testing.AllocsPerRun(2000, step2); a != 0 {
		t.Errorf("%v allocations per packet", a)
	}
	if delivered < 4000 || s.Outstanding() != 0 {
		t.Errorf("delivered %d, outstanding %d", delivered, s.Outstanding())
	}
}

type reusePipe struct {
	buf []byte
	n   int
	st  TransportStats
}

func (p *reusePipe) Send(b []byte) error {
	p.n = copy(p.buf, b)
	return nil
}
func (p *reusePipe) Recv([]byte, time.Time) (int, error) { return 0, ErrTimeout }
func (p *reusePipe) Stats() TransportStats               { return p.st }
func (p *reusePipe) Close() error                        { return nil }

// A receiver keeps one stream per (source, session, epoch): a new sender on
// the same session is a new stream, every feedback echoes its stream's
// epoch, and the superseded stream's window is freed once idle.
func TestReceiverStreamPerEpoch(t *testing.T) {
	rp := &pipeTransport{}
	var got [][]byte
	r, err := NewReliableReceiver(rp, SessionReceiverConfig{ID: 1, Window: 64, AckEvery: 1,
		Deliver: func(d Delivery) { got = append(got, append([]byte{byte(d.Epoch)}, d.Data...)) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, epoch := range []uint32{0xA, 0xB} {
		sp := &pipeTransport{}
		s, err := NewReliableSender(sp, SessionConfig{SourceID: 7, SessionID: 3, Epoch: epoch, Receivers: []uint16{1}, Window: 64})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMessage(ctx, nil, []byte{byte(epoch), byte(epoch)}); err != nil {
			t.Fatal(err)
		}
		rp.sent = nil
		for _, d := range sp.sent {
			if h := headers.SMH(d); h.Epoch() != epoch || !h.HasEpoch() {
				t.Fatalf("sender of epoch %#x sent DATA of epoch %#x", epoch, h.Epoch())
			}
			r.clock()
			r.handle(d)
			r.timers(r.now)
		}
		if len(rp.sent) == 0 {
			t.Fatalf("epoch %#x: no feedback", epoch)
		}
		for _, fb := range rp.sent {
			if h := headers.SMH(fb); h.Epoch() != epoch || h.Type() != headers.TypeACK || h.Sequence() != 1 {
				t.Fatalf("feedback %+v, want ACK 1 of epoch %#x", h.Fields(), epoch)
			}
		}
	}
	if len(got) != 2 || got[0][0] != 0xA || got[1][0] != 0xB || got[1][1] != 0xB {
		t.Fatalf("deliveries %x, want epoch A's message then B's", got)
	}
	rep := r.Report()
	if len(rep.Streams) != 2 || rep.Streams[0].Epoch != 0xA || rep.Streams[1].Epoch != 0xB {
		t.Fatalf("streams %+v, want epochs A then B", rep.Streams)
	}
	a, b := r.streams[streamKey(7, 3, 0xA)], r.streams[streamKey(7, 3, 0xB)]
	r.timers(a.lastData + int64(retireAfter) - 1)
	if a.slots == nil {
		t.Fatal("the superseded stream's window was freed before it was idle for retireAfter")
	}
	r.timers(a.lastData + int64(retireAfter))
	if a.slots != nil || b.slots == nil {
		t.Fatalf("after retireAfter: old window freed %v, new one kept %v", a.slots == nil, b.slots != nil)
	}
}

// TestWindowStopsAtBlockEnds: with parity, a sender the window stops has
// sent whole blocks only (a stream stopping inside a block makes receivers
// NACK its losses by name); without parity it fills the window.
func TestWindowStopsAtBlockEnds(t *testing.T) {
	for _, c := range []struct {
		fec, want int
	}{
		// Window 64, block 16: limit 48 in flight, a block starts only
		// with 16 free: 48 packets, three whole blocks.
		{16, 48},
		// Block 12: limit 52; blocks start at 0, 12, 24, 36 (36+12 <= 52),
		// not at 48: 48 packets, where the window alone let 52 out.
		{12, 48},
		{-1, 64},
	} {
		p := &pipeTransport{}
		s, err := NewReliableSender(p, SessionConfig{SourceID: 7, SessionID: 3, Epoch: testEpoch, Receivers: []uint16{1},
			CC: CCConfig{InitialRate: 1e6, MaxRate: 1e6}, Window: 64, FECBlock: c.fec, GiveUp: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_ = s.SendMessage(ctx, nil, make([]byte, 100*1442)) // no ACK comes: it stops at the window
		cancel()
		if got := int(s.next); got != c.want {
			t.Errorf("FECBlock %d: %d packets out before the window stopped it, want %d", c.fec, got, c.want)
		}
	}
}
