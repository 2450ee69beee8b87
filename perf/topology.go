// The cluster-scale control benchmark (`sparsecast bench topology`): for a
// fabric description, as control run loads it, measure in one run
//
//  1. loading it, and computing every switch's primaries and backups
//     (control.ComputeRoutes), wall and CPU time, and the memory it keeps;
//  2. every switch's route table: entries, the ring bytes of its full
//     resync (64-byte records: BEGIN, 12 routes a record, COMMIT) and the
//     dataplane's table after applying it, per role;
//  3. a full resync of every switch, one after another, through a real
//     shared-memory ring file (in a fresh 0700 directory under /dev/shm) to
//     a real ring applier on a bench switch with as many ports as the
//     fabric's largest switch: control encoding and pushing, the applier
//     decoding, building and publishing each table;
//  4. link failures, each a random switch-to-switch link (seeded): the
//     incremental update (control.Routes.SetLink) and the push of every
//     changed switch's entries as a delta batch through the same ring,
//     then the link's repair.
//
// The ring applier runs in this process, polling without pinning; its
// apply time is the applier's own measure (COMMIT to publish).
package perf

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/control"
	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
)

// TopologyOptions configure BenchTopology.
type TopologyOptions struct {
	// Path is the fabric description.
	Path string
	// Failures is how many random links fail, one at a time (default 8).
	Failures int
	// Seed picks the links.
	Seed uint64
	// ShmDir is where the ring's directory goes (default /dev/shm).
	ShmDir string
	// ResyncSwitches bounds the switches the full resync goes through (0:
	// all); the total is then extrapolated from their mean, per role.
	ResyncSwitches int
}

// TopologyResult is what `sparsecast bench topology --json` prints for one
// fabric.
type TopologyResult struct {
	Topology  string `json:"topology"`
	Hosts     int    `json:"hosts"`
	Receivers int    `json:"receivers"`
	Switches  int    `json:"switches"`
	Links     int    `json:"links"`
	CPUs      int    `json:"cpus"`

	LoadSeconds float64 `json:"load_seconds"`
	// ComputeSeconds and ComputeCPUSeconds: control.ComputeRoutes, every
	// switch's primaries and backups, wall and this process's CPU time.
	ComputeSeconds    float64 `json:"compute_seconds"`
	ComputeCPUSeconds float64 `json:"compute_cpu_seconds"`
	// StateMB is what the routes keep (Routes.StateBytes); HeapMB the
	// process's live heap after computing, topology included.
	StateMB float64 `json:"state_mb"`
	HeapMB  float64 `json:"heap_mb"`

	Roles []RoleTables `json:"roles"`

	// Resync: every switch's full table through the ring, one after
	// another.
	ResyncSwitches     int     `json:"resync_switches"`
	ResyncSeconds      float64 `json:"resync_seconds"`
	ResyncControlSec   float64 `json:"resync_control_seconds"`
	ResyncApplyP50Us   float64 `json:"resync_apply_p50_us"`
	ResyncApplyMaxUs   float64 `json:"resync_apply_max_us"`
	ResyncExtrapolated bool    `json:"resync_extrapolated"`

	Failures []LinkFailure `json:"failures"`
	// FailureControlP50Ms and FailureControlMaxMs: recompute + push per
	// failure, the control time the 10 ms target is about.
	FailureControlP50Ms float64 `json:"failure_control_p50_ms"`
	FailureControlMaxMs float64 `json:"failure_control_max_ms"`
}

// RoleTables are the tables of one role's switches: min, median and max
// over them.
type RoleTables struct {
	Role     string `json:"role"`
	Switches int    `json:"switches"`
	Entries  [3]int `json:"entries"`
	// RingBytes is a full resync's records, 64 bytes each.
	RingBytes [3]int `json:"ring_bytes"`
	// DataplaneBytes is the applied route table (dataplane.RouteTable).
	DataplaneBytes int `json:"dataplane_bytes"`
	// ResyncUs is one switch's full resync, push to publish: median, max.
	ResyncUs [2]float64 `json:"resync_us"`
}

// LinkFailure is one link's failure and repair.
type LinkFailure struct {
	Link string `json:"link"`
	// RecomputeMs is Routes.SetLink, wall; RecomputeCPUMs its CPU.
	RecomputeMs    float64 `json:"recompute_ms"`
	RecomputeCPUMs float64 `json:"recompute_cpu_ms"`
	// PushMs is encoding and publishing the delta batches, one per
	// changed switch; ControlMs = RecomputeMs + PushMs.
	PushMs    float64 `json:"push_ms"`
	ControlMs float64 `json:"control_ms"`
	// ApplyMaxUs is the longest delta batch's apply at the applier.
	ApplyMaxUs      float64 `json:"apply_max_us"`
	ChangedSwitches int     `json:"changed_switches"`
	ChangedEntries  int     `json:"changed_entries"`
	// RepairMs is SetLink bringing it back, plus its push.
	RepairMs float64 `json:"repair_ms"`
}

// benchRing is the ring and the applier the bench pushes through.
type benchRing struct {
	rc      *control.RingClient
	applier *dataplane.RingApplier
	sw      *dataplane.BenchSwitch
	gen     uint64
	stop    func() error
}

func openBenchRing(ctx context.Context, dir string, ports int) (*benchRing, error) {
	b, err := dataplane.NewBenchSwitch(ports-1, 256, dataplane.PollAdaptive, -1)
	if err != nil {
		return nil, err
	}
	path := control.RingPath(dir, "bench")
	rf, err := ffi.OpenRingFile(path, 8192)
	if err != nil {
		return nil, err
	}
	applier, err := dataplane.NewRingApplier(b.Switch, rf, dataplane.RingApplierOptions{Sleep: 20 * time.Microsecond, MaxSleep: time.Millisecond})
	if err != nil {
		rf.Close()
		return nil, err
	}
	rc, err := control.OpenRing(path, 0)
	if err != nil {
		rf.Close()
		return nil, err
	}
	rc.SetPushTimeout(30 * time.Second)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- applier.Run(runCtx) }()
	br := &benchRing{rc: rc, applier: applier, sw: b}
	br.stop = func() error {
		cancel()
		err := <-done
		return errors.Join(err, rc.Close(), applier.Close())
	}
	// The applier's HELLO, answered by nothing: the bench drives the
	// generations itself.
	if err := waitFor(ctx, 5*time.Second, func() bool { boot, _ := rc.Dataplane(); return boot != 0 }); err != nil {
		br.stop()
		return nil, fmt.Errorf("the ring applier never started: %w", err)
	}
	return br, nil
}

// waitApplied waits for the applier to publish generation gen, checking
// the ring header every few microseconds (waitFor's millisecond would be
// most of a small batch's time).
func (br *benchRing) waitApplied(ctx context.Context, gen uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		if _, applied := br.rc.Dataplane(); applied >= gen {
			return nil
		}
		if i%64 == 63 {
			if time.Now().After(deadline) {
				return fmt.Errorf("timed out after %v", timeout)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			time.Sleep(10 * time.Microsecond)
		} else {
			runtime.Gosched()
		}
	}
}

func (br *benchRing) rejected() uint64 {
	n := uint64(0)
	for i := range br.applier.Counters().Rejected {
		n += br.applier.Counters().Rejected[i].Load()
	}
	return n
}

// push sends one batch and waits for its publish; it returns the control
// time (building and publishing the records) and the applier's apply time.
func (br *benchRing) push(ctx context.Context, send func(gen uint64) error) (ctl, apply time.Duration, err error) {
	br.gen++
	gen := br.gen
	t0 := time.Now()
	if err := send(gen); err != nil {
		return 0, 0, err
	}
	ctl = time.Since(t0)
	if err := br.waitApplied(ctx, gen, 30*time.Second); err != nil {
		return 0, 0, fmt.Errorf("generation %d never applied (%d rejected): %w", gen, br.rejected(), err)
	}
	return ctl, time.Duration(br.applier.Counters().LastApplyNanos.Load()), nil
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchTopology runs the benchmark described at the top of the file.
func BenchTopology(ctx context.Context, o TopologyOptions) (*TopologyResult, error) {
	if o.Failures == 0 {
		o.Failures = 8
	}
	if o.ShmDir == "" {
		o.ShmDir = "/dev/shm"
	}
	if o.Failures < 0 || o.Failures > 1000 {
		return nil, fmt.Errorf("failures %d: want 1-1000", o.Failures)
	}
	if o.ResyncSwitches < 0 {
		return nil, fmt.Errorf("resync switches %d: want 0 (all) or more", o.ResyncSwitches)
	}
	res := &TopologyResult{Topology: o.Path, CPUs: runtime.GOMAXPROCS(0)}
	t0 := time.Now()
	topo, err := control.LoadTopology(o.Path)
	if err != nil {
		return nil, err
	}
	res.LoadSeconds = time.Since(t0).Seconds()
	res.Hosts, res.Receivers, res.Switches, res.Links = len(topo.Hosts), len(topo.Receivers()), len(topo.Switches), len(topo.Links)

	runtime.GC()
	c0, t1 := cpuTime(), time.Now()
	routes, err := control.ComputeRoutes(topo, nil)
	if err != nil {
		return nil, err
	}
	res.ComputeSeconds, res.ComputeCPUSeconds = time.Since(t1).Seconds(), (cpuTime() - c0).Seconds()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapMB = float64(ms.HeapAlloc) / 1e6
	res.StateMB = float64(routes.StateBytes()) / 1e6

	maxPorts := 0
	for _, s := range topo.Switches {
		maxPorts = max(maxPorts, len(s.Ports))
	}
	if maxPorts < 2 || maxPorts > dataplane.MaxPorts {
		return nil, fmt.Errorf("largest switch has %d ports: the bench switch takes 2-%d", maxPorts, dataplane.MaxPorts)
	}
	dir, err := os.MkdirTemp(o.ShmDir, "sparsecast-bench-topology-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	br, err := openBenchRing(ctx, dir, maxPorts)
	if err != nil {
		return nil, err
	}
	defer br.stop()

	// Tables per role, and the full resync of every (or every sampled)
	// switch through the ring.
	type roleAcc struct {
		entries, ring []int
		resync        []float64
		total         int
	}
	roles := map[control.Role]*roleAcc{}
	var roleOrder []control.Role
	for _, s := range topo.Switches {
		if roles[s.Role] == nil {
			roles[s.Role] = &roleAcc{}
			roleOrder = append(roleOrder, s.Role)
		}
		roles[s.Role].total++
	}
	perRole := map[control.Role]int{}
	var applies []float64
	dpBytes := 0
	tResync := time.Now()
	var ctlResync time.Duration
	err = routes.EachTables(func(si int, st *control.SwitchTables) error {
		role := topo.Switches[si].Role
		acc := roles[role]
		acc.entries = append(acc.entries, len(st.Routes))
		acc.ring = append(acc.ring, headers.RingRecordLen*(2+(len(st.Routes)+headers.RoutesPerRec-1)/headers.RoutesPerRec))
		if o.ResyncSwitches > 0 && perRole[role] >= o.ResyncSwitches {
			return nil
		}
		perRole[role]++
		t0 := time.Now()
		ctl, apply, err := br.push(ctx, func(gen uint64) error { return br.rc.PushFull(gen, st) })
		if err != nil {
			return fmt.Errorf("full resync of %s: %w", st.Switch, err)
		}
		ctlResync += ctl
		acc.resync = append(acc.resync, float64(time.Since(t0))/1e3)
		applies = append(applies, float64(apply)/1e3)
		if dpBytes == 0 {
			dpBytes = br.sw.Switch.Tables().Routes.Bytes()
		}
		res.ResyncSwitches++
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.ResyncSeconds = time.Since(tResync).Seconds()
	res.ResyncControlSec = ctlResync.Seconds()
	if res.ResyncSwitches < res.Switches {
		// Extrapolate per role from the sampled switches' mean.
		res.ResyncExtrapolated = true
		total := 0.0
		for _, acc := range roles {
			sum := 0.0
			for _, v := range acc.resync {
				sum += v
			}
			total += sum / float64(len(acc.resync)) * float64(acc.total) / 1e6
		}
		res.ResyncSeconds = total
	}
	slices.Sort(applies)
	res.ResyncApplyP50Us, res.ResyncApplyMaxUs = pct(applies, 0.5), applies[len(applies)-1]
	for _, role := range roleOrder {
		acc := roles[role]
		slices.Sort(acc.entries)
		slices.Sort(acc.ring)
		slices.Sort(acc.resync)
		res.Roles = append(res.Roles, RoleTables{
			Role: string(role), Switches: acc.total,
			Entries:        [3]int{acc.entries[0], acc.entries[len(acc.entries)/2], acc.entries[len(acc.entries)-1]},
			RingBytes:      [3]int{acc.ring[0], acc.ring[len(acc.ring)/2], acc.ring[len(acc.ring)-1]},
			DataplaneBytes: dpBytes,
			ResyncUs:       [2]float64{pct(acc.resync, 0.5), acc.resync[len(acc.resync)-1]},
		})
	}

	// Link failures.
	rng := rand.New(rand.NewPCG(o.Seed, 0x5ca1e))
	pushDeltas := func(deltas []control.RouteDelta) (time.Duration, float64, error) {
		var ctl time.Duration
		maxApply := 0.0
		for _, d := range deltas {
			c, apply, err := br.push(ctx, func(gen uint64) error { return br.rc.PushRoutes(gen, d.Routes) })
			if err != nil {
				return 0, 0, fmt.Errorf("routes of %s: %w", topo.Switches[d.Switch].Name, err)
			}
			ctl += c
			maxApply = max(maxApply, float64(apply)/1e3)
		}
		return ctl, maxApply, nil
	}
	var controls []float64
	for range o.Failures {
		l := control.LinkID(rng.IntN(len(topo.Links)))
		lf := LinkFailure{Link: topo.Links[l].Description}
		c0, t0 := cpuTime(), time.Now()
		deltas, err := routes.SetLink(l, true)
		if err != nil {
			return nil, err
		}
		rec := time.Since(t0)
		lf.RecomputeCPUMs = float64(cpuTime()-c0) / 1e6
		ctl, maxApply, err := pushDeltas(deltas)
		if err != nil {
			return nil, err
		}
		lf.RecomputeMs, lf.PushMs = float64(rec)/1e6, float64(ctl)/1e6
		lf.ControlMs = lf.RecomputeMs + lf.PushMs
		lf.ApplyMaxUs = maxApply
		lf.ChangedSwitches = len(deltas)
		for _, d := range deltas {
			lf.ChangedEntries += len(d.Routes)
		}
		t0 = time.Now()
		deltas, err = routes.SetLink(l, false)
		if err != nil {
			return nil, err
		}
		rec = time.Since(t0)
		if ctl, _, err = pushDeltas(deltas); err != nil {
			return nil, err
		}
		lf.RepairMs = float64(rec+ctl) / 1e6
		res.Failures = append(res.Failures, lf)
		controls = append(controls, lf.ControlMs)
	}
	slices.Sort(controls)
	if len(controls) > 0 {
		res.FailureControlP50Ms, res.FailureControlMaxMs = pct(controls, 0.5), controls[len(controls)-1]
	}
	if n := br.rejected(); n > 0 {
		return nil, fmt.Errorf("the ring applier rejected %d batches", n)
	}
	return res, nil
}
