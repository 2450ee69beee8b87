// The control ring applier (docs/control.md): a goroutine of the switch, not
// a worker, that reads command batches from the ring file, checks every
// record, builds the next Tables off the fast path and publishes it with one
// atomic store. In: 64-byte records (headers.Record) from the command ring.
// Out: a new snapshot per good batch, and HELLO / APPLIED / REJECTED events
// (plus the LINK / REROUTED events others Emit) on the event ring. A bad
// batch is refused whole and counted; nothing on the ring can stop it. A
// ring file that faults under the mapping (truncated by someone) is dropped,
// counted and reopened; the switch forwards on its last tables meanwhile.
package dataplane

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
)

// RingApplierOptions tune how the applier waits for commands.
type RingApplierOptions struct {
	// BusyPoll spins on the command ring forever: a core of its own, as
	// on a switch whose workers busy-poll (config control_poll_mode:
	// busy). Otherwise the applier spins Spin empty polls, then sleeps
	// until a record arrives: Sleep first, each further sleep twice the
	// last up to MaxSleep. That costs up to MaxSleep plus a wake-up per
	// update after a quiet spell, but no core (labs, many switches per
	// machine): at a fixed 50 µs, six idle lab switches spent about half
	// of the lab machine's two cores waking appliers (and the Go
	// runtime's sysmon, which a thread parked in nanosleep keeps at its
	// 20 µs tick).
	BusyPoll bool
	// Pin, with BusyPoll, locks the applier to one OS thread bound to
	// CPU, like a worker with a cpus entry.
	Pin bool
	CPU int
	// Spin is the number of empty polls before sleeping (default 64).
	Spin int
	// Sleep is the first idle sleep (default 50µs, at most 10ms), MaxSleep
	// the longest (default 1ms, at least Sleep, at most 10ms).
	Sleep, MaxSleep time.Duration
	// Log receives a line when the ring is dropped after a fault and when
	// it is reopened (nil: io.Discard).
	Log io.Writer
	// Reopen is how long the applier waits between attempts to reopen a
	// dropped ring (default 100ms).
	Reopen time.Duration
}

// RingCounters are the applier's counters, read by the metrics collector.
type RingCounters struct {
	// BatchesApplied counts published batches.
	BatchesApplied atomic.Uint64
	// Rejected counts refused batches (and records outside any batch) by
	// rejection code (headers.Reject*).
	Rejected [headers.NumRejectCodes]atomic.Uint64
	// Generation is the last applied generation.
	Generation atomic.Uint64
	// EventsDropped counts events not sent because the event ring was full
	// (or, for Emit, because the record was malformed).
	EventsDropped atomic.Uint64
	// LastApplyNanos is how long the last good batch took from its COMMIT
	// leaving the ring to the publish.
	LastApplyNanos atomic.Uint64
	// Stalls and StallNanos count, for a busy-polling applier, the gaps
	// between two polls of the ring (not counting the handling of what
	// the first found) longer than StallMin, and their total length: time
	// its CPU spent on something else (interrupts, other threads, the
	// Go runtime, a hypervisor). A command arriving then waits.
	Stalls     atomic.Uint64
	StallNanos atomic.Uint64
	// BadRecords counts command records that failed their check, each as
	// it arrives (Rejected counts the batches, at their end, which an
	// unterminated batch never reaches).
	BadRecords atomic.Uint64
	// Resyncs counts the times the command ring's indexes were impossible
	// (a corrupted file) and the applier skipped to the producer's.
	Resyncs atomic.Uint64
	// Faults counts memory faults in the mapped ring file (it shrank under
	// the mapping): each drops the ring until it is reopened.
	Faults atomic.Uint64
	// Reopens counts rings reopened after a fault.
	Reopens atomic.Uint64
	// Connected is 1 while the applier has a ring mapped, 0 after a fault
	// until the reopen.
	Connected atomic.Uint64
}

// StallMin is the shortest gap between two polls that a busy-polling
// applier counts as a stall: an empty poll takes tens of nanoseconds.
const StallMin = 2 * time.Microsecond

// stallLogLen is how many stalls a busy-polling applier keeps (the newest),
// for StallLog: 1 MiB, allocated at start.
const stallLogLen = 1 << 16

// RingApplier applies command batches from a ring file to a Switch.
type RingApplier struct {
	sw       *Switch
	rf       *ffi.RingFile
	cmd, evq *ffi.SPSC
	opts     RingApplierOptions
	nports   int
	bootID   uint64
	applied  uint64 // owned by Run; mirrored in the header and Counters
	counters *RingCounters

	// emitMu guards the event ring (emitters on any goroutine) and the
	// swap of rf, cmd and evq when Run drops and reopens the file.
	emitMu  sync.Mutex
	path    string
	slots   int
	faulted atomic.Bool // an emitter hit a fault: Run drops the ring
	resyncs uint64      // cmd.Resyncs() already counted
	log     io.Writer

	// The batch being assembled (Run's goroutine only).
	inBatch  bool
	gen      uint64
	full     bool
	index    uint32 // records of the batch seen so far; BEGIN is 0
	badCode  uint32 // first rejection code, 0 while the batch is good
	badIndex uint32
	badKind  headers.RecordKind
	base     *Tables
	routes   *RouteTable // staged routes, nil until the batch touches routes
	// Staged group changes, applied to the base snapshot's GroupTable at
	// COMMIT (or built into a new one for a full resync). Every staged
	// slice was allocated by this batch, so it may still be appended to.
	// The maps are cleared, not dropped, between batches: a delta batch
	// allocates only what it publishes.
	touched bool // the batch changes groups
	staged  map[uint32][]uint16
	gone    map[uint32]bool // deleted by this batch (and not set again)

	rec [headers.RingRecordLen]byte
	out [headers.RingRecordLen]byte

	// stallLog holds a busy-polling applier's newest stallLogLen stalls;
	// Counters().Stalls is the total.
	stallLog []Stall
}

// NewRingApplier attaches an applier to sw over the ring file rf. As a
// (re)started dataplane it writes a fresh random boot ID and applied
// generation 0 into the header, drops whatever commands its predecessor left
// (control answers the HELLO with a full resync) and sends HELLO.
func NewRingApplier(sw *Switch, rf *ffi.RingFile, opts RingApplierOptions) (*RingApplier, error) {
	if opts.Spin == 0 {
		opts.Spin = 64
	}
	if opts.Sleep == 0 {
		opts.Sleep = 50 * time.Microsecond
	}
	if opts.MaxSleep == 0 {
		opts.MaxSleep = max(time.Millisecond, opts.Sleep)
	}
	if opts.Reopen == 0 {
		opts.Reopen = 100 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Spin < 0 || opts.Sleep < 0 || opts.Sleep > 10*time.Millisecond || opts.MaxSleep < opts.Sleep || opts.MaxSleep > 10*time.Millisecond {
		return nil, fmt.Errorf("ring applier: spin %d, sleep %v, max sleep %v: want spin >= 0 and sleep <= max sleep <= 10ms", opts.Spin, opts.Sleep, opts.MaxSleep)
	}
	if opts.Pin && (!opts.BusyPoll || opts.CPU < 0 || opts.CPU >= runtime.NumCPU()) {
		return nil, fmt.Errorf("ring applier: pinned to CPU %d (busy poll %v): want busy polling and a CPU from 0 to %d", opts.CPU, opts.BusyPoll, runtime.NumCPU()-1)
	}
	if sw.NumPorts() > headers.RingNoPort {
		return nil, fmt.Errorf("ring applier: %d ports: ring records address at most %d", sw.NumPorts(), headers.RingNoPort)
	}
	a := &RingApplier{
		sw: sw, rf: rf, cmd: rf.Commands(), evq: rf.Events(), opts: opts,
		nports: sw.NumPorts(), counters: &RingCounters{},
		staged: map[uint32][]uint16{}, gone: map[uint32]bool{},
		path: rf.Path(), slots: rf.Slots(), log: opts.Log,
	}
	if opts.BusyPoll {
		a.stallLog = make([]Stall, stallLogLen)
	}
	var err error
	if ferr := ffi.CatchRingFault(func() { err = a.attach(rf) }); ferr != nil {
		return nil, fmt.Errorf("ring applier: %s: %w", rf.Path(), ferr)
	}
	return a, err
}

// attach takes rf as the applier's ring, as a (re)started dataplane: a new
// boot ID, the applied generation (0 at start), commands left over dropped
// (control answers the HELLO with a full resync), HELLO sent. The caller
// catches ring faults.
func (a *RingApplier) attach(rf *ffi.RingFile) error {
	a.emitMu.Lock()
	a.rf, a.cmd, a.evq = rf, rf.Commands(), rf.Events()
	a.resyncs = a.cmd.Resyncs()
	a.emitMu.Unlock()
	a.bootID = 0
	for a.bootID == 0 {
		a.bootID = rand.Uint64()
	}
	rf.SetAppliedGeneration(a.applied)
	rf.SetDataplaneBootID(a.bootID)
	a.cmd.Drain()
	a.counters.Connected.Store(1)
	a.emit(headers.Hello(a.out[:], a.bootID, 0))
	return nil
}

// drop unmaps a ring that faulted: the batch in progress is abandoned
// (rejected in the counters; control resyncs after the reopen anyway), the
// tables stay as published.
func (a *RingApplier) drop(cause error) {
	a.counters.Faults.Add(1)
	a.counters.Connected.Store(0)
	if a.inBatch {
		// No event ring to report it on: counted, then forgotten.
		a.counters.Rejected[headers.RejectOrder].Add(1)
		a.badCode = 0
		a.finish()
	}
	a.emitMu.Lock()
	rf := a.rf
	a.rf, a.cmd, a.evq = nil, nil, nil
	a.emitMu.Unlock()
	a.faulted.Store(false)
	if rf != nil {
		rf.Close()
	}
	fmt.Fprintf(a.log, "control ring %s dropped: %v; forwarding on generation %d's tables, reopening\n", a.path, cause, a.applied)
}

// reopen maps the ring file again until it succeeds or ctx ends: a file
// emptied by the truncation is reinitialised at the old size (control still
// maps that), one control has reinitialised is taken as it is.
func (a *RingApplier) reopen(ctx context.Context) bool {
	last := ""
	for {
		slots := a.slots
		if st, err := os.Stat(a.path); err == nil && st.Size() > 0 {
			// Control reinitialised it first: take its size.
			slots = 0
		}
		rf, err := ffi.OpenRingFile(a.path, slots)
		if err == nil {
			a.slots = rf.Slots()
			if ferr := ffi.CatchRingFault(func() { err = a.attach(rf) }); ferr != nil {
				a.drop(ferr)
				err = ferr
			} else {
				a.counters.Reopens.Add(1)
				fmt.Fprintf(a.log, "control ring %s reopened (boot %016x)\n", a.path, a.bootID)
				return true
			}
		}
		if msg := err.Error(); msg != last {
			fmt.Fprintf(a.log, "control ring %s: reopening: %v (retrying every %v)\n", a.path, err, a.opts.Reopen)
			last = msg
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(a.opts.Reopen):
		}
	}
}

// Close unmaps the ring file (which stays for control). Call it after Run
// has returned.
func (a *RingApplier) Close() error {
	a.emitMu.Lock()
	defer a.emitMu.Unlock()
	if a.rf == nil {
		return nil
	}
	err := a.rf.Close()
	a.rf, a.cmd, a.evq = nil, nil, nil
	return err
}

// BootID is the boot ID this applier wrote into the header.
func (a *RingApplier) BootID() uint64 { return a.bootID }

// Counters returns the applier's counters.
func (a *RingApplier) Counters() *RingCounters { return a.counters }

// Run polls the command ring until ctx ends. A memory fault in the mapped
// file drops the ring and reopens it (see drop); nothing on or in the file
// stops Run.
func (a *RingApplier) Run(ctx context.Context) error {
	if a.opts.Pin {
		// Affinity belongs to a thread, so the goroutine must keep its
		// own. Unpinned, it stays unlocked: a locked goroutine that the
		// runtime preempts (every 10 ms of spinning) resumes only after
		// two thread hand-offs instead of one scheduler pass.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var set unix.CPUSet
		set.Set(a.opts.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("ring applier: pinning to CPU %d: %w", a.opts.CPU, err)
		}
	}
	for {
		if a.cmd == nil && !a.reopen(ctx) {
			return nil
		}
		var err error
		fault := ffi.CatchRingFault(func() { err = a.poll(ctx) })
		if fault == nil && err != errRingFaulted {
			return err
		}
		if fault == nil {
			fault = err
		}
		a.drop(fault)
	}
}

// poll is Run's loop over one mapping of the ring: it returns nil when ctx
// ends, errRingFaulted when an emitter found the mapping faulted, and
// panics (caught by Run) when it faults itself.
func (a *RingApplier) poll(ctx context.Context) error {
	done := ctx.Done()
	idle := 0
	sleep := a.opts.Sleep
	last := MonotonicNs()
	for {
		if a.opts.BusyPoll {
			// A clock read per poll (the vDSO, ~20 ns) finds the times this
			// core was taken away, whether or not a command was waiting
			// when it came back: see StallLog.
			now := MonotonicNs()
			if gap := now - last; gap > int64(StallMin) {
				a.noteStall(now, gap)
			}
			last = now
		}
		if a.cmd.TryPop(a.rec[:]) {
			a.handle(headers.Record(a.rec[:]))
			idle, sleep = 0, a.opts.Sleep
			if a.opts.BusyPoll {
				last = MonotonicNs()
			}
			continue
		}
		select {
		case <-done:
			return nil
		default:
		}
		if r := a.cmd.Resyncs(); r != a.resyncs {
			a.counters.Resyncs.Add(r - a.resyncs)
			a.resyncs = r
		}
		if a.faulted.Load() {
			return errRingFaulted
		}
		if a.opts.BusyPoll {
			continue
		}
		if idle < a.opts.Spin {
			idle++
			continue
		}
		a.idleSleep(sleep)
		sleep = min(2*sleep, a.opts.MaxSleep)
	}
}

// idleSleep waits d. Below a millisecond, a plain nanosleep: Go timers
// round sub-millisecond sleeps up when the process is otherwise idle. From
// a millisecond on, a Go timer: the goroutine parks and no thread sits in
// a system call, so the runtime's sysmon, which keeps its 20 µs tick while
// one does, backs off to its 10 ms one.
func (a *RingApplier) idleSleep(d time.Duration) {
	if d < time.Millisecond {
		ts := unix.NsecToTimespec(int64(d))
		unix.Nanosleep(&ts, nil)
		return
	}
	time.Sleep(d)
}

func (a *RingApplier) noteStall(end, gap int64) {
	n := a.counters.Stalls.Add(1)
	a.counters.StallNanos.Add(uint64(gap))
	a.stallLog[(n-1)%stallLogLen] = Stall{End: end, Len: time.Duration(gap)}
}

// Stall is one gap in a busy-polling applier's polling.
type Stall struct {
	End int64         `json:"end_ns"` // CLOCK_MONOTONIC (MonotonicNs) when polling resumed
	Len time.Duration `json:"ns"`
}

// StallLog returns the busy-polling applier's stalls that ended in
// [from, to] (CLOCK_MONOTONIC ns), as far as the log still holds them (the
// newest 65,536). Call it only after Run has returned. Nil for an applier
// that sleeps.
func (a *RingApplier) StallLog(from, to int64) []Stall {
	n := a.counters.Stalls.Load()
	var out []Stall
	for i := n - min(n, uint64(len(a.stallLog))); i < n; i++ {
		if st := a.stallLog[i%stallLogLen]; st.End >= from && st.End <= to {
			out = append(out, st)
		}
	}
	return out
}

// errRingFaulted stands for a fault an emitter caught on another goroutine.
var errRingFaulted = ffi.ErrRingFault

// Poll handles every waiting command on the calling goroutine and returns
// how many it took: for tests and benchmarks that drive the applier
// themselves instead of calling Run (never both at once). A fault drops
// the ring, and the next Poll tries once to reopen it.
func (a *RingApplier) Poll() int {
	if a.cmd == nil {
		rf, err := ffi.OpenRingFile(a.path, a.slots)
		if err != nil {
			return 0
		}
		if ferr := ffi.CatchRingFault(func() { a.attach(rf) }); ferr != nil {
			a.drop(ferr)
			return 0
		}
		a.counters.Reopens.Add(1)
	}
	n := 0
	if fault := ffi.CatchRingFault(func() {
		for a.cmd.TryPop(a.rec[:]) {
			a.handle(headers.Record(a.rec[:]))
			n++
		}
		if r := a.cmd.Resyncs(); r != a.resyncs {
			a.counters.Resyncs.Add(r - a.resyncs)
			a.resyncs = r
		}
	}); fault != nil {
		a.drop(fault)
	}
	return n
}

// handle takes one command record.
func (a *RingApplier) handle(r headers.Record) {
	code := r.Validate(a.nports)
	k := r.Kind()
	if code == 0 && !k.IsCommand() {
		code = headers.RejectKind
	}
	if code != 0 {
		a.counters.BadRecords.Add(1)
	}
	if !a.inBatch {
		switch {
		case code != 0:
			a.reject(r.Generation(), code, k, 0)
		case k != headers.CmdBegin:
			a.reject(r.Generation(), headers.RejectOrder, k, 0)
		default:
			a.begin(r)
		}
		return
	}
	a.index++
	if code == 0 && k == headers.CmdBegin {
		// A new batch while one is open: its producer gave up on the
		// open one (a control restart, a push timeout). Refuse the open
		// batch and start the new one.
		a.fail(headers.RejectOrder, k)
		a.finish()
		a.begin(r)
		return
	}
	if code == 0 && r.Generation() != a.gen {
		code = headers.RejectOrder
	}
	if r.Kind() == headers.CmdCommit && r.Version() == headers.RingVersion {
		// Whatever else is wrong with it, a COMMIT ends the batch, so that
		// a refusal is reported now rather than at the next BEGIN.
		if code != 0 || a.badCode != 0 {
			a.fail(code, k)
			a.finish()
			return
		}
		a.commit()
		return
	}
	if code != 0 {
		a.fail(code, k)
	}
	if a.badCode != 0 {
		return
	}
	switch k {
	case headers.CmdRoutes:
		rt := a.stageRoutes()
		for i := range r.Count() {
			id, p, b := r.Route(i)
			rt.SetWithBackup(id, p, b)
		}
	case headers.CmdGroupSet:
		m := make([]uint16, r.Count())
		for i := range m {
			m[i] = r.Member(i)
		}
		a.setGroup(r.Group(), m)
	case headers.CmdGroupAdd:
		a.groupAdd(r)
	case headers.CmdGroupRemove:
		a.groupRemove(r)
	case headers.CmdGroupDelete:
		id := r.Group()
		if _, ok := a.group(id); !ok {
			a.fail(headers.RejectGroup, k)
			return
		}
		a.touched = true
		delete(a.staged, id)
		a.gone[id] = true
	}
}

func (a *RingApplier) begin(r headers.Record) {
	a.inBatch = true
	a.gen = r.Generation()
	a.full = r.Full()
	a.index = 0
	a.badCode = 0
	a.base = a.sw.Tables()
	if a.gen <= a.applied {
		a.fail(headers.RejectGeneration, headers.CmdBegin)
		return
	}
	if a.full {
		a.routes = NewRouteTable()
		a.touched = true
	}
}

// fail marks the batch bad at the current record (the first failure wins).
func (a *RingApplier) fail(code uint32, k headers.RecordKind) {
	if a.badCode == 0 && code != 0 {
		a.badCode, a.badIndex, a.badKind = code, a.index, k
	}
}

// finish ends the batch: a bad one is reported; staged state is dropped.
func (a *RingApplier) finish() {
	if a.badCode != 0 {
		a.reject(a.gen, a.badCode, a.badKind, a.badIndex)
	}
	a.inBatch = false
	a.base, a.routes, a.touched = nil, nil, false
	if len(a.staged) > 1024 {
		// A full resync's worth: let the memory go rather than keep it
		// for the next one.
		a.staged = map[uint32][]uint16{}
	}
	clear(a.staged)
	clear(a.gone)
}

func (a *RingApplier) reject(gen uint64, code uint32, k headers.RecordKind, index uint32) {
	if code < headers.NumRejectCodes {
		a.counters.Rejected[code].Add(1)
	}
	a.emit(headers.Rejected(a.out[:], gen, code, k, index))
}

// stageRoutes returns the batch's route table, cloning the current one the
// first time a delta touches routes.
func (a *RingApplier) stageRoutes() *RouteTable {
	if a.routes == nil {
		a.routes = a.sw.cloneRoutes(a.base.Routes)
	}
	return a.routes
}

// group returns a group's members as the batch has them so far.
func (a *RingApplier) group(id uint32) ([]uint16, bool) {
	if m, ok := a.staged[id]; ok {
		return m, true
	}
	if a.full || a.gone[id] {
		return nil, false
	}
	return a.base.Groups.Lookup(id)
}

// setGroup stages a group's members, a slice this batch allocated.
func (a *RingApplier) setGroup(id uint32, m []uint16) {
	a.touched = true
	a.staged[id] = m
	delete(a.gone, id)
}

// stagedGroups applies the batch's group changes to the base snapshot's
// table: a new table sharing all but the changed groups' paths, or, for a
// full resync, one built from the staged groups alone.
func (a *RingApplier) stagedGroups() *GroupTable {
	if a.full {
		return NewGroupTable(a.staged)
	}
	g := a.base.Groups
	for id := range a.gone {
		g = g.Without(id)
	}
	for id, m := range a.staged {
		g = g.With(id, m)
	}
	return g
}

// groupAdd merges a GROUP_ADD's members (ascending) into the group,
// creating it if needed. A group this batch set and that grows at its end
// (a big GROUP_SET continued in GROUP_ADDs) is appended to in place.
func (a *RingApplier) groupAdd(r headers.Record) {
	id, n := r.Group(), r.Count()
	cur, _ := a.group(id)
	if _, own := a.staged[id]; own && (len(cur) == 0 || r.Member(0) > cur[len(cur)-1]) {
		for i := range n {
			cur = append(cur, r.Member(i))
		}
		a.staged[id] = cur
		return
	}
	out := make([]uint16, 0, len(cur)+n)
	i, j := 0, 0
	for i < len(cur) || j < n {
		switch {
		case j == n || i < len(cur) && cur[i] < r.Member(j):
			out = append(out, cur[i])
			i++
		case i == len(cur) || r.Member(j) < cur[i]:
			out = append(out, r.Member(j))
			j++
		default: // already a member
			out = append(out, cur[i])
			i++
			j++
		}
	}
	a.setGroup(id, out)
}

// groupRemove takes a GROUP_REMOVE's members out of an existing group;
// members not in it are ignored.
func (a *RingApplier) groupRemove(r headers.Record) {
	id, n := r.Group(), r.Count()
	cur, ok := a.group(id)
	if !ok {
		a.fail(headers.RejectGroup, headers.CmdGroupRemove)
		return
	}
	out := make([]uint16, 0, len(cur))
	j := 0
	for _, m := range cur {
		for j < n && r.Member(j) < m {
			j++
		}
		if j < n && r.Member(j) == m {
			continue
		}
		out = append(out, m)
	}
	a.setGroup(id, slices.Clip(out))
}

// commit publishes the batch: routes resolved against the ports that are
// down now, groups as staged; what the batch did not touch is the current
// snapshot's (the same *RouteTable for a group-only batch).
func (a *RingApplier) commit() {
	t0 := MonotonicNs()
	err := a.sw.UpdateTables(func(old *Tables) (*Tables, error) {
		nt := *old
		nt.Generation = a.gen
		if a.routes != nil {
			down := a.sw.DownPorts()
			a.routes.Resolve(&down)
			nt.Routes = a.routes
		}
		if a.touched {
			nt.Groups = a.stagedGroups()
		}
		return &nt, nil
	})
	if err != nil { // UpdateTables fails only if the callback does
		a.fail(headers.RejectOrder, headers.CmdCommit)
		a.finish()
		return
	}
	now := MonotonicNs()
	a.counters.LastApplyNanos.Store(uint64(now - t0))
	a.applied = a.gen
	a.rf.SetAppliedGeneration(a.gen)
	a.counters.Generation.Store(a.gen)
	a.counters.BatchesApplied.Add(1)
	a.emit(headers.Applied(a.out[:], a.gen, uint64(now)))
	a.finish()
	// After the APPLIED, so its page faults are not in this batch's time.
	a.sw.prepareSpareRoutes()
}

func (a *RingApplier) emit(r headers.Record) bool {
	a.emitMu.Lock()
	ok := false
	if a.evq != nil && !a.faulted.Load() {
		if ffi.CatchRingFault(func() { ok = a.evq.TryPush(r) }) != nil {
			// Run, which owns the mapping, drops it at its next poll.
			a.faulted.Store(true)
		}
	}
	a.emitMu.Unlock()
	if !ok {
		a.counters.EventsDropped.Add(1)
	}
	return ok
}

// appliedGeneration reads the header's applied generation for an event;
// 0 while the ring is dropped.
func (a *RingApplier) appliedGeneration() uint64 {
	a.emitMu.Lock()
	defer a.emitMu.Unlock()
	var g uint64
	if a.rf != nil && !a.faulted.Load() {
		if ffi.CatchRingFault(func() { g = a.rf.AppliedGeneration() }) != nil {
			a.faulted.Store(true)
		}
	}
	return g
}

// Emit sends an event record (built with headers.Link, headers.Rerouted,
// ...) to control from any goroutine. It never blocks: a malformed record
// or one that does not fit in the event ring is dropped and counted, and
// Emit returns false.
func (a *RingApplier) Emit(ev headers.Record) bool {
	if ev.Validate(a.nports) != 0 || !ev.Kind().IsEvent() {
		a.counters.EventsDropped.Add(1)
		return false
	}
	return a.emit(ev)
}

// EmitLink reports a port's link state (headers.LinkUp, LinkDegraded,
// LinkDown), its probe loss and when it was detected (CLOCK_MONOTONIC ns).
func (a *RingApplier) EmitLink(port, state uint8, lossPPM uint32, detectNanos uint64) bool {
	var b [headers.RingRecordLen]byte
	return a.Emit(headers.Link(b[:], a.appliedGeneration(), port, state, lossPPM, detectNanos))
}

// EmitRerouted reports a fast reroute: moved entries switched to their
// backup because port went down, published at swapNanos (CLOCK_MONOTONIC).
func (a *RingApplier) EmitRerouted(port uint8, moved uint32, swapNanos uint64) bool {
	var b [headers.RingRecordLen]byte
	return a.Emit(headers.Rerouted(b[:], a.appliedGeneration(), port, moved, swapNanos))
}

// OnLinkEvent forwards a link event to control: LINK, then REROUTED when
// the change republished the routes. Register it with Switch.OnLinkEvent.
func (a *RingApplier) OnLinkEvent(ev LinkEvent) {
	a.EmitLink(ev.Port, ev.State, ev.LossPPM, uint64(ev.DetectNs))
	if ev.SwapNs != 0 {
		a.EmitRerouted(ev.Port, uint32(ev.Moved), uint64(ev.SwapNs))
	}
}
