package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
)

// fakeRing records pushes and replays queued events; with autoApply it
// answers every push with APPLIED, as a dataplane would.
type fakeRing struct {
	mu        sync.Mutex
	boot      uint64
	applied   uint64
	autoApply bool
	failPush  error
	batches   []fakeBatch
	events    []Event
	closed    bool
	handed    uint64
}

type fakeBatch struct {
	kind   PushKind
	gen    uint64
	full   *SwitchTables
	routes []Route
	ops    []GroupOp
}

func (f *fakeRing) record(b fakeBatch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failPush != nil {
		return f.failPush
	}
	if b.gen <= f.applied && f.autoApply {
		f.events = append(f.events, Event{Kind: "rejected", Generation: b.gen, Code: headers.RejectGeneration})
		return nil
	}
	f.batches = append(f.batches, b)
	f.handed = MonotonicNanos()
	if f.autoApply {
		f.applied = b.gen
		f.events = append(f.events, Event{Kind: "applied", Generation: b.gen, Nanos: MonotonicNanos()})
	}
	return nil
}

func (f *fakeRing) PushFull(gen uint64, t *SwitchTables) error {
	c := *t
	c.Routes = slices.Clone(t.Routes)
	c.Groups = map[uint32][]uint16{}
	for k, v := range t.Groups {
		c.Groups[k] = slices.Clone(v)
	}
	return f.record(fakeBatch{kind: PushFullKind, gen: gen, full: &c})
}
func (f *fakeRing) PushRoutes(gen uint64, r []Route) error {
	return f.record(fakeBatch{kind: PushRoutesKind, gen: gen, routes: slices.Clone(r)})
}
func (f *fakeRing) PushGroupOps(gen uint64, ops []GroupOp) error {
	return f.record(fakeBatch{kind: PushGroupsKind, gen: gen, ops: slices.Clone(ops)})
}
func (f *fakeRing) HandedOver() uint64 { f.mu.Lock(); defer f.mu.Unlock(); return f.handed }
func (f *fakeRing) PollEvents(fn func(Event)) int {
	f.mu.Lock()
	ev := f.events
	f.events = nil
	f.mu.Unlock()
	for _, e := range ev {
		fn(e)
	}
	return len(ev)
}
func (f *fakeRing) Dataplane() (uint64, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.boot, f.applied
}
func (f *fakeRing) Close() error { f.mu.Lock(); f.closed = true; f.mu.Unlock(); return nil }

func (f *fakeRing) send(e Event) { f.mu.Lock(); f.events = append(f.events, e); f.mu.Unlock() }

func (f *fakeRing) all() []fakeBatch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.batches)
}

func (f *fakeRing) last() fakeBatch {
	b := f.all()
	if len(b) == 0 {
		return fakeBatch{}
	}
	return b[len(b)-1]
}

// fakeFabric opens fake rings by switch name; a switch in missing cannot
// be opened yet.
type fakeFabric struct {
	mu      sync.Mutex
	rings   map[string]*fakeRing
	missing map[string]bool
	opens   map[string]int
}

func newFakeFabric(topo *Topology, boot uint64) *fakeFabric {
	f := &fakeFabric{rings: map[string]*fakeRing{}, missing: map[string]bool{}, opens: map[string]int{}}
	for _, n := range topo.SwitchNames() {
		f.rings[RingPath("/fake", n)] = &fakeRing{boot: boot, autoApply: true}
	}
	return f
}

func (f *fakeFabric) open(path string, slots int) (Ring, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens[path]++
	if f.missing[path] {
		return nil, errors.New("no such file")
	}
	return f.rings[path], nil
}

func (f *fakeFabric) ring(sw string) *fakeRing { return f.rings[RingPath("/fake", sw)] }

func startServer(t *testing.T, topo *Topology, ff *fakeFabric, opts ServerOptions) *Server {
	t.Helper()
	opts.RingDir = "/fake"
	opts.Open = ff.open
	opts.MaxSleep = time.Millisecond
	s, err := NewServer(topo, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not stop")
		}
	})
	return s
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestServerFullResync(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	ff := newFakeFabric(topo, 0)
	leaf1 := ff.ring("leaf1")
	leaf1.applied = 7 // a previous control process got this far
	ff.missing[RingPath("/fake", "leaf2")] = true
	s := startServer(t, topo, ff, ServerOptions{Switches: []string{"leaf1", "leaf2"}})

	// No dataplane yet (boot ID 0): nothing pushed.
	time.Sleep(20 * time.Millisecond)
	if n := len(leaf1.all()); n != 0 {
		t.Fatalf("%d pushes before a dataplane", n)
	}
	leaf1.mu.Lock()
	leaf1.boot = 0xb1
	leaf1.mu.Unlock()
	eventually(t, "full resync", func() bool { return len(leaf1.all()) == 1 })
	b := leaf1.last()
	if b.kind != PushFullKind || b.gen != 8 || b.full.Switch != "leaf1" || len(b.full.Routes) != 4 {
		t.Fatalf("first push %+v", b)
	}
	if want, _ := ComputeTables(topo, "leaf1", nil); !slices.Equal(b.full.Routes, want.Routes) || !slices.Equal(b.full.Ports, want.Ports) {
		t.Fatalf("full resync tables %+v", b.full)
	}

	// HELLO: another full resync with the next generation.
	leaf1.send(Event{Kind: "hello", BootID: 0xb1})
	eventually(t, "resync after HELLO", func() bool { return len(leaf1.all()) == 2 })
	if b := leaf1.last(); b.kind != PushFullKind || b.gen != 9 {
		t.Fatalf("after HELLO %+v", b)
	}
	// A restarted dataplane: new boot ID, applied 0.
	leaf1.mu.Lock()
	leaf1.boot, leaf1.applied = 0xb2, 0
	leaf1.mu.Unlock()
	eventually(t, "resync after restart", func() bool { return len(leaf1.all()) == 3 })
	if b := leaf1.last(); b.kind != PushFullKind || b.gen != 10 {
		t.Fatalf("after restart %+v", b)
	}

	// leaf2's ring appears later: retried, then resynced.
	leaf2 := ff.ring("leaf2")
	leaf2.boot = 0xc1
	ff.mu.Lock()
	ff.missing[RingPath("/fake", "leaf2")] = false
	ff.mu.Unlock()
	eventually(t, "leaf2 resync", func() bool { return len(leaf2.all()) == 1 })
	ff.mu.Lock()
	opens := ff.opens[RingPath("/fake", "leaf2")]
	ff.mu.Unlock()
	if opens < 2 {
		t.Errorf("leaf2 opened %d times", opens)
	}
	st := s.Status()
	if len(st.Switches) != 2 || st.Switches[0].Name != "leaf1" || st.Switches[0].BootID != "00000000000000b2" || st.Switches[0].Pushes["full"] != 3 {
		t.Fatalf("status %+v", st.Switches)
	}
	eventually(t, "applied 10", func() bool { st := s.Status(); return st.Switches[0].Applied == 10 && st.Switches[0].InSync })
}

func TestServerLinkEvents(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	ff := newFakeFabric(topo, 1)
	s := startServer(t, topo, ff, ServerOptions{})
	for _, n := range topo.SwitchNames() {
		eventually(t, n+" resync", func() bool { return len(ff.ring(n).all()) == 1 })
	}
	// leaf2's port p1 (to spine1) goes down.
	ff.ring("leaf2").send(Event{Kind: "link", Port: 0, LinkState: headers.LinkDown, LossPPM: 1e6})
	ff.ring("leaf2").send(Event{Kind: "rerouted", Port: 0, Moved: 2})
	eventually(t, "leaf1 delta", func() bool { return len(ff.ring("leaf1").all()) == 2 })
	b := ff.ring("leaf1").last()
	// Receivers 1 and 3 went through spine1 (port 0), now spine2 (port
	// 1); 2 and 4 lose their backup, spine1, which cannot reach leaf2
	// but through leaf1.
	if want := []Route{{1, 1, NoPort}, {2, 1, NoPort}, {3, 1, NoPort}, {4, 1, NoPort}}; b.kind != PushRoutesKind || b.gen != 2 || !slices.Equal(b.routes, want) {
		t.Fatalf("leaf1 delta %+v, want routes %v", b, want)
	}
	eventually(t, "spine1 delta", func() bool { return len(ff.ring("spine1").all()) == 2 })
	if b := ff.ring("spine1").last(); b.kind != PushRoutesKind || len(b.routes) != 4 {
		t.Fatalf("spine1 delta %+v", b)
	}
	// spine2 keeps its primaries but loses its backups (leaf1, which
	// would go up through spine1); leaf2 keeps everything.
	eventually(t, "spine2 delta", func() bool { return len(ff.ring("spine2").all()) == 2 })
	if b := ff.ring("spine2").last(); !slices.Equal(b.routes, []Route{{1, 1, NoPort}, {2, 1, NoPort}, {3, 1, NoPort}, {4, 1, NoPort}}) {
		t.Fatalf("spine2 delta %+v", b)
	}
	time.Sleep(10 * time.Millisecond)
	if n := len(ff.ring("leaf2").all()); n != 1 {
		t.Fatalf("leaf2 %d pushes", n)
	}
	st := s.Status()
	if !slices.Equal(st.DownLinks, []string{"spine1:p2-leaf2:p1"}) {
		t.Fatalf("down links %v", st.DownLinks)
	}
	if st.Switches[3].Name != "leaf2" || st.Switches[3].Links[0].State != "down" || st.Switches[3].Reroutes != 1 {
		t.Fatalf("leaf2 status %+v", st.Switches[3])
	}
	v, err := s.Routes("leaf1")
	if err != nil || v.Routes[0].Primary != "p2" || v.Routes[0].Backup != "" || v.Routes[1].Primary != "p2" {
		t.Fatalf("routes %+v %v", v, err)
	}

	// Degraded is not down: nothing is recomputed.
	ff.ring("leaf1").send(Event{Kind: "link", Port: 0, LinkState: headers.LinkDegraded, LossPPM: 2000})
	time.Sleep(10 * time.Millisecond)
	if n := len(ff.ring("leaf1").all()); n != 2 {
		t.Fatalf("degraded link: %d pushes", n)
	}
	// A port the topology does not have is counted, not fatal.
	ff.ring("leaf1").send(Event{Kind: "link", Port: 9, LinkState: headers.LinkDown})

	// Back up: the intact routes return.
	ff.ring("leaf2").send(Event{Kind: "link", Port: 0, LinkState: headers.LinkUp})
	eventually(t, "leaf1 restore", func() bool { return len(ff.ring("leaf1").all()) == 3 })
	if b := ff.ring("leaf1").last(); !slices.Equal(b.routes, []Route{{1, 0, 1}, {2, 1, 0}, {3, 0, 1}, {4, 1, 0}}) {
		t.Fatalf("leaf1 restore %+v", b)
	}
	if st := s.Status(); len(st.DownLinks) != 0 {
		t.Fatalf("down links after up: %v", st.DownLinks)
	}
	s.mu.Lock()
	bad := s.badEvent
	s.mu.Unlock()
	if bad != 1 {
		t.Errorf("bad events %d", bad)
	}
}

func TestServerGroups(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	ff := newFakeFabric(topo, 1)
	var mu sync.Mutex
	var applied []AppliedPush
	s := startServer(t, topo, ff, ServerOptions{Switches: []string{"leaf1", "spine1"}, OnApplied: func(a AppliedPush) {
		mu.Lock()
		applied = append(applied, a)
		mu.Unlock()
	}})
	for _, n := range []string{"leaf1", "spine1"} {
		eventually(t, n+" resync", func() bool { return len(ff.ring(n).all()) == 1 })
	}
	g, err := s.SetGroup(7, []uint16{3, 1, 3}, 42)
	if err != nil || !slices.Equal(g.Members, []uint16{1, 3}) || g.Generations["leaf1"] != 2 {
		t.Fatalf("SetGroup: %+v %v", g, err)
	}
	check := func(want GroupOp) {
		t.Helper()
		for _, n := range []string{"leaf1", "spine1"} {
			b := ff.ring(n).last()
			if b.kind != PushGroupsKind || len(b.ops) != 1 || b.ops[0].Kind != want.Kind || b.ops[0].Group != want.Group || !slices.Equal(b.ops[0].Members, want.Members) {
				t.Fatalf("%s: last push %+v, want %+v", n, b, want)
			}
		}
	}
	check(GroupOp{Kind: GroupSet, Group: 7, Members: []uint16{1, 3}})
	if _, err := s.AddMembers(7, []uint16{2, 3}, 0); err != nil {
		t.Fatal(err)
	}
	check(GroupOp{Kind: GroupAdd, Group: 7, Members: []uint16{2}})
	n := len(ff.ring("leaf1").all())
	if g, err := s.AddMembers(7, []uint16{1}, 0); err != nil || len(g.Members) != 3 || len(ff.ring("leaf1").all()) != n {
		t.Fatalf("adding a member already there pushed: %+v %v", g, err)
	}
	if _, err := s.AddMembers(8, []uint16{4}, 0); err != nil {
		t.Fatal(err)
	}
	check(GroupOp{Kind: GroupSet, Group: 8, Members: []uint16{4}})
	if _, err := s.RemoveMembers(7, []uint16{1, 4}, 0); err != nil {
		t.Fatal(err)
	}
	check(GroupOp{Kind: GroupRemove, Group: 7, Members: []uint16{1}})
	if err := s.DeleteGroup(8, 0); err != nil {
		t.Fatal(err)
	}
	check(GroupOp{Kind: GroupDelete, Group: 8})
	if gs := s.Groups(); len(gs) != 1 || gs[0].ID != 7 || !slices.Equal(gs[0].Members, []uint16{2, 3}) {
		t.Fatalf("groups %+v", gs)
	}

	var re *RequestError
	for _, c := range []struct {
		err   error
		class string
	}{
		{second(s.SetGroup(1, []uint16{5}, 0)), "bad_member"},
		{second(s.AddMembers(1, nil, 0)), "bad_member"},
		{second(s.RemoveMembers(99, []uint16{1}, 0)), "unknown_group"},
		{s.DeleteGroup(99, 0), "unknown_group"},
		{second(s.GetGroup(99)), "unknown_group"},
		{second(s.Routes("nope")), "unknown_switch"},
	} {
		if !errors.As(c.err, &re) || re.Class != c.class {
			t.Errorf("error %v, want class %s", c.err, c.class)
		}
	}

	// The dataplane restarts: its full resync carries the groups.
	r := ff.ring("leaf1")
	r.mu.Lock()
	r.boot, r.applied = 2, 0
	r.mu.Unlock()
	eventually(t, "resync", func() bool { return r.last().kind == PushFullKind })
	if b := r.last(); !slices.Equal(b.full.Groups[7], []uint16{2, 3}) || len(b.full.Groups) != 1 {
		t.Fatalf("full resync groups %v", b.full.Groups)
	}
	// Every push was applied and timed; the first group push carried the
	// request's arrival.
	eventually(t, "applied", func() bool { mu.Lock(); defer mu.Unlock(); return len(applied) >= 13 })
	mu.Lock()
	defer mu.Unlock()
	found := false
	for _, a := range applied {
		if a.Kind == PushGroupsKind && a.Arrival == 42 && a.Published >= a.Pushed {
			found = true
		}
	}
	if !found {
		t.Errorf("no applied group push with arrival 42: %+v", applied)
	}
	s.mu.Lock()
	n64 := s.latency.n
	s.mu.Unlock()
	if n64 < 13 {
		t.Errorf("latency histogram has %d samples", n64)
	}
}

func second[T any](_ T, err error) error { return err }

func TestServerPushFailure(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	ff := newFakeFabric(topo, 1)
	r := ff.ring("leaf1")
	r.failPush = errors.New("command ring full")
	s := startServer(t, topo, ff, ServerOptions{Switches: []string{"leaf1"}})
	time.Sleep(30 * time.Millisecond)
	// A group change while the switch is out of sync is kept, not pushed.
	if _, err := s.SetGroup(1, []uint16{1}, 0); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.failPush = nil
	r.mu.Unlock()
	eventually(t, "resync after failures", func() bool { return len(r.all()) == 1 })
	if b := r.last(); b.kind != PushFullKind || !slices.Equal(b.full.Groups[1], []uint16{1}) {
		t.Fatalf("resync %+v", b)
	}
	// A rejected batch triggers a full resync too.
	r.send(Event{Kind: "rejected", Generation: 1, Code: headers.RejectPort})
	eventually(t, "resync after reject", func() bool { return len(r.all()) == 2 })
	if b := r.last(); b.kind != PushFullKind || b.gen != 2 {
		t.Fatalf("after reject %+v", b)
	}
	if st := s.Status(); st.Switches[0].Rejected != 1 {
		t.Fatalf("rejected %d", st.Switches[0].Rejected)
	}
}

func TestNewServerErrors(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	for _, o := range []ServerOptions{
		{Switches: []string{"leaf9"}},
		{Switches: []string{"leaf1", "leaf1"}},
		{RingSlots: 100},
		{MinSleep: time.Second, MaxSleep: time.Millisecond},
	} {
		if _, err := NewServer(topo, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestServerRealRing runs the server over a real ring file, with this test
// playing the dataplane on the file's other side.
func TestServerRealRing(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	dir := t.TempDir()
	s, err := NewServer(topo, ServerOptions{Switches: []string{"leaf1"}, RingDir: dir, RingSlots: 256, MaxSleep: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	path := filepath.Join(dir, "sparsecast-leaf1.ring")
	eventually(t, "ring file", func() bool { return s.Status().Switches[0].Connected })
	rf, err := ffi.OpenRingFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	var out [headers.RingRecordLen]byte
	rf.SetDataplaneBootID(0xd1)
	if !rf.Events().TryPush(headers.Hello(out[:], 0xd1, 0)) {
		t.Fatal("event ring full")
	}
	// Read one batch: BEGIN(full), ROUTES, COMMIT.
	var recs []string
	var gen uint64
	var rec [headers.RingRecordLen]byte
	commit := func() bool { return len(recs) > 0 && recs[len(recs)-1] == fmt.Sprint(headers.CmdCommit) }
	eventually(t, "full batch", func() bool {
		// Up to the first COMMIT: a second batch may follow (below).
		for !commit() && rf.Commands().TryPop(rec[:]) {
			r := headers.Record(rec[:])
			if code := r.Validate(3); code != 0 {
				t.Fatalf("bad record %v: %v", r.Kind(), headers.RejectError(code))
			}
			recs = append(recs, fmt.Sprint(r.Kind()))
			gen = r.Generation()
			if r.Kind() == headers.CmdRoutes {
				for i := range r.Count() {
					id, p, b := r.Route(i)
					if want := []Route{{1, 0, 1}, {2, 1, 0}, {3, 0, 1}, {4, 1, 0}}[i]; (Route{id, p, b}) != want {
						t.Errorf("route %d: %v, want %v", i, Route{id, p, b}, want)
					}
				}
			}
		}
		return commit()
	})
	if len(recs) != 3 || gen != 1 {
		t.Fatalf("batch %v generation %d", recs, gen)
	}
	rf.SetAppliedGeneration(1)
	rf.Events().TryPush(headers.Applied(out[:], 1, MonotonicNanos()))
	// Control may send a second full resync: one when it finds the new boot
	// ID in the file's header, one for the HELLO (a real dataplane drops
	// whatever it finds on the ring before its HELLO, so the HELLO must get
	// one of its own). Answer every batch, as the dataplane would.
	eventually(t, "applied", func() bool {
		for rf.Commands().TryPop(rec[:]) {
			if r := headers.Record(rec[:]); r.Kind() == headers.CmdCommit {
				gen = r.Generation()
				rf.SetAppliedGeneration(gen)
				rf.Events().TryPush(headers.Applied(out[:], gen, MonotonicNanos()))
			}
		}
		st := s.Status().Switches[0]
		return st.Applied == gen && st.InSync
	})
	s.mu.Lock()
	dr, ok := s.byName["leaf1"].ring.(depthRing)
	s.mu.Unlock()
	if !ok {
		t.Fatal("default ring has no depths")
	}
	if c, e := dr.Depths(); c != 0 || e != 0 {
		t.Errorf("depths %d %d", c, e)
	}
}

// TestServerRingTruncated: the ring file is truncated under a running
// server. The fault is counted, the ring dropped and reopened (reinitialised
// at the server's size), and control goes on serving.
func TestServerRingTruncated(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	dir := t.TempDir()
	s, err := NewServer(topo, ServerOptions{Switches: []string{"leaf1"}, RingDir: dir, RingSlots: 256, MaxSleep: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	path := filepath.Join(dir, "sparsecast-leaf1.ring")
	eventually(t, "ring file", func() bool { return s.Status().Switches[0].Connected })
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	faults := func() uint64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.byName["leaf1"].faults
	}
	eventually(t, "fault counted", func() bool { return faults() == 1 })
	eventually(t, "ring reopened", func() bool {
		st, err := os.Stat(path)
		return s.Status().Switches[0].Connected && err == nil && st.Size() == int64(ffi.RingFileSize(256))
	})
	// A group change goes through the reopened ring without a fault.
	if _, err := s.SetGroup(5, []uint16{1}, 0); err != nil {
		t.Fatal(err)
	}
	if n := faults(); n != 1 {
		t.Fatalf("%d faults, want 1", n)
	}
}

// A ring directory that is missing, or that others can write, is an error
// at start, not a retry forever; a switch name never leaves the directory.
func TestNewServerRingDir(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	open := t.TempDir()
	os.Chmod(open, 0o777)
	for dir, want := range map[string]string{
		filepath.Join(t.TempDir(), "missing"): "does not exist",
		open:                                  "others can write it",
	} {
		_, err := NewServer(topo, ServerOptions{RingDir: dir})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ring dir %s: error %v, want %q", dir, err, want)
		}
	}
	if _, err := ringPathIn(t.TempDir(), "x/../../evil"); err == nil {
		t.Error("a switch name with a slash gave a ring path")
	}
}
