// Link state and local fast reroute. In: verdicts on a port's link from the
// carrier watcher (netlink) and the probe stage. Out: on down or up, one new
// route snapshot in which every entry whose primary is down uses its backup
// (RouteTable.Resolve), published in one swap without waiting for control;
// then a LinkEvent for the control process and the log. Entries whose primary
// is up are untouched: only receivers behind the failed link are affected.
package dataplane

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
)

// LinkEvent reports a change of a port's link.
type LinkEvent struct {
	Port    uint8  `json:"port"`
	Name    string `json:"name"`
	State   uint8  `json:"state"` // headers.LinkUp, LinkDegraded, LinkDown
	Cause   string `json:"cause"` // carrier, probe_timeout, probe_loss, probe_recovered
	LossPPM uint32 `json:"loss_ppm"`
	// DetectNs and SwapNs are CLOCK_MONOTONIC nanoseconds (one clock for
	// every process on the machine): when the change was detected, and when
	// the rerouted table was published (0 for degraded).
	DetectNs int64 `json:"detect_ns"`
	SwapNs   int64 `json:"swap_ns"`
	// Moved counts route entries not on their primary after the swap.
	Moved int `json:"moved"`
}

// StateName names a link state for logs.
func StateName(s uint8) string {
	switch s {
	case headers.LinkUp:
		return "up"
	case headers.LinkDegraded:
		return "degraded"
	case headers.LinkDown:
		return "down"
	}
	return "unknown"
}

// linkStates is the switch's view of its links. Writers are the carrier
// watcher and the workers' probe stage; they serialise on mu (a rare event).
type linkStates struct {
	mu    sync.Mutex
	state [MaxPorts]atomic.Uint32
	// upSince is when a port last came up (CLOCK_MONOTONIC ns): probes give
	// a link that just came back a few intervals before judging it silent.
	upSince [MaxPorts]atomic.Int64
	// noCarrier marks ports the carrier watcher saw go down: probes alone
	// never bring such a port up again.
	noCarrier PortSet
	hooks     []func(LinkEvent)
}

// OnLinkEvent registers a function called (from the detecting goroutine,
// after the swap) for every link event. Register before Run.
func (s *Switch) OnLinkEvent(f func(LinkEvent)) {
	s.links.mu.Lock()
	s.links.hooks = append(s.links.hooks, f)
	s.links.mu.Unlock()
}

// LinkState returns a port's current link state.
func (s *Switch) LinkState(p uint8) uint8 {
	if v := s.links.state[p].Load(); v != 0 {
		return uint8(v)
	}
	return headers.LinkUp
}

// LinkChange records a verdict on port p's link. Down and up republish the
// routes resolved against the new set of down ports; degraded only reports.
// A verdict equal to the current state is ignored, so the carrier watcher
// and the probes can both report one failure.
func (s *Switch) LinkChange(p uint8, state uint8, cause string, lossPPM uint32, detectNs int64) {
	if int(p) >= len(s.ports) {
		return
	}
	l := &s.links
	l.mu.Lock()
	defer l.mu.Unlock()
	if cause == "carrier" {
		if state == headers.LinkDown {
			l.noCarrier.Add(p)
		} else {
			l.noCarrier.Remove(p)
		}
	} else if state != headers.LinkDown && l.noCarrier.Has(p) {
		return // probes got through a port without carrier? not believed
	}
	if s.LinkState(p) == state {
		return
	}
	if state == headers.LinkUp {
		// Before the state: the probe stage reads them in the other
		// order (probeTick).
		l.upSince[p].Store(detectNs)
	}
	l.state[p].Store(uint32(state))
	ev := LinkEvent{Port: p, Name: s.ports[p].Name(), State: state, Cause: cause, LossPPM: lossPPM, DetectNs: detectNs}
	if state != headers.LinkDegraded {
		s.SetPortDown(p, state == headers.LinkDown)
		_ = s.UpdateTables(func(old *Tables) (*Tables, error) {
			rt := s.cloneRoutes(old.Routes)
			down := s.DownPorts()
			ev.Moved = rt.Resolve(&down)
			nt := *old
			nt.Routes = rt
			return &nt, nil
		})
		ev.SwapNs = MonotonicNs()
	}
	for _, f := range l.hooks {
		f(ev)
	}
	if ev.SwapNs != 0 {
		// The next spare costs page faults; this may be a worker's
		// probe stage, which must not wait for them.
		go s.prepareSpareRoutes()
	}
}

// MonotonicNs returns CLOCK_MONOTONIC in nanoseconds: one clock for every
// process on the machine, so events can be compared with another process's
// readings (a benchmark taking a link down, control timing an update). It is
// read only at events, never per packet, and without a system call
// (ffi.MonotonicNs).
func MonotonicNs() int64 { return ffi.MonotonicNs() }

// The worker loop reads Go's clock (cheap, vDSO) once per round for its
// probe stage; monotonicAt maps such a reading onto CLOCK_MONOTONIC. Go's
// monotonic clock is CLOCK_MONOTONIC, so the two differ by the constant
// measured here, to within the few nanoseconds between the two reads.
var clockBase, monoBase = clockMapping()

// clockMapping reads both clocks, taking the Go reading as the midpoint of
// two around the system call, the closest of a few tries.
func clockMapping() (time.Time, int64) {
	base := time.Now()
	best, mono := time.Duration(1<<62), int64(0)
	for i := 0; i < 5; i++ {
		var ts unix.Timespec
		t1 := time.Now()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return base, 0
		}
		t2 := time.Now()
		if d := t2.Sub(t1); d < best {
			best = d
			mono = ts.Nano() - int64(t1.Sub(base)+d/2)
		}
	}
	return base, mono
}

// monotonicAt converts a time.Time read in this process to CLOCK_MONOTONIC ns.
func monotonicAt(t time.Time) int64 { return monoBase + int64(t.Sub(clockBase)) }
