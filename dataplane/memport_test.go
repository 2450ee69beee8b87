package dataplane

import (
	"testing"

	"golang.org/x/sys/unix"
)

// readable reports whether fd polls readable right now.
func readable(t *testing.T, fd int) bool {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, 0)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestMemPortWakeups: a transmit wakes an idle receiver (its eventfd polls
// readable), further transmits before the receiver next finds its rings
// empty write nothing more (the eventfd counts one), a receive that finds
// frames leaves the wake-up for later, and the receive that finds the
// rings empty clears it, so an idle receiver sleeps and the next transmit
// wakes it again.
func TestMemPortWakeups(t *testing.T) {
	a, b := NewMemPair("a", "b", 8, 2048)
	tx, err := a.OpenTx()
	if err != nil {
		t.Fatal(err)
	}
	src, dst := NewPool(16, 2048+Headroom), NewPool(16, 2048+Headroom)
	send := func() {
		pk := src.Get()
		pk.SetFrame(60)
		if n, err := tx.TxBurst([]*Packet{pk}); n != 1 || err != nil {
			t.Fatalf("tx %d %v", n, err)
		}
	}
	fd := b.WaitFd()
	if readable(t, fd) {
		t.Fatal("readable before any transmit")
	}
	send()
	send()
	if !readable(t, fd) {
		t.Fatal("a transmit did not wake the receiver")
	}
	in := make([]*Packet, 8)
	if n, _ := b.RxBurst(dst, in); n != 2 {
		t.Fatalf("received %d, want 2", n)
	}
	for _, pk := range in[:2] {
		pk.Free()
	}
	// Two transmits, one wake-up: the eventfd counter is 1.
	var buf [8]byte
	if n, err := unix.Read(fd, buf[:]); n != 8 || err != nil || buf[0] != 1 {
		t.Fatalf("eventfd read %d %v, counter %d: want one write for two transmits", n, err, buf[0])
	}
	b.signaled.Store(true) // as if that read had not happened: the receive below must clear it
	if n, _ := b.RxBurst(dst, in); n != 0 {
		t.Fatalf("received %d from empty rings", n)
	}
	if b.signaled.Load() || readable(t, fd) {
		t.Fatal("an empty receive left the wake-up set")
	}
	send()
	if !readable(t, fd) {
		t.Fatal("a transmit after the receiver went idle did not wake it")
	}
	if n, _ := b.RxBurst(dst, in); n != 1 {
		t.Fatalf("received %d, want 1", n)
	}
}
