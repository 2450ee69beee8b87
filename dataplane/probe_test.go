package dataplane

import (
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

// probePair is switch A and switch B joined by one in-memory link with
// probes on; A's port 1 is a second link that backs up receiver 7.
type probePair struct {
	a, b   *Switch
	events []LinkEvent
}

func newProbePair(t *testing.T, loss float64) *probePair {
	t.Helper()
	mk := func(name string, fault FaultConfig) *Config {
		c := &Config{Name: name, Buffers: 2048, Probe: ProbeConfig{Interval: time.Millisecond, Window: 200}}
		c.Ports = []PortConfig{{Name: "link", Type: "mem", Probe: true, Fault: fault}, {Name: "other", Type: "mem"}}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	ca, cb := mk("a", FaultConfig{Loss: loss, Seed: 3}), mk("b", FaultConfig{})
	la, lb := NewMemPair("a-link", "b-link", 1024, 2048)
	oa, _ := NewMemPair("a-other", "x", 1024, 2048)
	ob, _ := NewMemPair("b-other", "y", 1024, 2048)
	p := &probePair{}
	var err error
	rt := NewRouteTable()
	rt.SetWithBackup(7, 0, 1)
	rt.SetWithBackup(8, 1, 0)
	if p.a, err = NewSwitch(ca, []Port{la, oa}, &Tables{Routes: NewRouteTable()}); err != nil {
		t.Fatal(err)
	}
	if p.b, err = NewSwitch(cb, []Port{lb, ob}, &Tables{Routes: rt}); err != nil {
		t.Fatal(err)
	}
	p.b.OnLinkEvent(func(e LinkEvent) { p.events = append(p.events, e) })
	return p
}

// run advances both switches by n probe intervals of synthetic time.
func (p *probePair) run(n int, start *time.Time, aSends bool) {
	for i := 0; i < n; i++ {
		*start = start.Add(time.Millisecond)
		if aSends {
			p.a.workers[0].probeTick(*start)
			p.a.workers[0].flush()
		}
		p.b.workers[0].probeTick(*start)
		p.b.workers[0].poll()
		p.b.workers[0].flush()
		p.a.workers[0].poll()
	}
}

func TestProbeSilenceTakesLinkDownAndReroutes(t *testing.T) {
	p := newProbePair(t, 0)
	now := time.Now()
	p.run(50, &now, true)
	if len(p.events) != 0 || p.b.LinkState(0) != headers.LinkUp {
		t.Fatalf("healthy link reported %v", p.events)
	}
	p.run(2, &now, false)
	if len(p.events) != 0 {
		t.Fatalf("down after 2 silent intervals: %v", p.events)
	}
	p.run(2, &now, false)
	if len(p.events) != 1 {
		t.Fatalf("events after 4 silent intervals: %v", p.events)
	}
	e := p.events[0]
	if e.State != headers.LinkDown || e.Cause != "probe_timeout" || e.Port != 0 || e.Moved != 1 || e.SwapNs == 0 {
		t.Fatalf("event %+v", e)
	}
	rt := p.b.Tables().Routes
	if rt.Lookup(7) != 1 || rt.Lookup(8) != 1 {
		t.Fatalf("after reroute: 7 on %d, 8 on %d", rt.Lookup(7), rt.Lookup(8))
	}
	// Probes return: after a clean window the link is up and 7 is back.
	p.run(450, &now, true)
	if p.b.LinkState(0) != headers.LinkUp || p.b.Tables().Routes.Lookup(7) != 0 {
		t.Fatalf("link %s, 7 on %d; events %v", StateName(p.b.LinkState(0)), p.b.Tables().Routes.Lookup(7), p.events)
	}
}

func TestProbeLossReportsDegraded(t *testing.T) {
	p := newProbePair(t, 0.05)
	now := time.Now()
	p.run(450, &now, true)
	if len(p.events) == 0 {
		t.Fatal("5% probe loss not reported")
	}
	e := p.events[0]
	if e.State != headers.LinkDegraded || e.LossPPM < 20000 || e.LossPPM > 100000 {
		t.Fatalf("event %+v", e)
	}
	if p.b.Tables().Routes.Lookup(7) != 0 {
		t.Fatal("degraded link rerouted")
	}
}

func TestLinkChangeIsIdempotent(t *testing.T) {
	p := newProbePair(t, 0)
	p.b.LinkChange(0, headers.LinkDown, "carrier", 0, MonotonicNs())
	p.b.LinkChange(0, headers.LinkDown, "probe_timeout", 0, MonotonicNs())
	if len(p.events) != 1 {
		t.Fatalf("%d events for one failure", len(p.events))
	}
	if d := MonotonicNs() - p.events[0].DetectNs; d < 0 || d > int64(time.Second) {
		t.Fatalf("monotonic clock off by %d ns", d)
	}
}

// TestRerouteUsesSpareRoutes: a link change copies the routes into the
// spare table prepared ahead of time (no fresh 64 KiB on the critical
// path), leaves the old snapshot as it was, and a new spare follows.
func TestRerouteUsesSpareRoutes(t *testing.T) {
	sw, err := NewBenchSwitch(4, 256, PollAdaptive, -1)
	if err != nil {
		t.Fatal(err)
	}
	s := sw.Switch
	rt := NewRouteTable()
	rt.SetWithBackup(7, 1, 2)
	rt.SetWithBackup(8, 3, 2)
	if err := s.UpdateTables(func(old *Tables) (*Tables, error) {
		nt := *old
		nt.Routes = rt
		return &nt, nil
	}); err != nil {
		t.Fatal(err)
	}
	spare := s.spareRoutes.Load()
	if spare == nil {
		t.Fatal("no spare route table after NewSwitch")
	}
	s.LinkChange(1, headers.LinkDown, "carrier", 0, MonotonicNs())
	got := s.Tables().Routes
	if got != spare {
		t.Fatal("the reroute did not publish the spare table")
	}
	if got.Lookup(7) != 2 || got.Lookup(8) != 3 || rt.Lookup(7) != 1 || !got.ent.primaryEq(rt.ent) {
		t.Fatalf("rerouted 7 via %d, 8 via %d; old snapshot 7 via %d", got.Lookup(7), got.Lookup(8), rt.Lookup(7))
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.spareRoutes.Load() == nil || s.spareRoutes.Load() == spare {
		if time.Now().After(deadline) {
			t.Fatal("no new spare after the reroute")
		}
		time.Sleep(time.Millisecond)
	}
}

// primaryEq: the same primaries and backups (the entries are shared or equal).
func (e *routeEntries) primaryEq(o *routeEntries) bool {
	return e.primary == o.primary && e.backup == o.backup
}
