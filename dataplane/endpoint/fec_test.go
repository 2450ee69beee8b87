package endpoint

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

// A block of symbols, the last one short and final, round-trips through
// parity: any K of the block's packets and parity rebuild the rest, app
// length and F included.
func TestParityRoundTrip(t *testing.T) {
	const k, p, size = 5, 4, 64
	srcs := make([][]byte, k)
	for i := range srcs {
		srcs[i] = bytes.Repeat([]byte{byte(i + 1)}, size)
	}
	srcs[k-1] = []byte("short and final")
	var c codecs
	enc, err := c.get(k, p)
	if err != nil {
		t.Fatal(err)
	}
	L := ShardHeaderLen + size
	shards := make([][]byte, k+p)
	for i := range shards {
		shards[i] = make([]byte, L)
		if i < k {
			putShard(shards[i], srcs[i], i == k-1)
		}
	}
	if err := enc.Encode(shards); err != nil {
		t.Fatal(err)
	}
	// The sender computes parity in growing chunks: the first rows of a
	// larger code must be the rows of the smaller one.
	big, _ := c.get(k, 2*p)
	bs := make([][]byte, k+2*p)
	for i := range bs {
		bs[i] = make([]byte, L)
		if i < k {
			copy(bs[i], shards[i])
		}
	}
	if err := big.Encode(bs); err != nil {
		t.Fatal(err)
	}
	for j := 0; j < p; j++ {
		if !bytes.Equal(bs[k+j], shards[k+j]) {
			t.Fatalf("parity row %d differs between a (%d,%d) and a (%d,%d) code", j, k, p, k, 2*p)
		}
	}
	// Lose packets 1, 3 and 4 (the short final one); keep parity 0, 2, 3.
	got := make([][]byte, k+p)
	got[0], got[2] = shards[0], shards[2]
	got[k], got[k+2], got[k+3] = shards[k], shards[k+2], shards[k+3]
	for _, i := range []int{1, 3, 4} {
		got[i] = make([]byte, 0, L)
	}
	if err := enc.ReconstructData(got); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < k; i++ {
		data, final, err := shardData(got[i])
		if err != nil || !bytes.Equal(data, srcs[i]) || final != (i == k-1) {
			t.Fatalf("symbol %d: %q final %v err %v", i, data, final, err)
		}
	}
	// A length beyond the shard, or unknown flags, is refused.
	bad := slices.Clone(shards[0])
	bad[0], bad[1] = 0xFF, 0xFF
	if _, _, err := shardData(bad); err == nil {
		t.Error("shard with a length past its end accepted")
	}
	bad = slices.Clone(shards[0])
	bad[2] = 0x80
	if _, _, err := shardData(bad); err == nil {
		t.Error("shard with unknown flags accepted")
	}
}

// TestReceiverRecoversFromParity: the sender answers block NACKs with
// parity; a receiver that lost different packets of two blocks (one of
// them the short final packet, past the last one it saw) rebuilds them and
// delivers every packet once, in order. Its own NACK for a block that ended
// is a block NACK.
func TestReceiverRecoversFromParity(t *testing.T) {
	sp := &pipeTransport{}
	s, err := NewReliableSender(sp, SessionConfig{SourceID: 7, SessionID: 3, Epoch: testEpoch, Receivers: []uint16{1, 2},
		CC: CCConfig{InitialRate: 1e6, MaxRate: 1e6}, FECBlock: 4, FECParity: 4, FirstSeq: 100,
		MinRTO: time.Minute, MaxRTO: time.Minute, GiveUp: time.Hour}) // only feedback moves it
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 11*s.MaxAppData(2)+17) // 12 packets, the last one short
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	if err := s.SendMessage(context.Background(), nil, msg); err != nil {
		t.Fatal(err)
	}
	if s.next != 112 {
		t.Fatalf("sent %d packets, want 12", s.next-100)
	}
	orig := sp.sent
	sp.sent = nil

	rp := &pipeTransport{}
	var got []byte
	var seqs []uint32
	r, err := NewReliableReceiver(rp, SessionReceiverConfig{ID: 1, Deliver: func(d Delivery) {
		got = append(got, d.Data...)
		seqs = append(seqs, d.Seq)
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.clock()
	lost := map[uint32]bool{105: true, 106: true, 109: true, 111: true}
	for _, d := range orig {
		if !lost[headers.SMH(d).Sequence()] {
			r.handle(d)
		}
	}
	t0 := r.clock()
	r.timers(t0)
	for _, d := range rp.sent {
		if h := headers.SMH(d); h.Type() == headers.TypeNACK && h.Flags()&headers.FlagParity != 0 {
			t.Fatalf("block NACK(%d) before its random back-off", h.Sequence())
		}
	}
	// The first block NACK goes within one NACK back-off.
	r.timers(t0 + int64(r.cfg.NackRepeat))
	var asked bool
	for _, d := range rp.sent {
		h := headers.SMH(d)
		if h.Type() == headers.TypeNACK && h.Flags()&headers.FlagParity != 0 && h.Sequence() == 104 && h.FeedbackCount() == 2 {
			asked = true
		}
		if h.Type() == headers.TypeNACK && h.Flags()&headers.FlagParity == 0 && h.Sequence() < 108 {
			t.Errorf("NACK by name for %d in an ended block", h.Sequence())
		}
	}
	if !asked {
		t.Fatal("no block NACK(104, 2)")
	}
	// The sender hears block NACKs for both blocks (and a second receiver's
	// for the first block, merged).
	sp.in = append(sp.in, nack(104, 2, headers.FlagParity, 1), nack(104, 1, headers.FlagParity, 2), nack(108, 2, headers.FlagParity, 1))
	s.poll()
	s.flushRepairs(s.now + int64(1e9))
	par := repairsSent(sp)
	if len(par) != 4 || s.rep.ParityRepairs != 4 || s.rep.MergedRequests != 1 {
		t.Fatalf("%d repairs (%d parity, %d merged), want 4 parity", len(par), s.rep.ParityRepairs, s.rep.MergedRequests)
	}
	for _, h := range par {
		if h.Flags()&headers.FlagParity == 0 || !isParityPayload(h.Payload()) {
			t.Fatalf("repair %+v is not parity", h.Fields())
		}
	}
	if ids := par[0].AppendReceivers(nil); !slices.Equal(ids, []uint16{1, 2}) {
		t.Errorf("parity of block 104 to %v, want [1 2]", ids)
	}
	for _, h := range par {
		r.handle(h)
	}
	want := make([]uint32, 12)
	for i := range want {
		want[i] = 100 + uint32(i)
	}
	if !slices.Equal(seqs, want) || !bytes.Equal(got, msg) {
		t.Fatalf("delivered %v (%d bytes), want %v (%d bytes)", seqs, len(got), want, len(msg))
	}
	st := r.Report().Streams[0]
	if st.Recovered != 4 || st.ParityReceived != 4 || r.rep.Malformed != 0 {
		t.Errorf("recovered %d from %d parity, %d malformed", st.Recovered, st.ParityReceived, r.rep.Malformed)
	}
	// Parity of a block delivered already is useless, not a duplicate
	// delivery.
	r.handle(par[0])
	if len(seqs) != 12 || r.Report().Streams[0].ParityUseless != 1 {
		t.Errorf("late parity: %d deliveries, %d useless", len(seqs), r.Report().Streams[0].ParityUseless)
	}
}

// TestBlockNACKHoldoff: parity goes to every receiver missing the block,
// not only the one that asked; a block NACK heard within the holdoff after
// parity went out asks only for what exceeds it (NORM's holdoff): one
// asking no more is stale and costs nothing, one asking more gets the
// difference; after the holdoff a NACK is answered in full again.
func TestBlockNACKHoldoff(t *testing.T) {
	sp := &pipeTransport{}
	s, err := NewReliableSender(sp, SessionConfig{SourceID: 7, SessionID: 3, Epoch: testEpoch, Receivers: []uint16{1, 2, 3},
		CC: CCConfig{InitialRate: 1e6, MaxRate: 1e6, Fixed: true}, FECBlock: 4, FECParity: 8, FirstSeq: 100,
		MinRTO: time.Minute, MaxRTO: time.Minute, GiveUp: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMessage(context.Background(), nil, make([]byte, 8*s.MaxAppData(3))); err != nil {
		t.Fatal(err)
	}
	s.srtt, s.hasRTT = int64(time.Hour), true // the holdoff outlasts the test
	parity := func(in ...[]byte) []headers.SMH {
		sp.sent = nil
		sp.in = append(sp.in, in...)
		s.poll()
		s.flushRepairs(s.now + int64(time.Hour))
		return repairsSent(sp)
	}
	par := parity(nack(100, 2, headers.FlagParity, 1))
	if len(par) != 2 {
		t.Fatalf("%d parity for a NACK of 2", len(par))
	}
	if ids := par[0].AppendReceivers(nil); !slices.Equal(ids, []uint16{1, 2, 3}) {
		t.Errorf("parity to %v, want every receiver that has not acknowledged the block [1 2 3]", ids)
	}
	if par := parity(nack(100, 2, headers.FlagParity, 2)); len(par) != 0 || s.rep.StaleBlockNACKs != 1 {
		t.Fatalf("a NACK of 2 within the holdoff: %d parity, %d stale; want 0, 1", len(par), s.rep.StaleBlockNACKs)
	}
	if par := parity(nack(100, 3, headers.FlagParity, 3)); len(par) != 1 {
		t.Fatalf("a NACK of 3 within the holdoff of 2 sent: %d parity, want 1", len(par))
	}
	// A receiver that acknowledged the block gets no more of its parity.
	sp.in = append(sp.in, ack(104, 1, 3, nil))
	s.block(100).sentAt -= 2 * int64(time.Hour) // the holdoff ran out
	par = parity(nack(100, 2, headers.FlagParity, 1))
	if len(par) != 2 {
		t.Fatalf("a NACK of 2 after the holdoff: %d parity, want 2", len(par))
	}
	if ids := par[0].AppendReceivers(nil); !slices.Equal(ids, []uint16{1, 2}) {
		t.Errorf("parity to %v, want [1 2]", ids)
	}
	if s.rep.ParityRepairs != 5 {
		t.Errorf("%d parity repairs, want 5", s.rep.ParityRepairs)
	}
}

// TestParityRestartsBlockNACKBackoff: a receiver that hears parity of a
// block it still cannot rebuild waits a full NACK back-off from then
// before asking again (the rest of the round may be on its way), rather
// than asking at the back-off of its last NACK.
func TestParityRestartsBlockNACKBackoff(t *testing.T) {
	sp := &pipeTransport{}
	s, err := NewReliableSender(sp, SessionConfig{SourceID: 7, SessionID: 3, Epoch: testEpoch, Receivers: []uint16{1},
		CC: CCConfig{InitialRate: 1e6, MaxRate: 1e6, Fixed: true}, FECBlock: 4, FECParity: 4, FirstSeq: 100,
		MinRTO: time.Minute, MaxRTO: time.Minute, GiveUp: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMessage(context.Background(), nil, make([]byte, 8*s.MaxAppData(1))); err != nil {
		t.Fatal(err)
	}
	orig := sp.sent
	rp := &pipeTransport{}
	r, err := NewReliableReceiver(rp, SessionReceiverConfig{ID: 1, Deliver: func(Delivery) {}})
	if err != nil {
		t.Fatal(err)
	}
	r.clock()
	for _, d := range orig {
		if q := headers.SMH(d).Sequence(); q != 101 && q != 102 {
			r.handle(d)
		}
	}
	blockNACKs := func() int {
		n := 0
		for _, d := range rp.sent {
			if h := headers.SMH(d); h.Type() == headers.TypeNACK && h.Flags()&headers.FlagParity != 0 {
				n++
			}
		}
		return n
	}
	rep := int64(r.cfg.NackRepeat)
	t0 := r.now
	r.timers(t0)       // the block ended: its first NACK's random back-off starts
	r.timers(t0 + rep) // and has run out
	if blockNACKs() != 1 {
		t.Fatalf("%d block NACKs, want 1", blockNACKs())
	}
	sent := t0 + rep
	sp.sent = nil
	sp.in = append(sp.in, nack(100, 2, headers.FlagParity, 1))
	s.poll()
	s.flushRepairs(s.now + int64(time.Hour))
	par := repairsSent(sp)
	if len(par) != 2 {
		t.Fatalf("%d parity", len(par))
	}
	// One of the two symbols arrives 0.9 back-offs after the NACK.
	r.now = sent + rep*9/10
	r.handle(par[0])
	r.timers(sent + rep*3/2)
	if blockNACKs() != 1 {
		t.Fatalf("a block NACK %v after parity arrived, within its back-off", time.Duration(rep*6/10))
	}
	r.timers(sent + rep*2)
	if blockNACKs() != 2 {
		t.Fatalf("%d block NACKs a back-off after the parity, want 2", blockNACKs())
	}
}

// FuzzParseParity feeds arbitrary payloads to the parity payload decoder
// and the shard decoder: they never panic, and what they accept is in
// range.
func FuzzParseParity(f *testing.F) {
	b := make([]byte, PayloadHeaderLen+ShardHeaderLen+8)
	putParityHeader(b, 32, 32, 3, 100)
	putShard(b[PayloadHeaderLen:], []byte("abc"), true)
	f.Add(b)
	f.Add([]byte{0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x12, 255, 1, 0, 0, 0, 0, 0, 0, 9, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		ph, st := parseParity(p)
		if st != parityOK {
			return
		}
		if ph.k < 1 || ph.p < 1 || ph.k+ph.p > maxShards || ph.index >= ph.p || len(ph.shard) < ShardHeaderLen {
			t.Fatalf("accepted %+v", ph)
		}
		if !isParityPayload(p) {
			t.Fatal("parsed but not a parity payload")
		}
		if data, _, err := shardData(ph.shard); err == nil && len(data) > len(ph.shard)-ShardHeaderLen {
			t.Fatalf("shard data of %d bytes in a %d-byte shard", len(data), len(ph.shard))
		}
	})
}
