package endpoint

import (
	"testing"
	"time"
)

// Datagrams queued when Run stops are handled, not dropped with the socket.
func TestReceiverDrainsAtStop(t *testing.T) {
	r, s := pair(t, "127.0.0.1", ReceiverConfig{ID: 1}, SenderConfig{Receivers: Fixed([]uint16{1})})
	r.start = time.Now()
	for i := 0; i < 5; i++ {
		if _, _, err := s.Send(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // loopback delivery
	r.drain()
	rep := r.report()
	if rep.Drained != 5 || len(rep.Streams) != 1 || rep.Streams[0].Unique != 5 {
		t.Fatalf("drained %d, streams %+v; want 5 packets of one stream", rep.Drained, rep.Streams)
	}
	r.drain() // nothing left: returns at once
	if r.rep.Drained != 5 {
		t.Errorf("drained %d after a second drain, want 5", r.rep.Drained)
	}
}
