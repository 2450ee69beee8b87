package main

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSuperviseSystemd plays systemd: a notify socket and a watchdog of
// 100 ms. READY=1 waits for the worker's first round, WATCHDOG=1 comes
// while it goes round and stops when it stops, STOPPING=1 at the end.
func TestSuperviseSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", "")

	var rounds atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		superviseSystemd(ctx, io.Discard, "testing", func() []uint64 { return []uint64{rounds.Load()} })
	}()
	read := func(wait time.Duration) string {
		buf := make([]byte, 256)
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		n, err := conn.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
	// The worker has not gone round: no READY (4 watchdog periods).
	if msg := read(400 * time.Millisecond); msg != "" {
		t.Fatalf("%q before the worker's first round", msg)
	}
	rounds.Add(1)
	if msg := read(10 * time.Second); !strings.HasPrefix(msg, "READY=1\nSTATUS=testing") {
		t.Fatalf("got %q, want READY=1 with the status", msg)
	}
	// Going round: pings.
	stop := make(chan struct{})
	spun := make(chan struct{})
	go func() {
		defer close(spun)
		for {
			select {
			case <-stop:
				return
			default:
				rounds.Add(1)
				time.Sleep(time.Millisecond)
			}
		}
	}()
	if msg := read(10 * time.Second); msg != "WATCHDOG=1" {
		t.Fatalf("got %q, want WATCHDOG=1 while the worker runs", msg)
	}
	close(stop)
	<-spun
	// Stopped: only the ping of the period in which it last moved can
	// still come (and any left unread); drain until the socket is quiet
	// for 5 periods, then no ping may come at all.
	for i := 0; read(500*time.Millisecond) != ""; i++ {
		if i == 3 {
			t.Fatal("pings go on while the worker is stuck")
		}
	}
	if msg := read(500 * time.Millisecond); msg != "" {
		t.Fatalf("got %q while the worker is stuck, want no ping", msg)
	}
	cancel()
	<-done
	if msg := read(10 * time.Second); msg != "STOPPING=1" {
		t.Fatalf("got %q at the end, want STOPPING=1", msg)
	}
}

// Outside systemd it returns at once.
func TestSuperviseSystemdOff(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	done := make(chan struct{})
	go func() {
		superviseSystemd(context.Background(), io.Discard, "", func() []uint64 { return nil })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("superviseSystemd waits without NOTIFY_SOCKET")
	}
}
