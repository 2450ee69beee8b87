// Runtime faults. In: SetFault on a running switch (the admin endpoint
// POST /fault, `sparsecast switch fault`). Out: for a while, a port's
// egress drops frames by another loss than its configured fault injector,
// up to everything (a silent link failure: the carrier stays up, frames
// vanish). The faults are an immutable snapshot behind an atomic.Pointer,
// like the tables: a worker loads it once per round, rebuilds its per-queue
// injectors only when the snapshot changed, and checks the deadlines
// against the round's clock, so a packet costs one branch more and no lock.
// Frames dropped count as fault_injected, as the configured injector's do.
package dataplane

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// MaxFaultDuration bounds one runtime fault.
const MaxFaultDuration = 24 * time.Hour

// PortFault is a runtime fault on one port's egress.
type PortFault struct {
	Port  string      `json:"port"`
	Fault FaultConfig `json:"fault"`
	// UntilNs is the MonotonicNs deadline at which the port goes back to
	// its configured injector.
	UntilNs int64 `json:"until_ns"`
}

// faultSet is one published snapshot of the runtime faults, at most one per
// port; never modified once published.
type faultSet struct {
	ports []uint8
	f     []PortFault
}

// FaultCounters count runtime fault requests.
type FaultCounters struct {
	// Applied counts faults set (and cleared, a loss of 0); Rejected the
	// requests refused (bad port, loss, burst or duration; for the admin
	// endpoint also a bad method, form or non-loopback client).
	Applied, Rejected atomic.Uint64
}

// faultState is the switch's side of runtime faults.
type faultState struct {
	mu       sync.Mutex // serialises writers; workers never take it
	cur      atomic.Pointer[faultSet]
	counters FaultCounters
}

// SetFault makes port drop frames with f (Loss 1: every frame) for d, then
// return to its configured fault injector. A Loss of 0 ends a runtime fault
// on that port at once. Workers pick the change up at their next round.
func (s *Switch) SetFault(port string, f FaultConfig, d time.Duration) error {
	err := s.setFault(port, f, d)
	if err != nil {
		s.faults.counters.Rejected.Add(1)
		return err
	}
	s.faults.counters.Applied.Add(1)
	return nil
}

func (s *Switch) setFault(port string, f FaultConfig, d time.Duration) error {
	p := s.cfg.PortIndex(port)
	if p < 0 {
		return fmt.Errorf("fault: no port %q (ports: %v)", port, s.PortNames())
	}
	if err := f.validate(); err != nil {
		return fmt.Errorf("fault on %s: %w", port, err)
	}
	if f.Loss > 0 && (d <= 0 || d > MaxFaultDuration) {
		return fmt.Errorf("fault on %s: duration %v: want above 0, at most %v", port, d, MaxFaultDuration)
	}
	name := s.cfg.Ports[p].Name
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	now := MonotonicNs()
	next := &faultSet{}
	if old := s.faults.cur.Load(); old != nil {
		for i, q := range old.ports {
			// Drop this port's old fault and any that has expired.
			if int(q) != p && old.f[i].UntilNs > now {
				next.ports = append(next.ports, q)
				next.f = append(next.f, old.f[i])
			}
		}
	}
	if f.Loss > 0 {
		next.ports = append(next.ports, uint8(p))
		next.f = append(next.f, PortFault{Port: name, Fault: f, UntilNs: now + d.Nanoseconds()})
	}
	s.faults.cur.Store(next)
	return nil
}

// Faults lists the runtime faults still in force.
func (s *Switch) Faults() []PortFault {
	var out []PortFault
	now := MonotonicNs()
	if fs := s.faults.cur.Load(); fs != nil {
		for _, f := range fs.f {
			if f.UntilNs > now {
				out = append(out, f)
			}
		}
	}
	return out
}

// FaultCounters returns the runtime fault request counters (for metrics).
func (s *Switch) FaultCounters() *FaultCounters { return &s.faults.counters }

// takeFaults rebuilds the worker's runtime injectors from a new snapshot.
// It runs once per change, not per round.
func (w *Worker) takeFaults(fs *faultSet) {
	w.faultSeen = fs
	for p := range w.queues {
		w.queues[p].rtOn = false
	}
	w.faultLive = false
	if fs == nil {
		return
	}
	for i, p := range fs.ports {
		if int(p) >= len(w.queues) {
			continue
		}
		q := &w.queues[p]
		// The seed differs per worker and port, as the configured one's.
		q.rt = newFaultInjector(fs.f[i].Fault, uint64(int(p)*64+w.id+1)^0x5bd1e995)
		q.rtUntil = fs.f[i].UntilNs
		q.rtOn = true
		w.faultLive = true
	}
}

// expireFaults ends the runtime faults whose deadline is past at now (the
// round's clock).
func (w *Worker) expireFaults(now int64) {
	live := false
	for p := range w.queues {
		q := &w.queues[p]
		if !q.rtOn {
			continue
		}
		if now >= q.rtUntil {
			q.rtOn = false
			continue
		}
		live = true
	}
	w.faultLive = live
}
