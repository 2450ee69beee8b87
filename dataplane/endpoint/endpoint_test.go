package endpoint

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

func TestSourcePort(t *testing.T) {
	seen := map[uint16]bool{}
	for src := uint16(0); src < 64; src++ {
		for sess := uint16(0); sess < 64; sess++ {
			p := SourcePort(src, sess)
			if p < SourcePortMin {
				t.Fatalf("SourcePort(%d,%d) = %d below %d", src, sess, p, SourcePortMin)
			}
			if p != SourcePort(src, sess) {
				t.Fatal("SourcePort not deterministic")
			}
			seen[p] = true
		}
	}
	// 4096 streams over 16384 ports: a hash that spreads hits most of them
	// distinctly (expected about 3,600 distinct).
	if len(seen) < 3000 {
		t.Errorf("4096 streams map to only %d source ports", len(seen))
	}
}

func TestResolveAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1:5":    "10.0.0.1:5",
		"10.0.0.1":      "10.0.0.1:9471",
		"[fd00::1]:7":   "[fd00::1]:7",
		"fd00::1":       "[fd00::1]:9471",
		"[fd00::1]":     "[fd00::1]:9471",
		":9000":         "invalid AddrPort",
		"localhost:100": "127.0.0.1:100",
	} {
		got, err := ResolveAddr(in, 9471)
		if err != nil {
			t.Errorf("ResolveAddr(%q): %v", in, err)
			continue
		}
		if got.String() != want && !(in == "localhost:100" && got.String() == "[::1]:100") {
			t.Errorf("ResolveAddr(%q) = %s, want %s", in, got, want)
		}
	}
	for _, in := range []string{"", "10.0.0.1:99999", "10.0.0.1:x", "no.such.host.invalid:1"} {
		if _, err := ResolveAddr(in, 9471); err == nil {
			t.Errorf("ResolveAddr(%q) succeeded", in)
		}
	}
}

// pair starts a receiver on loopback and a sender towards it.
func pair(t *testing.T, loop string, rc ReceiverConfig, sc SenderConfig) (*Receiver, *Sender) {
	t.Helper()
	rc.Listen = net.JoinHostPort(loop, "0")
	r, err := NewReceiver(rc)
	if err != nil {
		t.Skipf("no %s loopback: %v", loop, err)
	}
	t.Cleanup(func() { r.Close() })
	sc.Gateway = r.LocalAddr().String()
	sc.Local = net.JoinHostPort(loop, "0")
	s, err := NewSender(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return r, s
}

// runReceiver runs r in the background; the channel yields its report, or
// fails the test if Run returned an error.
func runReceiver(t *testing.T, r *Receiver) <-chan *Report {
	out := make(chan *Report, 1)
	errc := make(chan error, 1)
	go func() {
		rep, err := r.Run(context.Background())
		if err != nil {
			errc <- err
			return
		}
		out <- rep
	}()
	res := make(chan *Report, 1)
	go func() {
		select {
		case rep := <-out:
			res <- rep
		case err := <-errc:
			t.Errorf("receiver: %v", err)
			res <- &Report{}
		}
	}()
	return res
}

func TestSendReceiveSchedule(t *testing.T) {
	for _, loop := range []string{"127.0.0.1", "::1"} {
		t.Run(loop, func(t *testing.T) {
			sched := Schedule{Seed: 99, Receivers: []uint16{1, 2, 3, 70}}
			r, s := pair(t, loop,
				ReceiverConfig{ID: 2, SetCheck: SetMember, IdleTimeout: 300 * time.Millisecond, Duration: 10 * time.Second},
				SenderConfig{SourceID: 9, SessionID: 4, PayloadSize: 200, Receivers: sched.SetFunc(), FirstSeq: 1000})
			if got, want := s.LocalAddr().Port(), SourcePort(9, 4); got != want {
				t.Errorf("source port %d, want SourcePort = %d", got, want)
			}
			done := runReceiver(t, r)
			st, err := s.Run(context.Background(), 2000)
			if err != nil {
				t.Fatal(err)
			}
			if st.Packets != 2000 || st.FirstSeq != 1000 || st.LastSeq != 2999 {
				t.Fatalf("sent %+v", st)
			}
			rep := <-done
			if rep.StopReason != "idle" {
				t.Errorf("stop reason %q", rep.StopReason)
			}
			if rep.Data != 2000 || len(rep.Streams) != 1 {
				t.Fatalf("report: data %d, %d streams", rep.Data, len(rep.Streams))
			}
			str, ok := rep.Stream(9, 4)
			if !ok {
				t.Fatal("no stream 9/4")
			}
			if str.Unique != 2000 || str.Duplicates != 0 || str.Missing != 0 || str.Lowest != 1000 || str.Highest != 2999 {
				t.Errorf("stream %+v", str)
			}
			// Member check: exactly the packets whose set lacks 2 violate.
			want := 2000 - sched.Expected(2, 1000, 2000).Len()
			if str.SetViolations != want {
				t.Errorf("set violations %d, want %d", str.SetViolations, want)
			}
			if str.Latency.Max <= 0 || str.Latency.Min > str.Latency.Avg || str.Latency.Avg > str.Latency.Max {
				t.Errorf("latency %+v", str.Latency)
			}
			if st.Bytes <= 2000*(headers.FixedLen+200) {
				t.Errorf("bytes %d too small", st.Bytes)
			}
		})
	}
}

func TestExactSetCheck(t *testing.T) {
	for _, tc := range []struct {
		ids        []uint16
		violations bool
	}{
		{[]uint16{5}, false},
		{[]uint16{5, 6}, true},
		{[]uint16{6}, true},
	} {
		t.Run(headers.FormatIDSet(tc.ids), func(t *testing.T) {
			r, s := pair(t, "127.0.0.1",
				ReceiverConfig{ID: 5, SetCheck: SetExact, Count: 10},
				SenderConfig{Receivers: Fixed(tc.ids)})
			done := runReceiver(t, r)
			if _, err := s.Run(context.Background(), 10); err != nil {
				t.Fatal(err)
			}
			rep := <-done
			if rep.StopReason != "count" {
				t.Errorf("stop reason %q", rep.StopReason)
			}
			str, _ := rep.Stream(0, 0)
			if got := str.SetViolations; (got == 10) != tc.violations || (got != 0 && got != 10) {
				t.Errorf("set %v to receiver 5: %d violations of 10", tc.ids, got)
			}
		})
	}
}

func TestDuplicatesAndReordering(t *testing.T) {
	r, s := pair(t, "127.0.0.1",
		ReceiverConfig{ID: 1, Count: 15},
		SenderConfig{SourceID: 3, Receivers: Fixed([]uint16{1}), FirstSeq: 5})
	done := runReceiver(t, r)
	if _, err := s.Run(context.Background(), 5); err != nil { // 5-9
		t.Fatal(err)
	}
	s.next = 0
	if _, err := s.Run(context.Background(), 7); err != nil { // 0-6: 0-4 late, 5-6 twice
		t.Fatal(err)
	}
	s.next = 20
	if _, err := s.Run(context.Background(), 3); err != nil { // 20-22
		t.Fatal(err)
	}
	rep := <-done
	str, _ := rep.Stream(3, 0)
	if str.Received != 15 || str.Unique != 13 || str.Duplicates != 2 || str.OutOfOrder != 5 {
		t.Errorf("stream %+v", str)
	}
	if str.Seqs.String() != "0-9,20-22" || str.Lowest != 0 || str.Highest != 22 || str.Missing != 10 {
		t.Errorf("seqs %q lowest %d highest %d missing %d", str.Seqs, str.Lowest, str.Highest, str.Missing)
	}
}

func TestMalformed(t *testing.T) {
	r, err := NewReceiver(ReceiverConfig{Listen: "127.0.0.1:0", ID: 1, Count: 1, Duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := runReceiver(t, r)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	good := func(seq uint32) []byte {
		b := make([]byte, 64)
		n := headers.PutHeader(b, headers.Fields{SourceID: 8, HopLimit: 3, Sequence: seq}, []uint16{1})
		binary.BigEndian.PutUint32(b[n:], seq)
		return b[:n+MinPayload]
	}
	badVersion := good(1)
	badVersion[0] = 2<<4 | 0
	mismatch := good(2)
	binary.BigEndian.PutUint32(mismatch[16:], 3)
	unsorted := make([]byte, 64)
	n := headers.PutHeader(unsorted, headers.Fields{SourceID: 8}, []uint16{1, 2})
	unsorted[14], unsorted[15], unsorted[16], unsorted[17] = 0, 2, 0, 1
	ack := make([]byte, 64)
	an := headers.PutHeader(ack, headers.Fields{Type: headers.TypeACK, SpeaksFor: 1}, nil)
	for _, p := range [][]byte{
		{0x10, 0, 1},    // truncated
		badVersion,      // bad_version
		good(4)[:16],    // short_payload
		mismatch,        // payload_mismatch
		unsorted[:n+12], // bad_set
		ack[:an],        // feedback, not malformed
		good(7),         // the one DATA packet: stops the run
	} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	rep := <-done
	if rep.Datagrams != 7 || rep.Malformed != 5 || rep.Feedback != 1 || rep.Data != 1 {
		t.Fatalf("report %+v", rep)
	}
	for _, reason := range []string{"truncated", "bad_version", "short_payload", "payload_mismatch", "bad_set"} {
		if rep.MalformedBy[reason] != 1 {
			t.Errorf("malformed %s = %d, want 1 (%v)", reason, rep.MalformedBy[reason], rep.MalformedBy)
		}
	}
	str, _ := rep.Stream(8, 0)
	if str.Malformed != 4 || str.Unique != 1 || str.Seqs.String() != "7" {
		t.Errorf("stream %+v", str)
	}
}

func TestReceiverStops(t *testing.T) {
	r, err := NewReceiver(ReceiverConfig{Listen: "127.0.0.1:0", Duration: 150 * time.Millisecond, IdleTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start := time.Now()
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Idle timeout counts from the first packet only: none came.
	if rep.StopReason != "duration" || time.Since(start) < 150*time.Millisecond {
		t.Errorf("stop %q after %v", rep.StopReason, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if rep, err = r.Run(ctx); err != nil || rep.StopReason != "canceled" {
		t.Errorf("canceled run: %v %v", rep, err)
	}
}

func TestSenderRate(t *testing.T) {
	r, s := pair(t, "127.0.0.1", ReceiverConfig{Count: 100}, SenderConfig{Rate: 1000, Receivers: Fixed([]uint16{0})})
	done := runReceiver(t, r)
	st, err := s.Run(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	// 100 packets at 1000/s: the last is due at 99 ms.
	// The limiter must never run ahead; it may lag on a loaded machine.
	if st.Elapsed < 95*time.Millisecond || st.Elapsed > 3*time.Second {
		t.Errorf("100 packets at 1000 pps took %v", st.Elapsed)
	}
	if pps := st.PPS(); pps > 1060 {
		t.Errorf("PPS %v above the 1000 asked for", pps)
	}
}

func TestSenderConfigErrors(t *testing.T) {
	fixed := Fixed([]uint16{1})
	for _, tc := range []struct {
		cfg  SenderConfig
		want string
	}{
		{SenderConfig{Gateway: "127.0.0.1:9"}, "no receiver function"},
		{SenderConfig{Gateway: "127.0.0.1:9", Receivers: fixed, PayloadSize: 5}, "payload size"},
		{SenderConfig{Gateway: "127.0.0.1:9", Receivers: fixed, PayloadSize: 70000}, "payload size"},
		{SenderConfig{Gateway: "127.0.0.1:9", Receivers: fixed, Rate: -1}, "rate"},
		{SenderConfig{Gateway: "nonsense host!:9", Receivers: fixed}, "gateway"},
		{SenderConfig{Gateway: "0.0.0.0:9", Receivers: fixed}, "need an IP"},
		{SenderConfig{Gateway: "127.0.0.1:0", Receivers: fixed}, "port 0"},
		{SenderConfig{Gateway: "127.0.0.1:9", Local: "::1", Receivers: fixed}, "different IP versions"},
	} {
		_, err := NewSender(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewSender(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	// A receiver function that breaks the SMH rules fails the run cleanly.
	s, err := NewSender(SenderConfig{Gateway: "127.0.0.1:9", Local: "127.0.0.1:0", Receivers: Fixed([]uint16{4, 2})})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Run(context.Background(), 1); err == nil || !strings.Contains(err.Error(), "ascending") {
		t.Errorf("unsorted set: %v", err)
	}
	s.cfg.Receivers = Fixed(nil)
	if _, err := s.Run(context.Background(), 1); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty set: %v", err)
	}
}

func TestNoAllocationPerPacket(t *testing.T) {
	r, s := pair(t, "127.0.0.1", ReceiverConfig{ID: 1}, SenderConfig{Receivers: Schedule{Seed: 1, Receivers: seqIDs(20, 1)}.SetFunc(), PayloadSize: 100})
	var st SendStats
	now := time.Now()
	if n := testing.AllocsPerRun(500, func() {
		if _, err := s.send(now, &st); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("send allocates %v times per packet", n)
	}
	pkt, _ := s.build(1, now)
	r.handle(pkt, now)
	seq := uint32(1)
	if n := testing.AllocsPerRun(500, func() {
		seq++
		pkt, _ := s.build(seq, now)
		r.handle(pkt, now)
	}); n != 0 {
		t.Errorf("receive accounting allocates %v times per packet", n)
	}
}
