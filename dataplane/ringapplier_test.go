package dataplane

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
)

// ringEnv is a bench switch (port 0 "in", ports 1-4 "out0".."out3") with a
// ring applier, and the control side's own mapping of the ring file.
type ringEnv struct {
	t    testing.TB
	sw   *BenchSwitch
	path string
	dp   *ffi.RingFile // the switch's mapping
	ctl  *ffi.RingFile // control's mapping
	a    *RingApplier
	buf  [headers.RingRecordLen]byte
}

// ringPath is a ring file path in a directory of the test's own (a ring
// file is trusted only there; /dev/shm is writable by all).
func ringPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), fmt.Sprintf("sparsecast-dptest-%s.ring", strings.ReplaceAll(t.Name(), "/", "_")))
}

func newRingEnv(t testing.TB, slots int) *ringEnv {
	t.Helper()
	sw, err := NewBenchSwitch(4, 256, PollAdaptive, -1)
	if err != nil {
		t.Fatal(err)
	}
	e := &ringEnv{t: t, sw: sw, path: ringPath(t)}
	if e.ctl, err = ffi.OpenRingFile(e.path, slots); err != nil {
		t.Fatal(err)
	}
	if e.dp, err = ffi.OpenRingFile(e.path, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ctl.Close(); e.dp.Close() })
	if e.a, err = NewRingApplier(sw.Switch, e.dp, RingApplierOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// push sends one record as control would.
func (e *ringEnv) push(r headers.Record) {
	e.t.Helper()
	if !e.ctl.Commands().TryPush(r) {
		e.t.Fatalf("command ring full")
	}
}

func (e *ringEnv) begin(gen uint64, full bool) { e.push(headers.Begin(e.buf[:], gen, full)) }
func (e *ringEnv) commit(gen uint64)           { e.push(headers.Commit(e.buf[:], gen)) }

func (e *ringEnv) routes(gen uint64, rs ...headers.RingRoute) {
	for len(rs) > 0 {
		r, n := headers.Routes(e.buf[:], gen, rs)
		e.push(r)
		rs = rs[n:]
	}
}

type groupFn func([]byte, uint64, uint32, []uint16) (headers.Record, int)

func (e *ringEnv) group(fn groupFn, gen uint64, id uint32, ms ...uint16) {
	for {
		r, n := fn(e.buf[:], gen, id, ms)
		e.push(r)
		ms = ms[n:]
		if len(ms) == 0 {
			return
		}
		fn = headers.GroupAdd
	}
}

// event pops the next event, waiting up to 5s for it.
func (e *ringEnv) event() headers.Record {
	e.t.Helper()
	out := make(headers.Record, headers.RingRecordLen)
	deadline := time.Now().Add(5 * time.Second)
	for !e.ctl.Events().TryPop(out) {
		if time.Now().After(deadline) {
			e.t.Fatalf("no event within 5s (command depth %d)", e.ctl.Commands().Depth())
		}
		runtime.Gosched() // time.Sleep would round up to a millisecond
	}
	if code := out.Validate(headers.RingNoPort); code != 0 {
		e.t.Fatalf("malformed event %x: %v", []byte(out), headers.RejectError(code))
	}
	return out
}

func (e *ringEnv) wantApplied(gen uint64) {
	e.t.Helper()
	ev := e.event()
	if ev.Kind() != headers.EvApplied || ev.Generation() != gen {
		e.t.Fatalf("event %v gen %d code %s index %d, want applied %d", ev.Kind(), ev.Generation(),
			headers.RejectReason(ev.Code()), ev.RejectedIndex(), gen)
	}
	if ev.ApplyNanos() == 0 || ev.ApplyNanos() > uint64(MonotonicNs()) {
		e.t.Fatalf("apply timestamp %d not in the past", ev.ApplyNanos())
	}
}

func (e *ringEnv) wantHello() headers.Record {
	e.t.Helper()
	ev := e.event()
	if ev.Kind() != headers.EvHello {
		e.t.Fatalf("event %v, want hello", ev.Kind())
	}
	return ev
}

func groupsEqual(a *GroupTable, b map[uint32][]uint16) bool {
	return GroupTableEqual(a, NewGroupTable(b))
}

// TestRingApplierResyncAndDeltas: a full resync then deltas of every kind
// give exactly the tables they describe.
func TestRingApplierResyncAndDeltas(t *testing.T) {
	e := newRingEnv(t, 256)
	hello := e.wantHello()
	if hello.BootID() != e.a.BootID() || hello.BootID() != e.ctl.DataplaneBootID() || hello.BootID() == 0 || hello.AppliedGen() != 0 {
		t.Fatalf("hello boot %x applied %d, header %x", hello.BootID(), hello.AppliedGen(), e.ctl.DataplaneBootID())
	}

	// Full resync: 40 routes (4 records), a 60-member group (SET + 2 ADD)
	// and an empty one.
	want := NewRouteTable()
	var rs []headers.RingRoute
	for i := range 40 {
		r := headers.RingRoute{Receiver: uint16(1000 + 7*i), Primary: uint8(1 + i%4), Backup: uint8(1 + (i+1)%4)}
		if i%5 == 0 {
			r.Backup = headers.RingNoPort
		}
		rs = append(rs, r)
		want.SetWithBackup(r.Receiver, r.Primary, r.Backup)
	}
	big := make([]uint16, 60)
	for i := range big {
		big[i] = uint16(10 + 3*i)
	}
	e.begin(10, true)
	e.routes(10, rs...)
	e.group(headers.GroupSet, 10, 1, big...)
	e.group(headers.GroupSet, 10, 2)
	e.commit(10)
	if n := e.a.Poll(); n != 4+3+1+2 {
		t.Fatalf("polled %d records", n)
	}
	e.wantApplied(10)
	tb := e.sw.Tables()
	wantGroups := map[uint32][]uint16{1: big, 2: {}}
	if tb.Generation != 10 || !tb.Routes.Equal(want) || !groupsEqual(tb.Groups, wantGroups) {
		t.Fatalf("after resync: generation %d, routes equal %v, groups %v", tb.Generation, tb.Routes.Equal(want), tb.Groups)
	}
	if tb.Routes.Lookup(1) != NoPort {
		t.Fatal("the config's routes survived a full resync")
	}
	if e.ctl.AppliedGeneration() != 10 || e.a.Counters().Generation.Load() != 10 || e.a.Counters().BatchesApplied.Load() != 1 {
		t.Fatal("applied generation not recorded")
	}

	// Route delta with port 2 down: entries with primary 2 use their backup.
	e.sw.SetPortDown(2, true)
	e.begin(11, false)
	e.routes(11, headers.RingRoute{Receiver: 1000, Primary: 2, Backup: 3}, headers.RingRoute{Receiver: 5, Primary: 4, Backup: 1},
		headers.RingRoute{Receiver: 1007, Primary: headers.RingNoPort, Backup: headers.RingNoPort})
	e.commit(11)
	e.a.Poll()
	e.wantApplied(11)
	want.SetWithBackup(1000, 2, 3)
	want.SetWithBackup(5, 4, 1)
	want.SetWithBackup(1007, NoPort, NoPort)
	down := e.sw.DownPorts()
	want.Resolve(&down)
	prev := tb
	tb = e.sw.Tables()
	if !tb.Routes.Equal(want) || tb.Routes == prev.Routes || !groupsEqual(tb.Groups, wantGroups) {
		t.Fatal("route delta: wrong tables")
	}
	if tb.Routes.Lookup(1000) != 3 || tb.Routes.Lookup(1007) != NoPort {
		t.Fatalf("receiver 1000 via %d (primary down, want backup 3), 1007 via %d", tb.Routes.Lookup(1000), tb.Routes.Lookup(1007))
	}
	if prev.Routes.Lookup(5) != NoPort {
		t.Fatal("the delta modified the previous snapshot")
	}
	e.sw.SetPortDown(2, false)

	// Group delta: add (with a duplicate), remove (with a non-member),
	// set, delete. The route table is shared, not copied.
	e.begin(12, false)
	e.group(headers.GroupAdd, 12, 2, 5, 9)
	e.group(headers.GroupAdd, 12, 2, 1, 5, 7)
	e.group(headers.GroupRemove, 12, 1, 10, 11, 13, 187)
	e.group(headers.GroupSet, 12, 3, 4, 8)
	e.group(headers.GroupAdd, 12, 3, 6)
	e.push(headers.GroupDelete(e.buf[:], 12, 3))
	e.group(headers.GroupSet, 12, 4, 100)
	e.commit(12)
	e.a.Poll()
	e.wantApplied(12)
	prev, tb = tb, e.sw.Tables()
	wantGroups = map[uint32][]uint16{1: slices.DeleteFunc(slices.Clone(big), func(m uint16) bool { return m == 10 || m == 13 || m == 187 }), 2: {1, 5, 7, 9}, 4: {100}}
	if tb.Routes != prev.Routes || !groupsEqual(tb.Groups, wantGroups) || tb.Generation != 12 {
		t.Fatalf("group delta: routes shared %v, groups %v", tb.Routes == prev.Routes, tb.Groups)
	}
	if g1, _ := prev.Groups.Lookup(1); !slices.Equal(g1, big) {
		t.Fatalf("previous snapshot changed: group 1 %v", g1)
	}
	if g2, _ := prev.Groups.Lookup(2); len(g2) != 0 {
		t.Fatal("the delta modified the previous snapshot's groups")
	}

	// A second full resync replaces everything.
	e.begin(13, true)
	e.routes(13, headers.RingRoute{Receiver: 1, Primary: 0, Backup: headers.RingNoPort})
	e.commit(13)
	e.a.Poll()
	e.wantApplied(13)
	tb = e.sw.Tables()
	if tb.Routes.Len() != 1 || tb.Routes.Lookup(1) != 0 || tb.Groups.Len() != 0 {
		t.Fatalf("second resync: %d routes, %d groups", tb.Routes.Len(), tb.Groups.Len())
	}
}

// TestRingApplierBatchRules: the rules no single record shows.
func TestRingApplierBatchRules(t *testing.T) {
	e := newRingEnv(t, 256)
	e.wantHello()
	orig := e.sw.Tables()
	reject := func(code uint32, index uint32) {
		t.Helper()
		e.a.Poll()
		ev := e.event()
		if ev.Kind() != headers.EvRejected || ev.Code() != code || ev.RejectedIndex() != index {
			t.Fatalf("event %v code %s index %d, want rejected %s at %d", ev.Kind(), headers.RejectReason(ev.Code()),
				ev.RejectedIndex(), headers.RejectReason(code), index)
		}
		if e.sw.Tables() != orig {
			t.Fatal("tables changed")
		}
	}
	// A record outside a batch.
	e.routes(5, headers.RingRoute{Receiver: 1, Primary: 1, Backup: 2})
	reject(headers.RejectOrder, 0)
	e.commit(5)
	reject(headers.RejectOrder, 0)
	// A generation change inside a batch.
	e.begin(5, false)
	e.routes(6, headers.RingRoute{Receiver: 1, Primary: 1, Backup: 2})
	e.commit(5)
	reject(headers.RejectOrder, 1)
	// A COMMIT of another generation ends the batch, refused.
	e.begin(5, false)
	e.commit(4)
	reject(headers.RejectOrder, 1)
	// Removing from, deleting a group that does not exist.
	e.begin(5, false)
	e.group(headers.GroupRemove, 5, 77, 1)
	e.commit(5)
	reject(headers.RejectGroup, 1)
	e.begin(5, false)
	e.group(headers.GroupSet, 5, 77, 1)
	e.push(headers.GroupDelete(e.buf[:], 5, 77))
	e.push(headers.GroupDelete(e.buf[:], 5, 77))
	e.commit(5)
	reject(headers.RejectGroup, 3)
	// An event on the command ring.
	e.begin(5, false)
	e.push(headers.Applied(e.buf[:], 5, 1))
	e.commit(5)
	reject(headers.RejectKind, 1)
	// A BEGIN inside a batch abandons the open one, then applies.
	e.begin(5, false)
	e.routes(5, headers.RingRoute{Receiver: 1, Primary: 1, Backup: 2})
	e.begin(6, false)
	e.commit(6)
	e.a.Poll()
	if ev := e.event(); ev.Kind() != headers.EvRejected || ev.Code() != headers.RejectOrder || ev.RejectedIndex() != 2 || ev.Generation() != 5 {
		t.Fatalf("abandoned batch: event %v code %s index %d gen %d", ev.Kind(), headers.RejectReason(ev.Code()), ev.RejectedIndex(), ev.Generation())
	}
	e.wantApplied(6)
	// A generation not above the applied one.
	orig = e.sw.Tables()
	e.begin(6, false)
	e.commit(6)
	reject(headers.RejectGeneration, 0)
	e.begin(1, true)
	e.commit(1)
	reject(headers.RejectGeneration, 0)
	c := e.a.Counters()
	if c.Rejected[headers.RejectOrder].Load() != 5 || c.Rejected[headers.RejectGroup].Load() != 2 ||
		c.Rejected[headers.RejectKind].Load() != 1 || c.Rejected[headers.RejectGeneration].Load() != 2 || c.BatchesApplied.Load() != 1 {
		t.Fatalf("counters: %v", rejectCounts(c))
	}
}

func rejectCounts(c *RingCounters) map[string]uint64 {
	m := map[string]uint64{}
	for code := range c.Rejected {
		if n := c.Rejected[code].Load(); n > 0 {
			m[headers.RejectReason(uint32(code))] = n
		}
	}
	return m
}

// corrupt returns a valid command record with one field broken, and the
// code it must be refused with (0: any code; the record index is 1 when it
// is wrapped in a batch). gen is the batch's generation.
func corrupt(rng *rand.Rand, b []byte, gen uint64) (headers.Record, uint32) {
	var r headers.Record
	ms := []uint16{3, 9, 200, 4000}
	switch rng.IntN(4) {
	case 0:
		r, _ = headers.Routes(b, gen, []headers.RingRoute{
			{Receiver: 10, Primary: 1, Backup: 2}, {Receiver: 11, Primary: 3, Backup: 4}, {Receiver: 12, Primary: 0, Backup: headers.RingNoPort}})
	case 1:
		r, _ = headers.GroupSet(b, gen, rng.Uint32(), ms)
	case 2:
		r, _ = headers.GroupAdd(b, gen, 1, ms)
	default:
		r = headers.GroupDelete(b, gen, 1)
	}
	k := r.Kind()
	switch rng.IntN(9) {
	case 0:
		r.SetVersion(uint8(2 + rng.IntN(254)))
		return r, headers.RejectVersion
	case 1:
		bad := []uint8{0, 8, 9, 40, 63, 69, 100, 255}
		r.SetKind(headers.RecordKind(bad[rng.IntN(len(bad))]))
		return r, headers.RejectKind
	case 2: // an event kind: refused as such or for its body
		r.SetKind(headers.EvHello + headers.RecordKind(rng.IntN(5)))
		return r, 0
	case 3:
		r[3] = uint8(1 + rng.IntN(255))
		return r, headers.RejectReserved
	case 4:
		r[headers.RingRecordLen-1-rng.IntN(8)] = uint8(1 + rng.IntN(255))
		return r, headers.RejectReserved
	case 5:
		switch k {
		case headers.CmdRoutes:
			r.SetCount(13 + rng.IntN(243))
		case headers.CmdGroupDelete:
			r.SetCount(1 + rng.IntN(255))
		default:
			r.SetCount(25 + rng.IntN(231))
		}
		return r, headers.RejectCount
	case 6:
		r.SetGeneration(gen + 1 + uint64(rng.IntN(1000)))
		return r, headers.RejectOrder
	case 7:
		if k == headers.CmdRoutes {
			r.SetRoute(rng.IntN(3), 10, uint8(5+rng.IntN(250)), 1)
			return r, headers.RejectPort
		}
		if k == headers.CmdGroupDelete {
			r.SetArgument(999) // no such group
			return r, headers.RejectGroup
		}
		r.SetMember(2, 9)
		return r, headers.RejectMembers
	default:
		if k == headers.CmdRoutes {
			r.SetRoute(1, 11, headers.RingNoPort, 2)
			return r, headers.RejectPort
		}
		if k == headers.CmdGroupDelete {
			r.SetArgument(998)
			return r, headers.RejectGroup
		}
		r.SetMember(1, 3)
		return r, headers.RejectMembers
	}
}

// TestRingApplierMalformed feeds 10,000 malformed records through a real
// ring file to a running applier: all are refused with an event and a
// counter, the tables never change, and a good batch still applies.
func TestRingApplierMalformed(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	e := newRingEnv(t, 1024)
	e.wantHello()
	// Group 1 exists so that GROUP_ADD and GROUP_DELETE of it are fine
	// until corrupted.
	e.begin(1, false)
	e.group(headers.GroupSet, 1, 1, 1)
	e.commit(1)
	e.a.Poll()
	e.wantApplied(1)
	orig := e.sw.Tables()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.a.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	rng := rand.New(rand.NewPCG(1, 2))
	var want [headers.NumRejectCodes]uint64
	var bad [headers.RingRecordLen]byte
	for i := range n {
		const gen = 2
		var code, index uint32
		if i%4 == 0 {
			// Random bytes, outside any batch.
			for j := range bad {
				bad[j] = byte(rng.Uint32())
			}
			r := headers.Record(bad[:])
			code = r.Validate(e.sw.NumPorts())
			if code == 0 {
				continue // a valid record by chance: not what this test is about
			}
			e.push(r)
		} else {
			e.begin(gen, false)
			r, c := corrupt(rng, bad[:], gen)
			code, index = c, 1
			e.push(r)
			e.commit(gen)
		}
		ev := e.event()
		if ev.Kind() != headers.EvRejected || code != 0 && ev.Code() != code || ev.RejectedIndex() != index {
			t.Fatalf("case %d: event %v code %s index %d, want rejected %s at %d (record %x)", i, ev.Kind(),
				headers.RejectReason(ev.Code()), ev.RejectedIndex(), headers.RejectReason(code), index, bad)
		}
		want[ev.Code()]++
	}
	if e.sw.Tables() != orig {
		t.Fatal("tables changed")
	}
	var total uint64
	for code := range want {
		if got := e.a.Counters().Rejected[code].Load(); got != want[code] {
			t.Errorf("counter %s = %d, want %d", headers.RejectReason(uint32(code)), got, want[code])
		}
		total += want[code]
	}
	t.Logf("%d refused: %v", total, rejectCounts(e.a.Counters()))
	if total < uint64(n)*9/10 {
		t.Fatalf("only %d of %d refused", total, n)
	}
	// Still alive: a good batch applies.
	e.begin(2, false)
	e.routes(2, headers.RingRoute{Receiver: 7, Primary: 1, Backup: 2})
	e.commit(2)
	e.wantApplied(2)
	if tb := e.sw.Tables(); tb.Routes.Lookup(7) != 1 || tb.Generation != 2 {
		t.Fatal("good batch not applied")
	}
}

// TestRingApplierRestart: a restarted dataplane (a second applier on the
// same file) has a new boot ID, resets the applied generation and says
// HELLO; what its predecessor left in the command ring is dropped.
func TestRingApplierRestart(t *testing.T) {
	e := newRingEnv(t, 64)
	e.wantHello()
	e.begin(3, true)
	e.commit(3)
	e.a.Poll()
	e.wantApplied(3)
	first := e.a.BootID()
	e.begin(4, false) // left half-sent for the dead dataplane

	dp2, err := ffi.OpenRingFile(e.path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dp2.Close()
	a2, err := NewRingApplier(e.sw.Switch, dp2, RingApplierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hello := e.wantHello()
	if a2.BootID() == first || hello.BootID() != a2.BootID() || e.ctl.DataplaneBootID() != a2.BootID() ||
		hello.AppliedGen() != 0 || e.ctl.AppliedGeneration() != 0 {
		t.Fatalf("boot IDs %x then %x, hello %x applied %d, header applied %d", first, a2.BootID(), hello.BootID(),
			hello.AppliedGen(), e.ctl.AppliedGeneration())
	}
	if e.ctl.Commands().Depth() != 0 {
		t.Fatal("the restarted applier kept its predecessor's commands")
	}
	// Generation 1 applies again: the new dataplane has applied nothing.
	e.begin(1, true)
	e.commit(1)
	a2.Poll()
	e.wantApplied(1)
}

// TestRingApplierEmit: LINK and REROUTED events reach control; a full event
// ring drops and counts instead of blocking.
func TestRingApplierEmit(t *testing.T) {
	e := newRingEnv(t, 4)
	e.wantHello()
	if !e.a.EmitLink(2, headers.LinkDown, 500000, 77) || !e.a.EmitRerouted(2, 12, 88) {
		t.Fatal("emit failed")
	}
	ev := e.event()
	if ev.Kind() != headers.EvLink || ev.Port() != 2 || ev.LinkState() != headers.LinkDown || ev.LossPPM() != 500000 || ev.EventNanos() != 77 {
		t.Fatalf("link event %x", []byte(ev))
	}
	ev = e.event()
	if ev.Kind() != headers.EvRerouted || ev.Port() != 2 || ev.Moved() != 12 || ev.EventNanos() != 88 {
		t.Fatalf("rerouted event %x", []byte(ev))
	}
	if e.a.EmitLink(9, headers.LinkDown, 0, 1) { // no port 9
		t.Fatal("a bad event was sent")
	}
	var b [headers.RingRecordLen]byte
	if e.a.Emit(headers.Begin(b[:], 1, false)) {
		t.Fatal("a command was sent as an event")
	}
	for range 4 {
		e.a.EmitRerouted(1, 1, 1)
	}
	done := make(chan bool)
	go func() { done <- e.a.EmitRerouted(1, 1, 1) }()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("emit into a full ring succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("emit blocked on a full ring")
	}
	if d := e.a.Counters().EventsDropped.Load(); d != 3 {
		t.Fatalf("%d events dropped, want 3", d)
	}
}

func TestRingApplierOptions(t *testing.T) {
	e := newRingEnv(t, 4)
	if _, err := NewRingApplier(e.sw.Switch, e.dp, RingApplierOptions{Sleep: time.Second}); err == nil || !strings.Contains(err.Error(), "sleep") {
		t.Fatalf("err %v", err)
	}
	for _, o := range []RingApplierOptions{{Pin: true}, {BusyPoll: true, Pin: true, CPU: -1}, {BusyPoll: true, Pin: true, CPU: runtime.NumCPU()}} {
		if _, err := NewRingApplier(e.sw.Switch, e.dp, o); err == nil || !strings.Contains(err.Error(), "pinned") {
			t.Errorf("%+v: err %v", o, err)
		}
	}
	// A pinned busy applier runs on its CPU and stops with its context.
	a, err := NewRingApplier(e.sw.Switch, e.dp, RingApplierOptions{BusyPoll: true, Pin: true, CPU: runtime.NumCPU() - 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestControlPollConfig: control_poll_mode and control_cpu are checked at
// load, a CPU only with busy polling.
func TestControlPollConfig(t *testing.T) {
	cpu, bad := 0, runtime.NumCPU()
	for _, c := range []struct {
		mode PollMode
		cpu  *int
		err  string
	}{
		{"", nil, ""},
		{PollBusy, &cpu, ""},
		{"spin", nil, "control_poll_mode"},
		{PollAdaptive, &cpu, "only a busy ring applier"},
		{PollBusy, &bad, "does not exist"},
	} {
		cfg := &Config{Name: "s", ControlPollMode: c.mode, ControlCPU: c.cpu, Ports: []PortConfig{{Name: "p0", Type: "mem"}}}
		err := cfg.Validate()
		if c.err == "" && (err != nil || cfg.ControlPollMode == "") || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q %v: err %v (mode %q)", c.mode, c.cpu, err, cfg.ControlPollMode)
		}
	}
}

// TestRingApplierLatency measures batch-apply latency on a running applier
// (adaptive polling): the time from COMMIT pushed to APPLIED popped, for a
// one-member group add and for a 12-route delta.
func TestRingApplierLatency(t *testing.T) {
	e := newRingEnv(t, 256)
	e.wantHello()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.a.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	e.begin(1, false)
	e.group(headers.GroupSet, 1, 1, 1)
	e.commit(1)
	e.wantApplied(1)
	const rounds = 200
	measure := func(name string, push func(gen uint64)) {
		var rt, apply []time.Duration
		for i := range rounds {
			gen := e.ctl.AppliedGeneration() + 1
			push(gen)
			t0 := time.Now()
			e.commit(gen)
			e.wantApplied(gen)
			rt = append(rt, time.Since(t0))
			apply = append(apply, time.Duration(e.a.Counters().LastApplyNanos.Load()))
			_ = i
		}
		sort.Slice(rt, func(i, j int) bool { return rt[i] < rt[j] })
		sort.Slice(apply, func(i, j int) bool { return apply[i] < apply[j] })
		t.Logf("%s: apply p50 %v p99 %v; COMMIT to APPLIED seen p50 %v p99 %v", name,
			apply[rounds/2], apply[rounds*99/100], rt[rounds/2], rt[rounds*99/100])
	}
	measure("group add, 1 member", func(gen uint64) {
		e.begin(gen, false)
		e.group(headers.GroupAdd, gen, 1, uint16(2+gen))
	})
	measure("routes delta, 12 entries", func(gen uint64) {
		e.begin(gen, false)
		var rs [12]headers.RingRoute
		for i := range rs {
			rs[i] = headers.RingRoute{Receiver: uint16(int(gen)*12 + i), Primary: 1, Backup: 2}
		}
		e.routes(gen, rs[:]...)
	})
}

// BenchmarkRingApplyGroupAdd: one delta batch adding a member to a group
// of 100 among 1000 groups, applied and published (Poll on this goroutine).
func BenchmarkRingApplyGroupAdd(b *testing.B) {
	e := newRingEnv(b, 1024)
	e.begin(1, true)
	ms := make([]uint16, 100)
	for i := range ms {
		ms[i] = uint16(2 * i)
	}
	for g := range uint32(1000) {
		e.group(headers.GroupSet, 1, g, ms...)
		e.a.Poll()
	}
	e.commit(1)
	e.a.Poll()
	var ev [headers.RingRecordLen]byte
	for e.ctl.Events().TryPop(ev[:]) {
	}
	b.ResetTimer()
	for i := range b.N {
		gen := uint64(i + 2)
		e.begin(gen, false)
		e.group(headers.GroupAdd, gen, 7, 1)
		e.group(headers.GroupRemove, gen, 7, 1)
		e.commit(gen)
		e.a.Poll()
		e.ctl.Events().TryPop(ev[:])
	}
}

// BenchmarkRingApplyRoutes: one delta batch of 12 routes (clone, resolve,
// publish).
func BenchmarkRingApplyRoutes(b *testing.B) {
	e := newRingEnv(b, 1024)
	var ev [headers.RingRecordLen]byte
	e.ctl.Events().TryPop(ev[:])
	var rs [12]headers.RingRoute
	for i := range rs {
		rs[i] = headers.RingRoute{Receiver: uint16(i * 5), Primary: 1, Backup: 2}
	}
	for i := range b.N {
		gen := uint64(i + 1)
		e.begin(gen, false)
		e.routes(gen, rs[:]...)
		e.commit(gen)
		e.a.Poll()
		e.ctl.Events().TryPop(ev[:])
	}
}

// TestRingApplierLinkEvents: a link failure handled by the switch reaches
// control as LINK then REROUTED.
func TestRingApplierLinkEvents(t *testing.T) {
	e := newRingEnv(t, 16)
	e.wantHello()
	e.sw.OnLinkEvent(e.a.OnLinkEvent)
	e.sw.LinkChange(1, headers.LinkDown, "probe_timeout", 0, 123)
	ev := e.event()
	if ev.Kind() != headers.EvLink || ev.Port() != 1 || ev.LinkState() != headers.LinkDown || ev.EventNanos() != 123 {
		t.Fatalf("link event %v %x", ev.Kind(), []byte(ev))
	}
	ev = e.event()
	if ev.Kind() != headers.EvRerouted || ev.Port() != 1 || ev.EventNanos() == 0 {
		t.Fatalf("rerouted event %v %x", ev.Kind(), []byte(ev))
	}
	e.sw.LinkChange(1, headers.LinkDegraded, "probe_loss", 300000, 456)
	if ev = e.event(); ev.Kind() != headers.EvLink || ev.LossPPM() != 300000 {
		t.Fatalf("degraded event %v", ev.Kind())
	}
	if e.ctl.Events().Depth() != 0 {
		t.Fatal("a degraded link reported a reroute")
	}
}

func TestValidateControlRing(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"", true},
		{"/dev/shm/sparsecast-leaf1.ring", true},
		{"dev/shm/x.ring", false},
		{"/dev/shm/../shm/x.ring", false},
		{"/dev/shm/", false},
		{"/dev/shm/a\x00b", false},
	} {
		if err := ValidateControlRing(tc.path); (err == nil) != tc.ok {
			t.Errorf("%q: err %v", tc.path, err)
		}
	}
}

// BenchmarkRingApplierGroupAdd: one single-member GROUP_ADD batch, from
// the ring to the publish, with 150 and 10,000 groups in the table (the
// bytes per op should not grow with the groups).
func BenchmarkRingApplierGroupAdd(b *testing.B) {
	for _, groups := range []int{150, 10000} {
		b.Run(fmt.Sprint(groups), func(b *testing.B) {
			e := newRingEnv(b, 4096)
			gen := uint64(1)
			e.begin(gen, true)
			for g := range groups {
				r, _ := headers.GroupSet(e.buf[:], gen, uint32(g), []uint16{1})
				e.push(r)
				if g%1000 == 0 {
					e.a.Poll()
				}
			}
			e.commit(gen)
			e.a.Poll()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				gen++
				e.begin(gen, false)
				r, _ := headers.GroupAdd(e.buf[:], gen, uint32(i%groups), []uint16{uint16(2 + i%60)})
				e.push(r)
				e.commit(gen)
				e.a.Poll()
			}
		})
	}
}

// A busy applier keeps its newest stalls with when they ended; StallLog
// picks a window of them, and the counters keep the totals past the log's
// length.
func TestRingApplierStallLog(t *testing.T) {
	e := newRingEnv(t, 16)
	if e.a.StallLog(0, 1<<62) != nil {
		t.Fatal("a sleeping applier keeps a stall log")
	}
	a, err := NewRingApplier(e.sw.Switch, e.dp, RingApplierOptions{BusyPoll: true})
	if err != nil {
		t.Fatal(err)
	}
	n := stallLogLen + 10
	for i := range n {
		a.noteStall(int64(1000+i), int64(3000+i))
	}
	if got := a.Counters().Stalls.Load(); got != uint64(n) {
		t.Fatalf("stalls %d, want %d", got, n)
	}
	all := a.StallLog(0, 1<<62)
	if len(all) != stallLogLen || all[0].End != 1010 || all[len(all)-1].End != int64(1000+n-1) {
		t.Fatalf("log of %d from %d to %d", len(all), all[0].End, all[len(all)-1].End)
	}
	if w := a.StallLog(2000, 2004); len(w) != 5 || w[0].Len != 4000 {
		t.Fatalf("window: %+v", w)
	}
	// Running busy, it notes a stall when its goroutine is held up; here the
	// runtime is made to take its thread away by a burst of others.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	before := a.Counters().Stalls.Load()
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for a.Counters().Stalls.Load() == before && time.Now().Before(deadline) {
		var wg sync.WaitGroup
		for range 4 * runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for t0 := time.Now(); time.Since(t0) < 5*time.Millisecond; {
				}
			}()
		}
		wg.Wait()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a.Counters().Stalls.Load() == before {
		t.Fatal("no stall noted while other goroutines held every CPU")
	}
}

// TestRingApplierTruncatedLive: the ring file of a forwarding switch is
// truncated under it. The applier drops the ring and counts the fault; the
// workers forward on without a gap in the tables; the ring is reopened, at
// the same size, and batches apply again.
func TestRingApplierTruncatedLive(t *testing.T) {
	e := newRingEnv(t, 64)
	var logBuf syncBuffer
	e.a.log = &logBuf
	e.a.opts.Reopen = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.sw.Run(ctx) }()
	go func() { defer wg.Done(); e.a.Run(ctx) }()
	defer func() { cancel(); wg.Wait(); e.a.Close() }()
	e.wantHello()
	e.begin(3, false)
	e.group(headers.GroupSet, 3, 7, 1, 2)
	e.commit(3)
	e.wantApplied(3)

	if err := os.Truncate(e.path, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fault counted", func() bool { return e.a.Counters().Faults.Load() == 1 })
	if g := e.sw.Tables().Generation; g != 3 {
		t.Fatalf("tables at generation %d after the fault, want 3", g)
	}
	sent := e.sw.Sinks[0].Packets.Load()
	waitFor(t, "forwarding after the fault", func() bool { return e.sw.Sinks[0].Packets.Load() > sent+1000 })
	waitFor(t, "the ring reopened", func() bool { return e.a.Counters().Reopens.Load() == 1 })
	if e.a.Counters().Connected.Load() != 1 {
		t.Fatal("reopened but not connected")
	}
	// Control's old mapping is valid again (same file, same size): the
	// reopened dataplane says HELLO with the generation it kept.
	if hello := e.wantHello(); hello.BootID() == 0 || e.ctl.AppliedGeneration() != 3 {
		t.Fatalf("hello boot %x, header applied %d, want 3", hello.BootID(), e.ctl.AppliedGeneration())
	}
	e.begin(4, false)
	e.group(headers.GroupSet, 4, 8, 3)
	e.commit(4)
	e.wantApplied(4)
	if _, ok := e.sw.Tables().Groups.Lookup(7); !ok {
		t.Fatal("group 7 lost across the reopen")
	}
	if !strings.Contains(logBuf.String(), "dropped") || !strings.Contains(logBuf.String(), "reopened") {
		t.Fatalf("log %q: want the drop and the reopen", logBuf.String())
	}
}

// TestRingApplierBadRecordsCounted: a bad record inside a batch that never
// ends is counted when it arrives, not when a COMMIT comes.
func TestRingApplierBadRecordsCounted(t *testing.T) {
	e := newRingEnv(t, 64)
	e.wantHello()
	e.begin(3, false)
	bad := make(headers.Record, headers.RingRecordLen)
	copy(bad, e.buf[:])
	bad[0] ^= 0xff // not a record of this version
	e.push(bad)
	e.push(bad)
	e.a.Poll()
	if n := e.a.Counters().BadRecords.Load(); n != 2 {
		t.Fatalf("bad records %d, want 2", n)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer for one writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
