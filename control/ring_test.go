package control

import (
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

// ringPath is a ring file path in a directory of the test's own (a ring
// file is trusted only there; /dev/shm is writable by all).
func ringPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), fmt.Sprintf("sparsecast-ctltest-%s.ring", strings.ReplaceAll(t.Name(), "/", "_")))
}

// fakeDataplane is the switch's side of the file, driven by hand.
type fakeDataplane struct {
	t  *testing.T
	rf *ffi.RingFile
}

func openFake(t *testing.T, path string) *fakeDataplane {
	rf, err := ffi.OpenRingFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rf.Close() })
	return &fakeDataplane{t: t, rf: rf}
}

// records pops every waiting command, each checked with Validate.
func (d *fakeDataplane) records(nports int) []headers.Record {
	var out []headers.Record
	for {
		r := make(headers.Record, headers.RingRecordLen)
		if !d.rf.Commands().TryPop(r) {
			return out
		}
		if code := r.Validate(nports); code != 0 {
			d.t.Fatalf("record %d (%v) invalid: %v", len(out), r.Kind(), headers.RejectError(code))
		}
		out = append(out, r)
	}
}

func (d *fakeDataplane) boot(id, applied uint64) {
	d.rf.SetDataplaneBootID(id)
	d.rf.SetAppliedGeneration(applied)
	var b [headers.RingRecordLen]byte
	if !d.rf.Events().TryPush(headers.Hello(b[:], id, applied)) {
		d.t.Fatal("event ring full")
	}
}

func testTables() *SwitchTables {
	t := &SwitchTables{Switch: "leaf1", Ports: []string{"p0", "p1", "p2"}, Groups: map[uint32][]uint16{}}
	for i := range 30 {
		t.Routes = append(t.Routes, Route{Receiver: uint16(100 + i), Primary: uint8(i % 3), Backup: uint8((i + 1) % 3)})
	}
	t.Routes[29].Backup = NoPort
	big := make([]uint16, 60)
	for i := range big {
		big[i] = uint16(5 * i)
	}
	t.Groups[9] = big
	t.Groups[2] = []uint16{7}
	t.Groups[5] = nil
	return t
}

// describe renders records compactly: kind/arg/count, with the generation
// checked against gen.
func describe(t *testing.T, recs []headers.Record, gen uint64) string {
	var parts []string
	for i, r := range recs {
		if r.Generation() != gen {
			t.Fatalf("record %d: generation %d, want %d", i, r.Generation(), gen)
		}
		parts = append(parts, fmt.Sprintf("%v/%d/%d", r.Kind(), r.Argument(), r.Count()))
	}
	return strings.Join(parts, " ")
}

func TestPushFull(t *testing.T) {
	p := ringPath(t)
	c, err := OpenRing(p, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := openFake(t, p)
	if d.rf.ControlBootID() != c.BootID() || c.BootID() == 0 {
		t.Fatal("control boot ID not in the header")
	}
	tb := testTables()
	if err := c.PushFull(7, tb); err != nil {
		t.Fatal(err)
	}
	recs := d.records(3)
	want := "begin/1/0 routes/0/12 routes/0/12 routes/0/6 group_set/2/1 group_set/5/0 group_set/9/24 group_add/9/24 group_add/9/12 commit/0/0"
	if got := describe(t, recs, 7); got != want {
		t.Fatalf("records\n%s\nwant\n%s", got, want)
	}
	// Contents: every route and member comes back.
	var routes []Route
	members := map[uint32][]uint16{}
	for _, r := range recs {
		switch r.Kind() {
		case headers.CmdRoutes:
			for i := range r.Count() {
				id, pr, bk := r.Route(i)
				routes = append(routes, Route{Receiver: id, Primary: pr, Backup: bk})
			}
		case headers.CmdGroupSet, headers.CmdGroupAdd:
			m := members[r.Group()]
			if m == nil {
				m = []uint16{}
			}
			for i := range r.Count() {
				m = append(m, r.Member(i))
			}
			members[r.Group()] = m
		}
	}
	if !slices.Equal(routes, tb.Routes) || !slices.Equal(members[9], tb.Groups[9]) || !slices.Equal(members[2], tb.Groups[2]) || len(members[5]) != 0 {
		t.Fatalf("decoded routes %v groups %v", routes, members)
	}
}

func TestPushDeltas(t *testing.T) {
	p := ringPath(t)
	c, err := OpenRing(p, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := openFake(t, p)
	if err := c.PushRoutes(8, []Route{{Receiver: 1, Primary: 2, Backup: 1}, {Receiver: 2, Primary: NoPort, Backup: NoPort}}); err != nil {
		t.Fatal(err)
	}
	if got := describe(t, d.records(3), 8); got != "begin/0/0 routes/0/2 commit/0/0" {
		t.Fatal(got)
	}
	ops := []GroupOp{
		{Kind: GroupSet, Group: 1, Members: []uint16{1, 2}},
		{Kind: GroupAdd, Group: 1, Members: []uint16{3}},
		{Kind: GroupAdd, Group: 1}, // nothing to add: no record
		{Kind: GroupRemove, Group: 4, Members: make30()},
		{Kind: GroupDelete, Group: 6},
	}
	before := MonotonicNanos()
	if err := c.PushGroupOps(9, ops); err != nil {
		t.Fatal(err)
	}
	// The batch was handed over whole, by one store, during the call.
	if h := c.HandedOver(); h < before || h > MonotonicNanos() {
		t.Fatalf("handed over at %d, call from %d", h, before)
	}
	if got := d.rf.Commands().Depth(); got != 7 {
		t.Fatalf("%d records visible, want the batch's 7", got)
	}
	want := "begin/0/0 group_set/1/2 group_add/1/1 group_remove/4/24 group_remove/4/6 group_delete/6/0 commit/0/0"
	if got := describe(t, d.records(3), 9); got != want {
		t.Fatalf("%s\nwant\n%s", got, want)
	}
}

func make30() []uint16 {
	m := make([]uint16, 30)
	for i := range m {
		m[i] = uint16(i * 2)
	}
	return m
}

// Bad input is refused with an error before anything is pushed.
func TestPushBadInput(t *testing.T) {
	p := ringPath(t)
	c, err := OpenRing(p, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := openFake(t, p)
	unsorted := make30()
	unsorted[24] = 1 // the second record is sorted, but starts below the first one's end
	for _, tc := range []struct {
		name string
		push func() error
		want string
	}{
		{"generation 0", func() error { return c.PushRoutes(0, nil) }, "generation 0"},
		{"no ports", func() error { return c.PushFull(1, &SwitchTables{Switch: "s"}) }, "0 ports"},
		{"port out of range", func() error {
			tb := testTables()
			tb.Routes[3].Primary = 3
			return c.PushFull(1, tb)
		}, "port index out of range"},
		{"backup without primary", func() error {
			return c.PushRoutes(1, []Route{{Receiver: 1, Primary: NoPort, Backup: 0}})
		}, "port index out of range"},
		{"members unsorted in a record", func() error {
			return c.PushGroupOps(1, []GroupOp{{Kind: GroupAdd, Group: 3, Members: []uint16{5, 4}}})
		}, "not strictly ascending"},
		{"members unsorted across records", func() error {
			return c.PushGroupOps(1, []GroupOp{{Kind: GroupSet, Group: 3, Members: unsorted}})
		}, "group 3: members not strictly ascending"},
		{"unknown op", func() error { return c.PushGroupOps(1, []GroupOp{{Kind: 9}}) }, "unknown kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.push()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if n := d.rf.Commands().Depth(); n != 0 {
				t.Fatalf("%d records pushed", n)
			}
		})
	}
}

// A full ring makes Push wait, bounded: with a consumer it completes a
// batch larger than the ring; without one it fails naming the depth.
func TestPushFullRing(t *testing.T) {
	p := ringPath(t)
	c, err := OpenRing(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := openFake(t, p)
	tb := testTables()

	var got []headers.Record
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			r := make(headers.Record, headers.RingRecordLen)
			if d.rf.Commands().TryPop(r) {
				got = append(got, r)
				continue
			}
			select {
			case <-stop:
				return
			default:
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	err = c.PushFull(3, tb)
	for d.rf.Commands().Depth() > 0 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if err != nil || len(got) != 10 {
		t.Fatalf("err %v, %d records", err, len(got))
	}

	c.SetPushTimeout(50 * time.Millisecond)
	t0 := time.Now()
	err = c.PushFull(4, tb)
	if err == nil || !strings.Contains(err.Error(), "depth 4 of 4") {
		t.Fatalf("err %v", err)
	}
	if el := time.Since(t0); el > 2*time.Second {
		t.Fatalf("gave up after %v", el)
	}
}

// TestRingRestarts: control sees a dataplane (re)start through the header
// and HELLO; a restarted control reads the applied generation.
func TestRingRestarts(t *testing.T) {
	p := ringPath(t)
	c, err := OpenRing(p, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if boot, applied := c.Dataplane(); boot != 0 || applied != 0 {
		t.Fatalf("no dataplane yet, header says %x %d", boot, applied)
	}
	d := openFake(t, p)
	d.boot(0xAAAA, 0)
	var evs []Event
	collect := func(e Event) { evs = append(evs, e) }
	if n := c.PollEvents(collect); n != 1 || evs[0].Kind != "hello" || evs[0].BootID != 0xAAAA {
		t.Fatalf("events %+v", evs)
	}
	if boot, _ := c.Dataplane(); boot != 0xAAAA {
		t.Fatalf("boot %x", boot)
	}
	d.rf.SetAppliedGeneration(17)
	var b [headers.RingRecordLen]byte
	d.rf.Events().TryPush(headers.Applied(b[:], 17, 12345))
	d.rf.Events().TryPush(headers.Rejected(b[:], 18, headers.RejectPort, headers.CmdRoutes, 4))
	d.rf.Events().TryPush(headers.Link(b[:], 17, 2, headers.LinkDown, 1000, 55))
	d.rf.Events().TryPush(headers.Rerouted(b[:], 17, 2, 9, 66))
	bad := headers.Applied(b[:], 17, 1)
	bad[3] = 1
	d.rf.Events().TryPush(bad)
	d.rf.Events().TryPush(headers.Begin(b[:], 1, false)) // a command on the event ring
	evs = nil
	if n := c.PollEvents(collect); n != 4 || c.BadEvents() != 2 {
		t.Fatalf("%d events, %d bad: %+v", n, c.BadEvents(), evs)
	}
	want := []Event{
		{Kind: "applied", Generation: 17, Nanos: 12345},
		{Kind: "rejected", Generation: 18, Code: headers.RejectPort, Index: 4},
		{Kind: "link", Generation: 17, Port: 2, LinkState: headers.LinkDown, LossPPM: 1000, Nanos: 55},
		{Kind: "rerouted", Generation: 17, Port: 2, Moved: 9, Nanos: 66},
	}
	if !slices.Equal(evs, want) {
		t.Fatalf("events\n%+v\nwant\n%+v", evs, want)
	}

	// Control restarts: the new client has a new boot ID and reads the
	// dataplane's applied generation.
	c2, err := OpenRing(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if c2.BootID() == c.BootID() || d.rf.ControlBootID() != c2.BootID() {
		t.Fatal("restarted control kept the boot ID")
	}
	if boot, applied := c2.Dataplane(); boot != 0xAAAA || applied != 17 {
		t.Fatalf("restarted control reads %x %d", boot, applied)
	}
	// Dataplane restarts: a new boot ID and HELLO with applied 0.
	d2 := openFake(t, p)
	d2.boot(0xBBBB, 0)
	evs = nil
	c2.PollEvents(collect)
	if boot, applied := c2.Dataplane(); boot != 0xBBBB || applied != 0 || len(evs) != 1 || evs[0] != (Event{Kind: "hello", BootID: 0xBBBB}) {
		t.Fatalf("after dataplane restart: %x %d %+v", boot, applied, evs)
	}
}

func TestOpenRingErrors(t *testing.T) {
	p := ringPath(t)
	if err := os.WriteFile(p, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	copy := []byte("NOTARING")
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	f.WriteAt(copy, 0)
	f.Close()
	if _, err := OpenRing(p, 0); err == nil || !strings.Contains(err.Error(), "not a sparsecast ring file") {
		t.Fatalf("err %v", err)
	}
}

// TestPushGroupOpsDoesNotAllocate: a member change is handed to the ring
// without allocating (bench control times from just before this), and a
// bad record still gets a message naming it.
func TestPushGroupOpsDoesNotAllocate(t *testing.T) {
	c, err := OpenRing(ringPath(t), 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ops := []GroupOp{{Kind: GroupAdd, Group: 3, Members: []uint16{5}}}
	rec := make([]byte, headers.RingRecordLen)
	gen := uint64(0)
	allocs := testing.AllocsPerRun(200, func() {
		gen++
		if err := c.PushGroupOps(gen, ops); err != nil {
			t.Fatal(err)
		}
		for c.cmd.TryPop(rec) {
		}
	})
	if allocs != 0 {
		t.Fatalf("PushGroupOps allocates %v times", allocs)
	}
	err = c.PushGroupOps(gen+1, []GroupOp{{Kind: GroupAdd, Group: 7, Members: []uint16{9, 5}}})
	if err == nil || !strings.Contains(err.Error(), "group 7") {
		t.Fatalf("bad member: %v", err)
	}
}
