// The control update benchmark: how long a group change takes from control
// to the dataplane's published tables, through the real pieces.
//
//  1. A bench switch (dataplane.NewBenchSwitch: one input port, one port
//     per receiver) gets a ring file in a fresh directory under /dev/shm
//     and a busy-polling RingApplier on it.
//  2. A control server, its topology that same switch, serves the ring
//     and its API on a temporary Unix socket.
//  3. Updates member-add requests go through the API one after another,
//     and the server's OnApplied hook collects, per update, the request's
//     arrival, the hand-over to the ring and the dataplane's publish
//     (CLOCK_MONOTONIC, the publish time from the APPLIED event).
//
// Everything is removed afterwards.
package perf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/control"
	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/ffi"
)

// ControlOptions configure BenchControl.
type ControlOptions struct {
	// Updates is the number of member-add requests (default 10,000).
	Updates int
	// Receivers is the bench switch's receivers, one port each (default 64).
	Receivers int
	// CPU pins the busy-polling ring applier; -1 leaves it unpinned.
	CPU int
	// ShmDir is where the ring file goes (default /dev/shm).
	ShmDir string
	// Interval paces the requests: each starts at least this long after
	// the previous one started (0: back to back).
	Interval time.Duration
}

// ControlResult is what `sparsecast bench control --json` prints.
type ControlResult struct {
	Updates   int `json:"updates"`
	Applied   int `json:"applied"`
	Receivers int `json:"receivers"`
	Groups    int `json:"groups"`
	// UpdateP50Us and UpdateP99Us: from control handing the batch to the
	// ring (the API request already parsed) to the dataplane's publish.
	UpdateP50Us float64 `json:"update_p50_us"`
	UpdateP99Us float64 `json:"update_p99_us"`
	UpdateMaxUs float64 `json:"update_max_us"`
	// APIP50Us and APIP99Us: from the HTTP request's arrival at the server
	// to the publish.
	APIP50Us float64 `json:"api_p50_us"`
	APIP99Us float64 `json:"api_p99_us"`
	// TargetP99Us is the update p99 goal.
	TargetP99Us float64 `json:"target_p99_us"`
	// ClockOffsetUs is dataplane.MonotonicNs minus CLOCK_MONOTONIC as
	// measured in this process, subtracted from the publish times.
	ClockOffsetUs    float64 `json:"clock_offset_us"`
	MeetsTarget      bool    `json:"meets_target"`
	Seconds          float64 `json:"seconds"`
	UpdatesPerSecond float64 `json:"updates_per_second"`
	Rejected         uint64  `json:"rejected"`
	// GCCycles and AllocBytesPerUpdate are the whole process's (control,
	// its API and client, and the dataplane) while the updates ran: the
	// garbage that sets how often GC runs beside the applier.
	GCCycles            uint32  `json:"gc_cycles"`
	AllocBytesPerUpdate float64 `json:"alloc_bytes_per_update"`
	// PageFaultsPerUpdate counts the process's minor page faults: fresh
	// heap memory's first touch, which cost about 17 µs a page on the
	// development VM.
	PageFaultsPerUpdate float64 `json:"page_faults_per_update"`
	CPU                 int     `json:"cpu"`
	IntervalUs          float64 `json:"interval_us"`
}

// BenchControl runs the benchmark described at the top of the file.
func BenchControl(ctx context.Context, o ControlOptions) (*ControlResult, error) {
	if o.Updates == 0 {
		o.Updates = 10000
	}
	if o.Receivers == 0 {
		o.Receivers = 64
	}
	if o.ShmDir == "" {
		o.ShmDir = "/dev/shm"
	}
	if o.Updates < 1 || o.Updates > 10_000_000 {
		return nil, fmt.Errorf("updates %d: want 1-10000000", o.Updates)
	}
	if o.Receivers < 1 || o.Receivers > dataplane.MaxPorts-1 {
		return nil, fmt.Errorf("receivers %d: want 1-%d", o.Receivers, dataplane.MaxPorts-1)
	}
	if o.Interval < 0 || o.Interval > time.Second {
		return nil, fmt.Errorf("interval %v: want 0-1s", o.Interval)
	}
	if o.CPU < -1 || o.CPU >= runtime.NumCPU() {
		return nil, fmt.Errorf("cpu %d: want -1 or 0-%d", o.CPU, runtime.NumCPU()-1)
	}
	b, err := dataplane.NewBenchSwitch(o.Receivers, 256, dataplane.PollAdaptive, -1)
	if err != nil {
		return nil, err
	}
	// The bench switch routes receiver 1+97i to port out<i> (port i+1).
	ids := make([]uint16, o.Receivers)
	for i := range ids {
		ids[i] = uint16(1 + i*97)
	}
	topo, err := benchTopology(ids)
	if err != nil {
		return nil, err
	}
	if got, want := topo.PortNames("bench"), b.PortNames(); !slices.Equal(got, want) {
		return nil, fmt.Errorf("bench topology ports %v, bench switch ports %v", got, want)
	}

	dir, err := os.MkdirTemp(o.ShmDir, "sparsecast-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rf, err := ffi.OpenRingFile(control.RingPath(dir, "bench"), 4096)
	if err != nil {
		return nil, err
	}
	defer rf.Close()
	applier, err := dataplane.NewRingApplier(b.Switch, rf, dataplane.RingApplierOptions{BusyPoll: true, Pin: o.CPU >= 0, CPU: o.CPU})
	if err != nil {
		return nil, err
	}

	res := &ControlResult{Updates: o.Updates, Receivers: o.Receivers, TargetP99Us: 10, CPU: o.CPU, IntervalUs: float64(o.Interval) / 1e3}
	// The applier stamps its publishes with dataplane.MonotonicNs, control
	// its hand-overs with control.MonotonicNanos: both CLOCK_MONOTONIC, so
	// the offset should be 0. It is measured anyway and taken out of the
	// publish times, because a clock error of microseconds would be the
	// whole result here.
	offset := clockOffset()
	res.ClockOffsetUs = float64(offset) / 1e3
	var (
		mu      sync.Mutex
		updates = make([]float64, 0, o.Updates)
		apis    = make([]float64, 0, o.Updates)
	)
	srv, err := control.NewServer(topo, control.ServerOptions{
		RingDir: dir,
		OnApplied: func(a control.AppliedPush) {
			if a.Kind != control.PushGroupsKind {
				return
			}
			pub := int64(a.Published) - offset
			mu.Lock()
			updates = append(updates, float64(pub-int64(a.Pushed))/1e3)
			if a.Arrival != 0 {
				apis = append(apis, float64(pub-int64(a.Arrival))/1e3)
			}
			mu.Unlock()
		},
	})
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "control.sock")
	ln, err := control.ListenAPI("unix:"+sock, "")
	if err != nil {
		return nil, err
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := applier.Run(runCtx); err != nil {
			stop()
			errs <- err
		}
	}()
	go func() { defer wg.Done(); errs <- srv.Run(runCtx) }()
	go func() { defer wg.Done(); errs <- srv.ServeAPI(runCtx, ln, "") }()
	finish := func() error {
		stop()
		wg.Wait()
		close(errs)
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return errors.Join(all...)
	}

	// Wait for the first full resync.
	if err := waitFor(ctx, 5*time.Second, func() bool {
		st := srv.Status().Switches[0]
		return st.InSync
	}); err != nil {
		finish()
		return nil, fmt.Errorf("the bench switch never applied its full resync: %w", err)
	}

	c, err := control.NewClient("unix:"+sock, "")
	if err != nil {
		finish()
		return nil, err
	}
	defer c.Close()
	member := []uint16{0}
	var ms0, ms1 runtime.MemStats
	var ru0, ru1 unix.Rusage
	runtime.ReadMemStats(&ms0)
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	t0 := time.Now()
	next := time.Now()
	for i := range o.Updates {
		if o.Interval > 0 {
			for time.Now().Before(next) {
				time.Sleep(time.Until(next))
			}
			next = next.Add(o.Interval)
		}
		// Group i/R gets its members one request at a time: every
		// request adds a member not yet there.
		member[0] = ids[i%len(ids)]
		if _, err := c.AddMembers(ctx, uint32(i/len(ids)), member); err != nil {
			finish()
			return nil, fmt.Errorf("update %d: %w", i, err)
		}
	}
	el := time.Since(t0)
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	runtime.ReadMemStats(&ms1)
	err = waitFor(ctx, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(updates) >= o.Updates
	})
	st := srv.Status().Switches[0]
	ferr := finish()
	if err != nil {
		return nil, fmt.Errorf("%d of %d updates timed (switch at generation %d, applied %d, %d rejected, %d events dropped by the dataplane): %w",
			len(updates), o.Updates, st.Generation, st.Applied, st.Rejected, applier.Counters().EventsDropped.Load(), err)
	}
	if ferr != nil {
		return nil, ferr
	}
	res.Applied = len(updates)
	res.Groups = (o.Updates + len(ids) - 1) / len(ids)
	res.Rejected = st.Rejected
	res.GCCycles = ms1.NumGC - ms0.NumGC
	res.AllocBytesPerUpdate = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(o.Updates)
	res.PageFaultsPerUpdate = float64(ru1.Minflt-ru0.Minflt) / float64(o.Updates)
	res.Seconds = el.Seconds()
	res.UpdatesPerSecond = float64(o.Updates) / el.Seconds()
	slices.Sort(updates)
	slices.Sort(apis)
	res.UpdateP50Us, res.UpdateP99Us, res.UpdateMaxUs = pct(updates, 0.5), pct(updates, 0.99), updates[len(updates)-1]
	res.APIP50Us, res.APIP99Us = pct(apis, 0.5), pct(apis, 0.99)
	res.MeetsTarget = res.UpdateP99Us <= res.TargetP99Us
	// The dataplane's tables hold what the API was told.
	t := b.Switch.Tables()
	for g := range res.Groups {
		want := ids
		if last := o.Updates - g*len(ids); last < len(ids) {
			want = slices.Sorted(slices.Values(ids[:last]))
		}
		if got, _ := t.Groups.Lookup(uint32(g)); !slices.Equal(got, want) {
			return nil, fmt.Errorf("group %d in the dataplane: %v, want %v", g, got, want)
		}
	}
	return res, nil
}

// benchTopology is a one-switch fabric matching NewBenchSwitch's ports:
// "in" (a sender) and out<i> with receiver ids[i].
func benchTopology(ids []uint16) (*control.Topology, error) {
	var y strings.Builder
	y.WriteString("switches:\n  - {name: bench, role: leaf}\nhosts:\n  - {name: sender, attach: bench:in, receiver: false}\n")
	for i, id := range ids {
		fmt.Fprintf(&y, "  - {name: r%d, attach: bench:out%d, id: %d}\n", i, i, id)
	}
	return control.ParseTopology([]byte(y.String()))
}

// clockOffset returns dataplane.MonotonicNs minus CLOCK_MONOTONIC: of many
// readings of the dataplane clock bracketed by two of CLOCK_MONOTONIC, the
// one with the narrowest bracket, against the bracket's middle.
func clockOffset() int64 {
	best, off := int64(1<<62), int64(0)
	for range 2000 {
		a := int64(control.MonotonicNanos())
		d := dataplane.MonotonicNs()
		b := int64(control.MonotonicNanos())
		if b-a < best {
			best, off = b-a, d-(a+b)/2
		}
	}
	return off
}

func pct(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}
