package dataplane

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

// A runtime fault makes a running port drop every frame, counted as
// fault_injected, until its deadline; then the port forwards again. Other
// ports are untouched, and bad requests are refused and counted.
func TestRuntimeFault(t *testing.T) {
	f := newTestFabric(t, 3, nil)
	fr := buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 3}, ids: []uint16{1, 2}, payload: []byte("p")})
	burst := func() [][]byte {
		frames := make([][]byte, 50)
		for i := range frames {
			frames[i] = fr
		}
		return frames
	}
	if err := f.sw.SetFault("p2", FaultConfig{Loss: 1}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := f.sw.Faults(); len(got) != 1 || got[0].Port != "p2" || got[0].Fault.Loss != 1 || got[0].Fault.Burst != 1 {
		t.Fatalf("faults in force: %+v", got)
	}
	f.send(t, 0, burst()...)
	if got1, got2 := len(f.recv(1)), len(f.recv(2)); got1 != 50 || got2 != 0 {
		t.Fatalf("during the fault: p1 got %d, p2 %d; want 50, 0", got1, got2)
	}
	if d := f.w.counters.Drops[DropFaultInjected].Load(); d != 50 {
		t.Fatalf("fault_injected %d, want 50", d)
	}
	// A new fault on the port replaces the old one; past its deadline the
	// worker's round clock ends it by itself.
	if err := f.sw.SetFault("p2", FaultConfig{Loss: 1}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	end := MonotonicNs() + 1e6
	for MonotonicNs() <= end {
		time.Sleep(time.Millisecond)
	}
	f.send(t, 0, burst()...)
	if got1, got2 := len(f.recv(1)), len(f.recv(2)); got1 != 50 || got2 != 50 {
		t.Fatalf("after the fault: p1 got %d, p2 %d; want 50, 50", got1, got2)
	}
	if len(f.sw.Faults()) != 0 || f.w.faultLive {
		t.Fatalf("fault still in force: %+v", f.sw.Faults())
	}
	// A loss of 0 clears a fault at once.
	if err := f.sw.SetFault("P1", FaultConfig{Loss: 1}, time.Hour); err != nil {
		t.Fatal(err)
	}
	f.send(t, 0, burst()...)
	if got1 := len(f.recv(1)); got1 != 0 {
		t.Fatalf("p1 got %d under a fault", got1)
	}
	f.recv(2)
	if err := f.sw.SetFault("p1", FaultConfig{}, 0); err != nil {
		t.Fatal(err)
	}
	f.send(t, 0, burst()...)
	if got1 := len(f.recv(1)); got1 != 50 {
		t.Fatalf("p1 got %d after clearing", got1)
	}
	if a := f.sw.FaultCounters().Applied.Load(); a != 4 {
		t.Fatalf("applied %d, want 4", a)
	}
	for _, bad := range []struct {
		port string
		f    FaultConfig
		d    time.Duration
		want string
	}{
		{"p9", FaultConfig{Loss: 1}, time.Second, "no port"},
		{"p1", FaultConfig{Loss: 1.5}, time.Second, "fault.loss"},
		{"p1", FaultConfig{Loss: 0.5, Burst: -1}, time.Second, "fault.burst"},
		{"p1", FaultConfig{Loss: 1}, 0, "duration"},
		{"p1", FaultConfig{Loss: 1}, 25 * time.Hour, "duration"},
	} {
		if err := f.sw.SetFault(bad.port, bad.f, bad.d); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("SetFault(%s, %+v, %v): %v, want an error about %s", bad.port, bad.f, bad.d, err, bad.want)
		}
	}
	if r := f.sw.FaultCounters().Rejected.Load(); r != 5 {
		t.Fatalf("rejected %d, want 5", r)
	}
}

// A round under a runtime fault allocates nothing either.
func TestRuntimeFaultDoesNotAllocate(t *testing.T) {
	b, err := NewBenchSwitch(2, 256, PollBusy, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetFault("out1", FaultConfig{Loss: 1}, time.Hour); err != nil {
		t.Fatal(err)
	}
	b.Step()
	if a := testing.AllocsPerRun(200, func() { b.Step() }); a != 0 {
		t.Errorf("%v allocations per burst", a)
	}
	if got, want := b.Sinks[0].Packets.Load(), b.Generator.Generated.Load(); got != want || b.Sinks[1].Packets.Load() != 0 {
		t.Errorf("sinks got %d and %d of %d packets; want all and none", got, b.Sinks[1].Packets.Load(), want)
	}
}

// Faults set and cleared while the worker runs (the race detector watches
// the snapshot's hand-over): each takes effect.
func TestRuntimeFaultWhileRunning(t *testing.T) {
	b, err := NewBenchSwitch(2, 256, PollAdaptive, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 10 s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	drops := func() uint64 { return b.Counters()[0].Drops[DropFaultInjected].Load() }
	for range 20 {
		if err := b.SetFault("out1", FaultConfig{Loss: 1}, time.Hour); err != nil {
			t.Fatal(err)
		}
		d0 := drops()
		waitFor("fault drop", func() bool { return drops() > d0 })
		if err := b.SetFault("out1", FaultConfig{}, 0); err != nil {
			t.Fatal(err)
		}
		// Once the worker has taken the clearing, out1 gets packets again
		// (what was queued before the fault went out in the round that
		// dropped the first frame).
		n := b.Sinks[1].Packets.Load()
		waitFor("packet after the fault", func() bool { return b.Sinks[1].Packets.Load() > n })
	}
}
