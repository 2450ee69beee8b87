package endpoint

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/headers"
)

// TestMemTransportSleepsUntilFrame: an idle Recv sleeps in the poller and
// returns the datagram a peer sends while it waits; with nothing sent it
// ends at its deadline with ErrTimeout; a closed port ends it with
// ErrPortClosed.
func TestMemTransportSleepsUntilFrame(t *testing.T) {
	pa, pb := dataplane.NewMemPair("ha", "hb", 64, 2048)
	ipA, ipB := netip.AddrFrom4([4]byte{10, 9, 0, 1}), netip.AddrFrom4([4]byte{10, 9, 0, 2})
	a, err := NewMemTransport(pa, MemConfig{HostIP: ipA, GatewayIP: ipB, GatewayMAC: pb.HardwareAddr()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMemTransport(pb, MemConfig{HostIP: ipB, GatewayIP: ipA, GatewayMAC: pa.HardwareAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if b.wakeRC == nil {
		t.Fatal("no poller wake-up on a MemPort with an eventfd")
	}
	msg := make([]byte, 64)
	n := putFeedback(msg, headers.TypeACK, 7, 3, 0, 1, 42, 0, 8)
	msg = msg[:n]
	got := make([]byte, 2048)
	done := make(chan error, 1)
	var m int
	go func() {
		var err error
		m, err = b.Recv(got, time.Now().Add(10*time.Second))
		done <- err
	}()
	time.Sleep(30 * time.Millisecond) // Recv is asleep by now (or about to be: either way it must see the frame)
	if err := a.Send(msg); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || m != len(msg) || headers.SMH(got[:m]).Sequence() != 42 {
		t.Fatalf("Recv %d bytes, %v", m, err)
	}
	start := time.Now()
	if _, err := b.Recv(got, start.Add(20*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("idle Recv: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("idle Recv returned after %v, before its deadline", d)
	}
	go func() {
		_, err := b.Recv(got, time.Now().Add(10*time.Second))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	b.Close()
	pb.Close()
	select {
	case err := <-done:
		if !errors.Is(err, dataplane.ErrPortClosed) {
			t.Fatalf("Recv on a closed port: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still asleep 5 s after Close")
	}
}
