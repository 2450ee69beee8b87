// The control server: one process serving one or more switches, each
// through its ring file (docs/control.md). In: the topology, link events
// and HELLOs from the dataplanes, group changes from the API. Out: full
// resyncs and delta batches on every served switch's command ring.
//
//  1. Run's loop opens the ring of every served switch (retrying one whose
//     file cannot be opened yet), polls the event rings and watches the
//     dataplane boot IDs in the ring headers, sleeping adaptively between
//     polls (100µs doubling to 10ms while nothing happens).
//  2. A new dataplane (boot ID change or HELLO) gets a full resync with
//     generation max(applied, own) + 1. While a ring has no dataplane (boot
//     ID 0) nothing is pushed: the dataplane drops stale commands at start
//     and says HELLO anyway.
//  3. LINK events set port states. A link is down while a served switch at
//     either end reports its port down (LinkDown, which includes loss past
//     the down threshold); when the set of down links changes, every served
//     switch's routes are recomputed without them and the changed entries
//     pushed as one delta batch each.
//  4. Group changes (SetGroup, AddMembers, ...) update the membership held
//     here and go to every served switch as one GROUP batch each, pushed by
//     the caller's goroutine.
//  5. A push that fails (a full command ring, a rejected batch) marks the
//     switch for a full resync, retried with backoff.
//
// One mutex guards everything; the ring's single producer is whoever holds
// it.
package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
)

// Defaults of ServerOptions.
const (
	DefaultRingDir   = ffi.DefaultRingDir
	DefaultRingSlots = 4096
	// MaxGroups bounds the groups the server holds (group IDs are 32 bits;
	// the bound keeps a full resync and the state file's load bounded).
	MaxGroups = 1 << 18
)

// PushKind names a kind of batch in metrics and status.
type PushKind int

// Push kinds.
const (
	PushFullKind PushKind = iota
	PushRoutesKind
	PushGroupsKind
	numPushKinds
)

var pushKindNames = [numPushKinds]string{"full", "routes", "groups"}

func (k PushKind) String() string { return pushKindNames[k] }

// ringPathIn is RingPath for a name that must be a valid name and whose
// path must stay inside dir.
func ringPathIn(dir, sw string) (string, error) {
	if err := checkName(sw); err != nil {
		return "", fmt.Errorf("switch %q: ring file: %w", sw, err)
	}
	p := RingPath(dir, sw)
	if filepath.Dir(p) != filepath.Clean(dir) {
		return "", fmt.Errorf("switch %q: ring file %s is not directly in %s", sw, p, dir)
	}
	return p, nil
}

// RingPath is the ring file of a switch in dir.
func RingPath(dir, sw string) string {
	return filepath.Join(dir, "sparsecast-"+sw+".ring")
}

// ServerOptions configure NewServer.
type ServerOptions struct {
	// Switches are the served switches (empty: every switch of the
	// topology).
	Switches []string
	// RingDir holds the ring files (default /run/sparsecast). It must
	// exist, be this user's and be writable by no one else (ffi.CheckRingDir);
	// NewServer checks it when Open is the real one.
	RingDir string
	// RingSlots is the slots per ring of a ring file control creates.
	RingSlots int
	// Open opens a switch's ring (default: OpenRing plus a second mapping
	// that reads the ring depths).
	Open func(path string, slots int) (Ring, error)
	// Log gets one line per notable event (default: discarded).
	Log io.Writer
	// OnApplied, if set, is called for every APPLIED event that matches a
	// push, on the polling goroutine with the server locked: keep it short.
	OnApplied func(AppliedPush)
	// MinSleep and MaxSleep bound the idle sleep between polls (default
	// 100µs and 10ms).
	MinSleep, MaxSleep time.Duration
	// Store, if set, holds the groups across restarts (state.go): NewServer
	// loads them before the first resync, and every change is written to
	// it before it is applied and pushed. Nil: the groups live in memory
	// only.
	Store StateStore
}

// AppliedPush is a push the dataplane has applied, with its timestamps
// (CLOCK_MONOTONIC nanoseconds).
type AppliedPush struct {
	Switch     string
	Generation uint64
	Kind       PushKind
	// Arrival is when the API request behind the push arrived (0: none).
	Arrival uint64
	// Pushed is when the batch was handed to the ring.
	Pushed uint64
	// Published is the dataplane's publish timestamp.
	Published uint64
}

// RequestError is a refused request: Class is one of the API error classes.
type RequestError struct {
	Class string
	Msg   string
}

func (e *RequestError) Error() string { return e.Msg }

func reqErr(class, format string, args ...any) error {
	return &RequestError{Class: class, Msg: fmt.Sprintf(format, args...)}
}

// Server is the control process's state. Its methods are safe for
// concurrent use; Run must be running for events to be handled.
type Server struct {
	topo *Topology
	opts ServerOptions
	log  *log.Logger

	// writeMu orders group changes: one at a time is planned, written to
	// the store and applied, so the store and the switches see them in the
	// same order. The store write happens outside mu, so the polling loop
	// goes on during its fsync.
	writeMu sync.Mutex

	mu     sync.Mutex
	sws    []*switchState // served, in topology order
	byName map[string]*switchState
	groups map[uint32][]uint16
	down   map[LinkID]bool
	routes *Routes // the whole fabric's, updated link by link
	// shared is Store when other control processes share it (etcd);
	// remote holds the port states they reported for the switches not
	// served here, by switch name and port index.
	shared sharedStore
	remote map[string][]portState
	// storeRev is the last shared store revision applied from the watch.
	storeRev int64
	latency  histogram
	apiErrs  [numAPIClasses]atomic.Uint64
	// storeWrites counts state store writes: ok, failed.
	storeWrites [2]atomic.Uint64
	wake        chan struct{}
	badEvent    uint64
	// rounds counts Run's loop iterations: its liveness, for the systemd
	// watchdog (Rounds).
	rounds atomic.Uint64
}

type switchState struct {
	name  string
	index int // in topo.Switches
	path  string

	ring      Ring
	ringErr   string
	faulted   bool   // a call into ring faulted: step drops it
	faults    uint64 // faults in the mapped ring, for metrics
	nextOpen  time.Time
	openDelay time.Duration

	gen      uint64 // last generation pushed
	bootID   uint64 // dataplane boot ID last seen
	applied  uint64
	needFull bool
	nextFull time.Time
	failures int // consecutive failed or rejected pushes

	routes []Route // as last computed (and pushed unless needFull)
	ports  []portState

	pushes   [numPushKinds]uint64
	reroutes uint64
	rejected uint64
	// pending holds the pushes waiting for their APPLIED, by generation
	// modulo its length: a slot per ring slot, as many as the event ring
	// can answer. (With 1,024 slots, a control loop that fell that many
	// pushes behind on a loaded machine matched the late APPLIEDs to
	// nothing, and their latencies were lost.)
	pending []pendingPush
}

type portState struct {
	state uint8 // headers.LinkUp, LinkDegraded, LinkDown
	loss  uint32
}

type pendingPush struct {
	gen             uint64
	kind            PushKind
	arrival, pushed uint64
}

// NewServer checks the options and computes the first tables; Run starts
// serving.
func NewServer(topo *Topology, opts ServerOptions) (*Server, error) {
	if opts.RingDir == "" {
		opts.RingDir = DefaultRingDir
	}
	if opts.RingSlots == 0 {
		opts.RingSlots = DefaultRingSlots
	}
	if opts.RingSlots < 16 || opts.RingSlots > 1<<20 || opts.RingSlots&(opts.RingSlots-1) != 0 {
		return nil, fmt.Errorf("ring slots %d: want a power of two from 16 to %d", opts.RingSlots, 1<<20)
	}
	if opts.Open == nil {
		// Checked at start: a missing or untrusted directory is an error
		// now, not a retry forever.
		if err := ffi.CheckRingDir(opts.RingDir); err != nil {
			return nil, fmt.Errorf("ring directory: %w", err)
		}
		opts.Open = openRingWithDepth
	}
	if opts.MinSleep == 0 {
		opts.MinSleep = 100 * time.Microsecond
	}
	if opts.MaxSleep == 0 {
		opts.MaxSleep = 10 * time.Millisecond
	}
	if opts.MinSleep <= 0 || opts.MaxSleep < opts.MinSleep || opts.MaxSleep > time.Second {
		return nil, fmt.Errorf("poll sleeps %v-%v: want 0 < min <= max <= 1s", opts.MinSleep, opts.MaxSleep)
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	names := opts.Switches
	if len(names) == 0 {
		names = topo.SwitchNames()
	}
	s := &Server{
		topo: topo, opts: opts, log: log.New(opts.Log, "control: ", log.LstdFlags|log.Lmicroseconds),
		byName: map[string]*switchState{}, groups: map[uint32][]uint16{}, down: map[LinkID]bool{},
		latency: newHistogram(LatencyBuckets), wake: make(chan struct{}, 1),
	}
	for _, n := range names {
		i := topo.SwitchIndex(n)
		if i < 0 {
			return nil, fmt.Errorf("switch %q is not in the topology (its switches: %s)", n, strings.Join(topo.SwitchNames(), ", "))
		}
		if s.byName[n] != nil {
			return nil, fmt.Errorf("switch %q named twice", n)
		}
		path, err := ringPathIn(opts.RingDir, n)
		if err != nil {
			return nil, err
		}
		sw := &switchState{name: n, index: i, path: path, needFull: true, openDelay: 50 * time.Millisecond}
		sw.ports = make([]portState, len(topo.Switches[i].Ports))
		sw.pending = make([]pendingPush, opts.RingSlots)
		for p := range sw.ports {
			sw.ports[p].state = headers.LinkUp
		}
		s.byName[n] = sw
	}
	for _, sw := range topo.Switches {
		if st := s.byName[sw.Name]; st != nil {
			s.sws = append(s.sws, st)
		}
	}
	if err := s.recompute(); err != nil {
		return nil, err
	}
	if opts.Store != nil {
		if err := s.loadGroups(); err != nil {
			return nil, err
		}
	}
	if sh, ok := opts.Store.(sharedStore); ok {
		s.shared, s.remote = sh, map[string][]portState{}
		for _, r := range sh.LoadLinks() {
			s.setRemoteLink(r)
		}
		s.linksChanged()
	}
	return s, nil
}

// setRemoteLink notes a port state another control reported; reports for
// the switches served here (this process's own, echoed back) and for
// ports the topology does not have are ignored.
func (s *Server) setRemoteLink(r LinkReport) {
	si := s.topo.SwitchIndex(r.Switch)
	if si < 0 || s.byName[r.Switch] != nil || r.Port >= len(s.topo.Switches[si].Ports) {
		return
	}
	ps := s.remote[r.Switch]
	if ps == nil {
		ps = make([]portState, len(s.topo.Switches[si].Ports))
		for p := range ps {
			ps[p].state = headers.LinkUp
		}
		s.remote[r.Switch] = ps
	}
	ps[r.Port] = portState{state: r.State, loss: r.LossPPM}
}

// applyStoreChange applies a change from the shared store's watch (made
// through any control's API, this one's included) and pushes what it
// changes to the served switches.
func (s *Server) applyStoreChange(c StoreChange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeRev = max(s.storeRev, c.Revision)
	switch {
	case c.Full:
		var ops []GroupOp
		for _, id := range slices.Sorted(maps.Keys(s.groups)) {
			if _, ok := c.Groups[id]; !ok {
				delete(s.groups, id)
				ops = append(ops, GroupOp{Kind: GroupDelete, Group: id})
			}
		}
		for _, id := range slices.Sorted(maps.Keys(c.Groups)) {
			m, err := s.checkMembers(c.Groups[id], true)
			if err != nil {
				s.log.Printf("state: group %d: %v (ignored)", id, err)
				continue
			}
			if cur, ok := s.groups[id]; !ok || !slices.Equal(cur, m) {
				s.groups[id] = m
				ops = append(ops, GroupOp{Kind: GroupSet, Group: id, Members: m})
			}
		}
		if len(ops) > 0 {
			s.pushGroups(0, ops)
		}
		s.remote = map[string][]portState{}
		for _, r := range c.Links {
			s.setRemoteLink(r)
		}
		s.linksChanged()
	case c.Link != nil:
		s.setRemoteLink(*c.Link)
		s.linksChanged()
	case c.Deleted:
		if _, ok := s.groups[c.Group]; ok {
			delete(s.groups, c.Group)
			s.pushGroups(0, []GroupOp{{Kind: GroupDelete, Group: c.Group}})
		}
	default:
		m, err := s.checkMembers(c.Members, true)
		if err != nil {
			s.log.Printf("state: revision %d: group %d: %v (ignored)", c.Revision, c.Group, err)
			return
		}
		if cur, ok := s.groups[c.Group]; ok && slices.Equal(cur, m) {
			return // this process's own change, already applied
		}
		if _, ok := s.groups[c.Group]; !ok && len(s.groups) >= MaxGroups {
			s.log.Printf("state: revision %d: group %d: already %d groups (ignored)", c.Revision, c.Group, MaxGroups)
			return
		}
		s.groups[c.Group] = m
		s.pushGroups(0, []GroupOp{{Kind: GroupSet, Group: c.Group, Members: m}})
	}
}

// loadGroups reads the stored groups; each must still fit the topology.
func (s *Server) loadGroups() error {
	where := s.opts.Store.Describe()
	groups, err := s.opts.Store.LoadGroups()
	if err != nil {
		return err
	}
	if len(groups) > MaxGroups {
		return fmt.Errorf("state %s: %d groups, more than the %d this server holds", where, len(groups), MaxGroups)
	}
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		m, err := s.checkMembers(groups[id], true)
		if err != nil {
			return fmt.Errorf("state %s: group %d: %v (was the topology changed? put the hosts back, or move the state file away)", where, id, err)
		}
		s.groups[id] = m
	}
	s.log.Printf("state %s: %d groups loaded", where, len(groups))
	return nil
}

// depthRing is a Ring that can also tell its depths (for metrics).
type depthRing interface {
	Ring
	Depths() (commands, events int)
}

type ringWithDepth struct {
	*RingClient
	rf *ffi.RingFile
}

func (r ringWithDepth) Depths() (cmd, ev int) {
	// A fault reads as empty here; the server's next step drops the ring.
	_ = ffi.CatchRingFault(func() { cmd, ev = r.rf.Commands().Depth(), r.rf.Events().Depth() })
	return cmd, ev
}

func (r ringWithDepth) Close() error {
	err := r.RingClient.Close()
	if err2 := r.rf.Close(); err == nil {
		err = err2
	}
	return err
}

// openRingWithDepth opens a switch's ring with a short push timeout (the
// server retries with backoff rather than block its callers) and maps the
// file a second time to read the ring depths.
func openRingWithDepth(path string, slots int) (Ring, error) {
	c, err := OpenRing(path, slots)
	if err != nil {
		return nil, err
	}
	c.SetPushTimeout(100 * time.Millisecond)
	rf, err := ffi.OpenRingFile(path, 0)
	if err != nil {
		c.Close()
		return nil, err
	}
	return ringWithDepth{RingClient: c, rf: rf}, nil
}

// MonotonicNanos is CLOCK_MONOTONIC in nanoseconds, the clock of the
// dataplane's event timestamps, read without a system call.
func MonotonicNanos() uint64 { return uint64(ffi.MonotonicNs()) }

// Run serves until ctx ends, then closes the rings.
func (s *Server) Run(ctx context.Context) error {
	defer s.closeRings()
	if s.shared != nil {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.shared.Watch(wctx, s.applyStoreChange) }()
		defer func() { cancel(); <-done }()
	}
	sleep := s.opts.MinSleep
	timer := time.NewTimer(sleep)
	defer timer.Stop()
	for {
		s.mu.Lock()
		n := s.step(time.Now())
		s.mu.Unlock()
		s.rounds.Add(1)
		if n > 0 {
			sleep = s.opts.MinSleep
			continue
		}
		timer.Reset(sleep)
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
			sleep = s.opts.MinSleep
		case <-timer.C:
			sleep = min(2*sleep, s.opts.MaxSleep)
		}
	}
}

// Rounds is how many rounds Run has done over the served switches. Run
// goes round at least every MaxSleep, so a count that stops moving means it
// is stuck.
func (s *Server) Rounds() uint64 { return s.rounds.Load() }

func (s *Server) closeRings() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sw := range s.sws {
		if sw.ring != nil {
			sw.ring.Close()
			sw.ring = nil
		}
	}
}

// poke shortens Run's sleep after a push, so its APPLIED is seen soon.
func (s *Server) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// step does one round over the served switches and returns how many events
// it handled.
func (s *Server) step(now time.Time) int {
	n := 0
	for _, sw := range s.sws {
		if sw.faulted {
			s.dropRing(sw, now)
		}
		if sw.ring == nil {
			if now.Before(sw.nextOpen) {
				continue
			}
			r, err := s.opts.Open(sw.path, s.opts.RingSlots)
			if err != nil {
				if msg := err.Error(); msg != sw.ringErr {
					s.log.Printf("switch %s: ring %s: %v (retrying)", sw.name, sw.path, err)
					sw.ringErr = msg
				}
				sw.nextOpen = now.Add(sw.openDelay)
				sw.openDelay = min(2*sw.openDelay, 5*time.Second)
				continue
			}
			s.log.Printf("switch %s: ring %s open", sw.name, sw.path)
			sw.ring, sw.ringErr, sw.openDelay = r, "", 50*time.Millisecond
			sw.bootID, sw.needFull = 0, true
		}
		s.ringCall(sw, func() {
			boot, applied := sw.ring.Dataplane()
			if boot != sw.bootID {
				s.newDataplane(sw, boot)
			}
			sw.applied = max(sw.applied, applied)
			n += sw.ring.PollEvents(func(e Event) { s.handleEvent(sw, e) })
			if sw.needFull && sw.bootID != 0 && !now.Before(sw.nextFull) {
				s.pushFull(sw)
			}
		})
		if sw.faulted {
			s.dropRing(sw, now)
		}
	}
	return n
}

// ringCall runs fn, which uses sw's mapped ring, and notes a memory fault
// in it (the file shrank: truncated by someone) instead of crashing. The
// ring is dropped by step, outside every call into it, and reopened.
func (s *Server) ringCall(sw *switchState, fn func()) bool {
	err := ffi.CatchRingFault(fn)
	if err != nil && !sw.faulted {
		sw.faulted = true
		sw.faults++
		s.log.Printf("switch %s: ring %s: %v; dropping it, reopening", sw.name, sw.path, err)
	}
	return err == nil
}

// dropRing unmaps a ring that faulted; step reopens it after openDelay.
func (s *Server) dropRing(sw *switchState, now time.Time) {
	if sw.ring != nil {
		sw.ring.Close()
		sw.ring = nil
	}
	sw.faulted = false
	sw.nextOpen = now.Add(sw.openDelay)
}

// newDataplane notes a dataplane (re)start: a full resync is due, and the
// old dataplane's port states no longer hold.
func (s *Server) newDataplane(sw *switchState, boot uint64) {
	if boot != 0 {
		s.log.Printf("switch %s: dataplane boot ID %016x (was %016x): full resync due", sw.name, boot, sw.bootID)
	}
	sw.bootID, sw.applied, sw.needFull, sw.nextFull, sw.failures = boot, 0, true, time.Time{}, 0
	changed := false
	for p := range sw.ports {
		if sw.ports[p].state == headers.LinkDown {
			changed = true
		}
		if sw.ports[p].state != headers.LinkUp && s.shared != nil {
			s.shared.ReportLink(LinkReport{Switch: sw.name, Port: p, State: headers.LinkUp})
		}
		sw.ports[p] = portState{state: headers.LinkUp}
	}
	if changed {
		s.linksChanged()
	}
}

func (s *Server) handleEvent(sw *switchState, e Event) {
	switch e.Kind {
	case "hello":
		if e.BootID != sw.bootID {
			s.newDataplane(sw, e.BootID)
		}
		sw.needFull = true
	case "applied":
		sw.applied = max(sw.applied, e.Generation)
		sw.failures = 0
		p := &sw.pending[e.Generation%uint64(len(sw.pending))]
		if p.gen != e.Generation || p.pushed == 0 {
			return
		}
		if e.Nanos >= p.pushed {
			s.latency.observe(float64(e.Nanos-p.pushed) / 1e9)
		}
		if s.opts.OnApplied != nil {
			s.opts.OnApplied(AppliedPush{Switch: sw.name, Generation: e.Generation, Kind: p.kind, Arrival: p.arrival, Pushed: p.pushed, Published: e.Nanos})
		}
		*p = pendingPush{}
	case "rejected":
		sw.rejected++
		s.log.Printf("switch %s: generation %d rejected at record %d: %v; full resync due", sw.name, e.Generation, e.Index, headers.RejectError(e.Code))
		s.failed(sw)
	case "link":
		if int(e.Port) >= len(sw.ports) {
			s.badEvent++
			s.log.Printf("switch %s: link event for port %d, but the topology gives it %d ports", sw.name, e.Port, len(sw.ports))
			return
		}
		old := sw.ports[e.Port].state
		sw.ports[e.Port] = portState{state: e.LinkState, loss: e.LossPPM}
		if s.shared != nil {
			s.shared.ReportLink(LinkReport{Switch: sw.name, Port: int(e.Port), State: e.LinkState, LossPPM: e.LossPPM})
		}
		if (old == headers.LinkDown) != (e.LinkState == headers.LinkDown) {
			s.log.Printf("switch %s: port %s %s (loss %d ppm)", sw.name, s.topo.Switches[sw.index].Ports[e.Port].Name, linkStateName(e.LinkState), e.LossPPM)
			s.linksChanged()
		}
	case "rerouted":
		sw.reroutes++
	}
}

// failed schedules a full resync after a failed push, backing off.
func (s *Server) failed(sw *switchState) {
	sw.needFull = true
	sw.failures++
	sw.nextFull = time.Now().Add(min(50*time.Millisecond<<min(sw.failures, 10), 5*time.Second))
}

func linkStateName(st uint8) string {
	switch st {
	case headers.LinkUp:
		return "up"
	case headers.LinkDegraded:
		return "degraded"
	case headers.LinkDown:
		return "down"
	}
	return fmt.Sprintf("state%d", st)
}

// linksChanged recomputes the down set from the port states and, if it
// changed, every served switch's routes.
func (s *Server) linksChanged() {
	down := map[LinkID]bool{}
	for _, sw := range s.sws {
		for p, ps := range sw.ports {
			if l := s.topo.Switches[sw.index].Ports[p].Link; l >= 0 && ps.state == headers.LinkDown {
				down[l] = true
			}
		}
	}
	for name, ports := range s.remote {
		si := s.topo.SwitchIndex(name)
		for p, ps := range ports {
			if l := s.topo.Switches[si].Ports[p].Link; l >= 0 && ps.state == headers.LinkDown {
				down[l] = true
			}
		}
	}
	if maps.Equal(down, s.down) {
		return
	}
	// One link at a time through the incremental update; the changed
	// entries of the served switches go out as delta batches.
	changed := make([][]Route, len(s.sws))
	byIndex := make(map[int]int, len(s.sws))
	for i, sw := range s.sws {
		byIndex[sw.index] = i
	}
	var lerr error
	apply := func(l LinkID, isDown bool) {
		deltas, err := s.routes.SetLink(l, isDown)
		if err != nil {
			lerr = errors.Join(lerr, err)
			return
		}
		for _, d := range deltas {
			if i, ok := byIndex[d.Switch]; ok {
				changed[i] = append(changed[i], d.Routes...)
			}
		}
	}
	for _, l := range slices.Sorted(maps.Keys(s.down)) {
		if !down[l] {
			apply(l, false)
		}
	}
	for _, l := range slices.Sorted(maps.Keys(down)) {
		if !s.down[l] {
			apply(l, true)
		}
	}
	s.down = down
	if lerr != nil {
		s.log.Printf("updating routes: %v; recomputing", lerr)
		if err := s.recompute(); err != nil {
			s.log.Printf("recomputing routes: %v", err)
		}
		for _, sw := range s.sws {
			sw.needFull = true
		}
		return
	}
	for i, sw := range s.sws {
		if len(changed[i]) == 0 {
			continue
		}
		// Copy on write: Routes hands sw.routes out after unlocking.
		routes := slices.Clone(sw.routes)
		last := map[uint16]Route{}
		for _, r := range changed[i] {
			last[r.Receiver] = r
		}
		delta := make([]Route, 0, len(last))
		for j, r := range routes {
			if n, ok := last[r.Receiver]; ok {
				routes[j] = n
				delta = append(delta, n)
			}
		}
		sw.routes = routes
		if sw.needFull || sw.ring == nil || sw.bootID == 0 {
			continue
		}
		s.push(sw, PushRoutesKind, 0, func(gen uint64) error { return sw.ring.PushRoutes(gen, delta) })
	}
}

// recompute sets every served switch's routes from the down set.
func (s *Server) recompute() error {
	r, err := ComputeRoutes(s.topo, s.downList())
	if err != nil {
		return err
	}
	s.routes = r
	for _, sw := range s.sws {
		sw.routes = r.Tables(sw.index).Routes
	}
	return nil
}

func (s *Server) downList() []LinkID {
	l := slices.Collect(maps.Keys(s.down))
	slices.Sort(l)
	return l
}

// push sends one batch with the switch's next generation and records it
// for the latency histogram.
func (s *Server) push(sw *switchState, kind PushKind, arrival uint64, send func(gen uint64) error) {
	gen := sw.gen + 1
	p := &sw.pending[gen%uint64(len(sw.pending))]
	*p = pendingPush{gen: gen, kind: kind, arrival: arrival}
	var err error
	if !s.ringCall(sw, func() { err = send(gen) }) {
		err = ffi.ErrRingFault
	}
	if err != nil {
		*p = pendingPush{}
		s.log.Printf("switch %s: %s push, generation %d: %v; full resync due", sw.name, kind, gen, err)
		s.failed(sw)
		return
	}
	// The hand-over is the store that made the batch visible, not this
	// function's start: building and checking the records is control's
	// work, and a thread preempted before that store must not count
	// against the dataplane. (Events are handled under the same lock, so
	// the APPLIED cannot be looked at before this is set.)
	p.pushed = sw.ring.HandedOver()
	sw.gen = gen
	sw.pushes[kind]++
	s.poke()
}

func (s *Server) pushFull(sw *switchState) {
	_, applied := sw.ring.Dataplane()
	sw.gen = max(sw.gen, applied, sw.applied)
	t := &SwitchTables{
		Switch: sw.name,
		Ports:  portNames(&s.topo.Switches[sw.index]),
		Routes: sw.routes,
		Groups: s.groups,
	}
	sw.needFull = false
	s.push(sw, PushFullKind, 0, func(gen uint64) error { return sw.ring.PushFull(gen, t) })
	if !sw.needFull {
		s.log.Printf("switch %s: full resync, generation %d: %d routes, %d groups", sw.name, sw.gen, len(t.Routes), len(t.Groups))
	}
}

// pushGroups sends ops to every served switch that is in sync.
func (s *Server) pushGroups(arrival uint64, ops []GroupOp) {
	for _, sw := range s.sws {
		if sw.ring == nil || sw.needFull || sw.bootID == 0 {
			continue // gets the groups with its full resync
		}
		s.push(sw, PushGroupsKind, arrival, func(gen uint64) error { return sw.ring.PushGroupOps(gen, ops) })
	}
}

// checkMembers sorts and dedups members and requires each to be a
// receiver of the fabric.
func (s *Server) checkMembers(members []uint16, allowEmpty bool) ([]uint16, error) {
	if len(members) == 0 && !allowEmpty {
		return nil, reqErr("bad_member", "no members given")
	}
	m := slices.Clone(members)
	slices.Sort(m)
	m = slices.Compact(m)
	var unknown []uint16
	for _, id := range m {
		if !s.topo.IsReceiver(id) {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		return nil, reqErr("bad_member", "not receivers of the fabric: %s", headers.FormatIDSet(unknown))
	}
	return slices.Clip(m), nil
}

// Group is one group and the generation each served switch was pushed
// after the change.
type Group struct {
	ID          uint32            `json:"id"`
	Members     []uint16          `json:"members"`
	Generations map[string]uint64 `json:"generations,omitempty"`
}

func (s *Server) groupView(id uint32) *Group {
	g := &Group{ID: id, Members: s.groups[id], Generations: map[string]uint64{}}
	if g.Members == nil {
		g.Members = []uint16{}
	}
	for _, sw := range s.sws {
		g.Generations[sw.name] = sw.gen
	}
	return g
}

// groupChange is what a planned change does to one group: its next
// members (nil with del: deleted) and the ops that tell the switches.
type groupChange struct {
	next []uint16
	del  bool
	ops  []GroupOp
}

// change plans a change to group id under the lock, writes it to the store
// (outside the lock: an fsync must not stall the polling loop) and then
// applies and pushes it. A change the store could not take is not made,
// and the request fails with store_unavailable.
func (s *Server) change(id uint32, arrival uint64, plan func(cur []uint16, ok bool) (groupChange, error)) (*Group, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	cur, ok := s.groups[id]
	c, err := plan(cur, ok)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var rev int64
	if len(c.ops) > 0 && s.opts.Store != nil {
		switch {
		case s.shared != nil:
			rev, err = s.shared.PutGroupIf(id, cur, ok, c.next, c.del)
		case c.del:
			err = s.opts.Store.DeleteGroup(id)
		default:
			err = s.opts.Store.PutGroup(id, c.next)
		}
		if errors.Is(err, ErrStateConflict) {
			return nil, reqErr("conflict", "group %d: %v; read it again and retry", id, err)
		}
		if err != nil {
			s.storeWrites[1].Add(1)
			s.log.Printf("group %d: %v; change refused", id, err)
			return nil, reqErr("store_unavailable", "the change was not made: the state store failed: %v", err)
		}
		s.storeWrites[0].Add(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shared != nil && s.storeRev >= rev {
		// The watch has brought this change back already, and maybe later
		// ones to the group: applying it again would undo those.
		c.ops = nil
	}
	if len(c.ops) > 0 {
		if c.del {
			delete(s.groups, id)
		} else {
			s.groups[id] = c.next
		}
		s.pushGroups(arrival, c.ops)
	}
	if c.del {
		return nil, nil
	}
	return s.groupView(id), nil
}

// SetGroup creates group id or replaces its members. arrival is the
// request's CLOCK_MONOTONIC arrival (0: none).
func (s *Server) SetGroup(id uint32, members []uint16, arrival uint64) (*Group, error) {
	m, err := s.checkMembers(members, true)
	if err != nil {
		return nil, err
	}
	return s.change(id, arrival, func(cur []uint16, ok bool) (groupChange, error) {
		if !ok && len(s.groups) >= MaxGroups {
			return groupChange{}, reqErr("group_limit", "already %d groups, the most this server holds", MaxGroups)
		}
		return groupChange{next: m, ops: []GroupOp{{Kind: GroupSet, Group: id, Members: m}}}, nil
	})
}

// AddMembers adds members to group id, creating it if needed.
func (s *Server) AddMembers(id uint32, members []uint16, arrival uint64) (*Group, error) {
	m, err := s.checkMembers(members, false)
	if err != nil {
		return nil, err
	}
	return s.change(id, arrival, func(cur []uint16, ok bool) (groupChange, error) {
		if !ok {
			if len(s.groups) >= MaxGroups {
				return groupChange{}, reqErr("group_limit", "already %d groups, the most this server holds", MaxGroups)
			}
			return groupChange{next: m, ops: []GroupOp{{Kind: GroupSet, Group: id, Members: m}}}, nil
		}
		var add []uint16
		for _, x := range m {
			if _, found := slices.BinarySearch(cur, x); !found {
				add = append(add, x)
			}
		}
		if len(add) == 0 {
			return groupChange{next: cur}, nil
		}
		next := append(slices.Clone(cur), add...)
		slices.Sort(next)
		return groupChange{next: next, ops: []GroupOp{{Kind: GroupAdd, Group: id, Members: add}}}, nil
	})
}

// RemoveMembers removes members from group id; ones not in it are ignored.
func (s *Server) RemoveMembers(id uint32, members []uint16, arrival uint64) (*Group, error) {
	m := slices.Clone(members)
	slices.Sort(m)
	m = slices.Compact(m)
	return s.change(id, arrival, func(cur []uint16, ok bool) (groupChange, error) {
		if !ok {
			return groupChange{}, reqErr("unknown_group", "no group %d", id)
		}
		if len(m) == 0 {
			return groupChange{}, reqErr("bad_member", "no members given")
		}
		var gone []uint16
		for _, x := range m {
			if _, found := slices.BinarySearch(cur, x); found {
				gone = append(gone, x)
			}
		}
		if len(gone) == 0 {
			return groupChange{next: cur}, nil
		}
		next := slices.DeleteFunc(slices.Clone(cur), func(x uint16) bool {
			_, found := slices.BinarySearch(gone, x)
			return found
		})
		return groupChange{next: next, ops: []GroupOp{{Kind: GroupRemove, Group: id, Members: gone}}}, nil
	})
}

// DeleteGroup deletes group id.
func (s *Server) DeleteGroup(id uint32, arrival uint64) error {
	_, err := s.change(id, arrival, func(cur []uint16, ok bool) (groupChange, error) {
		if !ok {
			return groupChange{}, reqErr("unknown_group", "no group %d", id)
		}
		return groupChange{del: true, ops: []GroupOp{{Kind: GroupDelete, Group: id}}}, nil
	})
	return err
}

// GetGroup returns group id.
func (s *Server) GetGroup(id uint32) (*Group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.groups[id]; !ok {
		return nil, reqErr("unknown_group", "no group %d", id)
	}
	g := s.groupView(id)
	g.Generations = nil
	return g, nil
}

// Groups returns every group, ascending by ID.
func (s *Server) Groups() []Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := slices.Sorted(maps.Keys(s.groups))
	out := make([]Group, len(ids))
	for i, id := range ids {
		out[i] = Group{ID: id, Members: s.groups[id]}
		if out[i].Members == nil {
			out[i].Members = []uint16{}
		}
	}
	return out
}

// Status is what GET /v1/status returns.
type Status struct {
	Switches  []SwitchStatus `json:"switches"`
	DownLinks []string       `json:"down_links"`
	Groups    int            `json:"groups"`
	// State is where the groups are kept ("memory": nowhere durable);
	// Store the shared store's health (etcd only).
	State string       `json:"state"`
	Store *StoreHealth `json:"store,omitempty"`
}

// SwitchStatus is one served switch.
type SwitchStatus struct {
	Name      string `json:"name"`
	Ring      string `json:"ring"`
	Connected bool   `json:"connected"`
	RingError string `json:"ring_error,omitempty"`
	// BootID is the dataplane's boot ID in hex ("" while none).
	BootID string `json:"boot_id"`
	// Generation is the last generation pushed, Applied the last one the
	// dataplane applied.
	Generation uint64            `json:"generation"`
	Applied    uint64            `json:"applied"`
	InSync     bool              `json:"in_sync"`
	Pushes     map[string]uint64 `json:"pushes"`
	Reroutes   uint64            `json:"reroutes"`
	Rejected   uint64            `json:"rejected"`
	Links      []LinkStatus      `json:"links"`
}

// LinkStatus is one port of a served switch.
type LinkStatus struct {
	Port    string `json:"port"`
	Peer    string `json:"peer"` // "spine1:p1", or "host h1"
	State   string `json:"state"`
	LossPPM uint32 `json:"loss_ppm"`
}

// Status reports every served switch.
func (s *Server) Status() *Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &Status{Groups: len(s.groups), DownLinks: []string{}, State: "memory"}
	if s.opts.Store != nil {
		st.State = s.opts.Store.Describe()
	}
	if s.shared != nil {
		h := s.shared.Health()
		st.Store = &h
	}
	for _, l := range s.downList() {
		st.DownLinks = append(st.DownLinks, s.topo.Links[l].Description)
	}
	for _, sw := range s.sws {
		ss := SwitchStatus{
			Name: sw.name, Ring: sw.path, Connected: sw.ring != nil, RingError: sw.ringErr,
			Generation: sw.gen, Applied: sw.applied, InSync: sw.ring != nil && !sw.needFull && sw.applied == sw.gen && sw.gen > 0,
			Pushes: map[string]uint64{}, Reroutes: sw.reroutes, Rejected: sw.rejected,
		}
		if sw.bootID != 0 {
			ss.BootID = fmt.Sprintf("%016x", sw.bootID)
		}
		for k, n := range sw.pushes {
			ss.Pushes[PushKind(k).String()] = n
		}
		for p, port := range s.topo.Switches[sw.index].Ports {
			ls := LinkStatus{Port: port.Name, State: linkStateName(sw.ports[p].state), LossPPM: sw.ports[p].loss}
			switch {
			case port.Link >= 0:
				peer := &s.topo.Switches[port.Peer]
				ls.Peer = peer.Name + ":" + peer.Ports[port.PeerPort].Name
			case port.Host >= 0:
				ls.Peer = "host " + s.topo.Hosts[port.Host].Name
			}
			ss.Links = append(ss.Links, ls)
		}
		st.Switches = append(st.Switches, ss)
	}
	return st
}

// RouteView is one route entry with port names.
type RouteView struct {
	Receiver     uint16 `json:"receiver"`
	Host         string `json:"host"`
	Primary      string `json:"primary"`
	Backup       string `json:"backup"`
	PrimaryIndex uint8  `json:"primary_index"`
	BackupIndex  uint8  `json:"backup_index"`
}

// RoutesView is GET /v1/routes's answer.
type RoutesView struct {
	Switch    string      `json:"switch"`
	Served    bool        `json:"served"`
	Ports     []string    `json:"ports"`
	DownLinks []string    `json:"down_links"`
	Routes    []RouteView `json:"routes"`
}

// Routes returns a switch's routes as computed now (with the down links
// removed); the switch need not be served.
func (s *Server) Routes(name string) (*RoutesView, error) {
	s.mu.Lock()
	sw := s.byName[name]
	si := s.topo.SwitchIndex(name)
	var routes []Route
	switch {
	case sw != nil:
		routes = sw.routes
	case si >= 0 && s.routes != nil:
		// Not served: from the whole fabric's routes, kept up to date.
		routes = s.routes.Tables(si).Routes
	}
	down := s.downList()
	s.mu.Unlock()
	if si < 0 {
		return nil, reqErr("unknown_switch", "no switch %q in the topology", name)
	}
	if routes == nil {
		t, err := ComputeTables(s.topo, name, down)
		if err != nil {
			return nil, err
		}
		routes = t.Routes
	}
	ports := portNames(&s.topo.Switches[si])
	v := &RoutesView{Switch: name, Served: sw != nil, Ports: ports, DownLinks: []string{}, Routes: make([]RouteView, len(routes))}
	for _, l := range down {
		v.DownLinks = append(v.DownLinks, s.topo.Links[l].Description)
	}
	portName := func(p uint8) string {
		if int(p) < len(ports) {
			return ports[p]
		}
		return ""
	}
	recv := s.topo.Receivers()
	for i, r := range routes {
		v.Routes[i] = RouteView{Receiver: r.Receiver, Host: recv[i].Host, Primary: portName(r.Primary), Backup: portName(r.Backup), PrimaryIndex: r.Primary, BackupIndex: r.Backup}
	}
	return v, nil
}
