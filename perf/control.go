// The control update benchmark: how long a group change takes from control
// to the dataplane's published tables, through the real pieces, each in a
// process of its own as on a switch.
//
//  1. A child process (this binary again: `sparsecast bench
//     control-dataplane`, hidden) runs the dataplane: a bench switch
//     (dataplane.NewBenchSwitch: one input port, one port per receiver),
//     a ring file in a fresh directory under /dev/shm and a busy-polling
//     RingApplier on it, the process confined to one CPU.
//  2. This process runs a control server, its topology that same switch,
//     serving the ring and its API on a temporary Unix socket, and keeps
//     off the applier's CPU too.
//  3. Updates member-add requests go through the API one after another,
//     and the server's OnApplied hook collects, per update, the request's
//     arrival, the hand-over to the ring and the dataplane's publish
//     (CLOCK_MONOTONIC, the publish time from the APPLIED event).
//  4. Closing the child's standard input stops it; it answers with its
//     applier's stalls (see dataplane.StallLog) and its group table, which
//     must hold what the API was told.
//
// One process for both would measure something no switch does: control's
// API garbage (12 KB an update) starting GC cycles beside the applier, a
// 9 ms stop seen once a run. Everything is removed afterwards.
package perf

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
	// StateDir, if set, keeps the groups in a state file (control run's
	// bbolt store, each change fsynced before the API answers) in a fresh
	// directory under it, removed afterwards; empty: in memory.
	StateDir string
	// Child makes the command that runs the dataplane half with args
	// (RunControlDataplane's flags); default: this executable's `bench
	// control-dataplane`.
	Child func(args ...string) *exec.Cmd
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
	// State is the state file the groups were kept in ("": memory).
	State string `json:"state,omitempty"`
	// TargetP99Us is the update p99 goal.
	TargetP99Us float64 `json:"target_p99_us"`
	// ClockOffsetUs is dataplane.MonotonicNs minus CLOCK_MONOTONIC as
	// measured in this process, subtracted from the publish times.
	ClockOffsetUs    float64 `json:"clock_offset_us"`
	MeetsTarget      bool    `json:"meets_target"`
	Seconds          float64 `json:"seconds"`
	UpdatesPerSecond float64 `json:"updates_per_second"`
	Rejected         uint64  `json:"rejected"`
	// GCCycles, AllocBytesPerUpdate and PageFaultsPerUpdate are the
	// control process's (control, its API and the client) while the
	// updates ran; DataplaneGCCycles the dataplane process's, whose
	// applier a GC cycle would stop.
	GCCycles            uint32  `json:"gc_cycles"`
	AllocBytesPerUpdate float64 `json:"alloc_bytes_per_update"`
	PageFaultsPerUpdate float64 `json:"page_faults_per_update"`
	DataplaneGCCycles   uint32  `json:"dataplane_gc_cycles"`
	CPU                 int     `json:"cpu"`
	IntervalUs          float64 `json:"interval_us"`
	// Stalls, StallPct and StallFloorP99Us describe the applier's CPU while
	// the updates ran (busy polling only): how many gaps of over
	// dataplane.StallMin it had between two polls of an empty ring, the
	// share of the time they took, and the update p99 that an applier
	// taking no time at all would have shown, an update waiting out the
	// rest of the gap it arrives in. That is this machine's floor for
	// update_p99_us, measured in the same run.
	Stalls          uint64  `json:"stalls"`
	StallPct        float64 `json:"stall_pct"`
	StallFloorP99Us float64 `json:"stall_floor_p99_us"`
}

// DefaultControlCPU is the CPU bench control pins its applier to: the last
// one, the rest of the process kept off it, as a switch would give its
// ring applier a core (control_cpu). -1 (unpinned) on a one-CPU machine.
func DefaultControlCPU() int {
	if n := runtime.NumCPU(); n > 1 {
		return n - 1
	}
	return -1
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
	if o.Child == nil {
		o.Child = func(args ...string) *exec.Cmd {
			exe, err := os.Executable()
			if err != nil {
				exe = os.Args[0]
			}
			return exec.Command(exe, append([]string{"bench", "control-dataplane"}, args...)...)
		}
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
	ids := benchIDs(o.Receivers)
	topo, err := benchTopology(ids)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp(o.ShmDir, "sparsecast-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	dp, err := startControlDataplane(o, control.RingPath(dir, "bench"))
	if err != nil {
		return nil, err
	}
	defer dp.kill()
	if got, want := topo.PortNames("bench"), dp.ports; !slices.Equal(got, want) {
		return nil, fmt.Errorf("bench topology ports %v, bench switch ports %v", got, want)
	}
	if o.CPU >= 0 {
		// The child's applier has o.CPU; this process keeps off it. (The
		// runtime follows the narrower affinity with fewer Ps.)
		restore, err := avoidCPU(o.CPU)
		if err != nil {
			return nil, err
		}
		defer restore()
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
	var store control.StateStore
	if o.StateDir != "" {
		sdir, err := os.MkdirTemp(o.StateDir, "sparsecast-bench-state-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(sdir)
		bs, err := control.OpenBoltStore(sdir, time.Second)
		if err != nil {
			return nil, err
		}
		defer bs.Close()
		store = bs
		res.State = bs.Describe()
	}
	srv, err := control.NewServer(topo, control.ServerOptions{
		RingDir: dir, Store: store,
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
	errs := make(chan error, 2)
	wg.Add(2)
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
	from := dataplane.MonotonicNs()
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
	to := dataplane.MonotonicNs()
	st := srv.Status().Switches[0]
	ferr := finish()
	report, derr := dp.stop()
	if err != nil {
		return nil, fmt.Errorf("%d of %d updates timed (switch at generation %d, applied %d, %d rejected): %w",
			len(updates), o.Updates, st.Generation, st.Applied, st.Rejected, err)
	}
	if err := errors.Join(ferr, derr); err != nil {
		return nil, err
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
	res.DataplaneGCCycles = report.GCCycles
	var gaps []time.Duration
	for _, s := range report.Stalls {
		if s.End >= from && s.End <= to {
			gaps = append(gaps, s.Len)
		}
	}
	if len(gaps) > 0 {
		window := time.Duration(to - from)
		res.Stalls = uint64(len(gaps))
		var sum time.Duration
		for _, g := range gaps {
			sum += g
		}
		res.StallPct = 100 * sum.Seconds() / window.Seconds()
		res.StallFloorP99Us = float64(waitQuantile(gaps, window, 0.99)) / 1e3
	}
	// The dataplane's tables hold what the API was told.
	if len(report.Groups) != res.Groups {
		return nil, fmt.Errorf("the dataplane has %d groups, want %d", len(report.Groups), res.Groups)
	}
	for g := range res.Groups {
		want := ids
		if last := o.Updates - g*len(ids); last < len(ids) {
			want = slices.Sorted(slices.Values(ids[:last]))
		}
		if got := report.Groups[strconv.Itoa(g)]; !slices.Equal(got, want) {
			return nil, fmt.Errorf("group %d in the dataplane: %v, want %v", g, got, want)
		}
	}
	return res, nil
}

// benchIDs are a bench switch's receivers (NewBenchSwitch routes receiver
// 1+97i to port out<i>, port i+1; bench dpdk addresses the same).
func benchIDs(n int) []uint16 {
	ids := make([]uint16, n)
	for i := range ids {
		ids[i] = uint16(1 + i*97)
	}
	return ids
}

// controlDataplaneReport is what the dataplane half prints when it stops.
type controlDataplaneReport struct {
	Stalls   []dataplane.Stall   `json:"stalls"`
	Groups   map[string][]uint16 `json:"groups"`
	GCCycles uint32              `json:"gc_cycles"`
}

// controlDataplane is the running child.
type controlDataplane struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr *strings.Builder
	ports  []string
}

// startControlDataplane starts the dataplane half and waits until its
// applier runs on the ring file at ring.
func startControlDataplane(o ControlOptions, ring string) (*controlDataplane, error) {
	cmd := o.Child("--ring", ring, "--receivers", strconv.Itoa(o.Receivers), "--cpu", strconv.Itoa(o.CPU))
	// The child dies with this process (and its standard input closes).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d := &controlDataplane{cmd: cmd, stderr: &strings.Builder{}}
	cmd.Stderr = d.stderr
	var err error
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	d.out = bufio.NewReaderSize(stdout, 1<<20)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the dataplane half: %w", err)
	}
	line, err := d.out.ReadString('\n')
	var ready struct {
		Ports []string `json:"ports"`
	}
	if err == nil {
		err = json.Unmarshal([]byte(line), &ready)
	}
	if err != nil || len(ready.Ports) == 0 {
		d.kill()
		return nil, fmt.Errorf("the dataplane half did not start (%v): %s", err, strings.TrimSpace(d.stderr.String()))
	}
	d.ports = ready.Ports
	return d, nil
}

// stop closes the child's input and reads its report.
func (d *controlDataplane) stop() (*controlDataplaneReport, error) {
	d.stdin.Close()
	var r controlDataplaneReport
	derr := json.NewDecoder(d.out).Decode(&r)
	werr := d.cmd.Wait()
	if derr != nil || werr != nil {
		return nil, fmt.Errorf("the dataplane half: %w: %s", errors.Join(derr, werr), strings.TrimSpace(d.stderr.String()))
	}
	return &r, nil
}

func (d *controlDataplane) kill() {
	if d.cmd.ProcessState == nil {
		d.cmd.Process.Kill()
		d.cmd.Wait()
	}
}

// RunControlDataplane is bench control's dataplane half (`sparsecast bench
// control-dataplane`): it creates the ring file at ring, runs a bench switch
// with receivers ports and a busy-polling applier on it (the process
// confined to cpu and the applier pinned there, unless cpu is -1), prints a line of
// JSON with the switch's ports once the applier runs, and when in ends,
// stops and prints its report (controlDataplaneReport) to out.
func RunControlDataplane(ctx context.Context, ring string, receivers, cpu int, in io.Reader, out io.Writer) error {
	if receivers < 1 || receivers > dataplane.MaxPorts-1 {
		return fmt.Errorf("receivers %d: want 1-%d", receivers, dataplane.MaxPorts-1)
	}
	if cpu < -1 || cpu >= runtime.NumCPU() {
		return fmt.Errorf("cpu %d: want -1 or 0-%d", cpu, runtime.NumCPU()-1)
	}
	if cpu >= 0 {
		// The whole process goes on cpu, not just the applier's thread:
		// the runtime preempts a goroutine that runs for 10 ms, and a
		// locked one resumes only when another thread hands its P back.
		// On a CPU that this process keeps off, that thread waited for
		// control's busy threads, 1-3 ms a few times a run. The rest of
		// this process only waits for its input.
		restore, err := confineThreads(cpu)
		if err != nil {
			return err
		}
		defer restore()
	}
	b, err := dataplane.NewBenchSwitch(receivers, 256, dataplane.PollAdaptive, -1)
	if err != nil {
		return err
	}
	rf, err := ffi.OpenRingFile(ring, 4096)
	if err != nil {
		return err
	}
	defer rf.Close()
	applier, err := dataplane.NewRingApplier(b.Switch, rf, dataplane.RingApplierOptions{BusyPoll: true, Pin: cpu >= 0, CPU: cpu})
	if err != nil {
		return err
	}
	warmHeap()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- applier.Run(runCtx) }()
	ready, _ := json.Marshal(map[string]any{"ports": b.PortNames()})
	if _, err := fmt.Fprintf(out, "%s\n", ready); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, in)
	stop()
	if err := <-done; err != nil {
		return err
	}
	runtime.ReadMemStats(&ms1)
	t := b.Switch.Tables()
	r := controlDataplaneReport{
		Stalls:   applier.StallLog(0, 1<<62),
		Groups:   map[string][]uint16{},
		GCCycles: ms1.NumGC - ms0.NumGC,
	}
	for id, m := range t.Groups.All() {
		r.Groups[strconv.FormatUint(uint64(id), 10)] = m
	}
	return json.NewEncoder(out).Encode(&r)
}

// warmHeap makes the heap as big as the garbage collector lets it grow
// before its next cycle, touches it and collects it. Fresh heap memory
// costs a page fault at first touch (15-25 µs a page on the development
// VM), and without this the applier met one every dozen updates, in
// memory its first allocations after start-up were the first to use. A
// switch that has run for a while has been through such cycles; the
// benchmark starts there rather than timing its own start-up.
func warmHeap() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	const chunk = 1 << 20
	junk := make([][]byte, 0, (ms.NextGC-min(ms.NextGC, ms.HeapAlloc))/chunk)
	for range cap(junk) {
		b := make([]byte, chunk)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		junk = append(junk, b)
	}
	junk = nil
	runtime.GC()
}

// waitQuantile is the q-quantile of how long something arriving at a
// uniformly random moment of window waits, when the gaps are the times
// nobody is there to take it: the smallest x for which the time that
// leaves more than x to wait, the sum over gaps of max(0, gap-x), is at
// most (1-q) of the window.
func waitQuantile(gaps []time.Duration, window time.Duration, q float64) time.Duration {
	budget := time.Duration((1 - q) * float64(window))
	over := func(x time.Duration) time.Duration {
		var t time.Duration
		for _, g := range gaps {
			t += max(0, g-x)
		}
		return t
	}
	lo, hi := time.Duration(0), slices.Max(gaps)
	for lo < hi {
		mid := lo + (hi-lo)/2
		if over(mid) <= budget {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
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
