// The control side of one switch's ring file (docs/control.md): batches of
// command records out, events in. The record format is headers/ring.go; the
// shared memory is ffi's RingFile.
package control

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
)

// DefaultPushTimeout bounds how long one Push waits, in total, for room in
// a full command ring.
const DefaultPushTimeout = 2 * time.Second

// RingClient implements Ring over a ring file. It is used by one goroutine
// at a time (the ring has one producer).
type RingClient struct {
	rf      *ffi.RingFile
	cmd, ev *ffi.SPSC
	bootID  uint64
	nports  int // ports of the last full resync; 255 (any) before one
	timeout time.Duration
	// BadEvents counts event records PollEvents skipped as malformed.
	badEvents uint64
	rec       [headers.RingRecordLen]byte
	routes    [headers.RoutesPerRec]headers.RingRoute
	b         batch // the push in progress, kept here so pushing allocates nothing
	handed    uint64
}

var _ Ring = (*RingClient)(nil)

// OpenRing opens (creating if needed) the ring file at path with slots
// records per ring (0: the file's, or ffi.DefaultRingSlots for a new file)
// and writes a fresh control boot ID into its header.
func OpenRing(path string, slots int) (*RingClient, error) {
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		// The switch created it first: take its size, whatever ours is.
		// (An empty file is one being created, or truncated by someone:
		// it is initialised with ours.)
		slots = 0
	}
	rf, err := ffi.OpenRingFile(path, slots)
	if err != nil {
		return nil, err
	}
	c := &RingClient{rf: rf, cmd: rf.Commands(), ev: rf.Events(), nports: headers.RingNoPort, timeout: DefaultPushTimeout}
	for c.bootID == 0 {
		c.bootID = rand.Uint64()
	}
	rf.SetControlBootID(c.bootID)
	return c, nil
}

// BootID is the control boot ID this client wrote.
func (c *RingClient) BootID() uint64 { return c.bootID }

// SetPushTimeout changes how long one Push may wait for ring space in total.
func (c *RingClient) SetPushTimeout(d time.Duration) { c.timeout = d }

// BadEvents counts malformed event records PollEvents skipped.
func (c *RingClient) BadEvents() uint64 { return c.badEvents }

// Dataplane returns the dataplane's boot ID (0: none yet) and applied
// generation from the header.
func (c *RingClient) Dataplane() (bootID, applied uint64) {
	return c.rf.DataplaneBootID(), c.rf.AppliedGeneration()
}

// Close unmaps the ring file; the file stays for the switch.
func (c *RingClient) Close() error { return c.rf.Close() }

// batch is a push in progress: records are checked as they are built, before
// any is pushed, by running the same builder twice (check, then send). The
// time from control handing an update over to its publish is measured
// across this, so nothing here formats or allocates unless a record is bad.
type batch struct {
	c     *RingClient
	gen   uint64
	send  bool
	n     int
	start time.Time
	err   error
}

// recName names a record in an error: what, then lo and hi unless -1
// ("group 7", "routes for receivers 1-64").
type recName struct {
	what   string
	lo, hi int
}

func (n recName) String() string {
	switch {
	case n.lo < 0:
		return n.what
	case n.hi < 0:
		return fmt.Sprintf("%s %d", n.what, n.lo)
	}
	return fmt.Sprintf("%s %d-%d", n.what, n.lo, n.hi)
}

func (b *batch) put(r headers.Record, name recName) {
	if b.err != nil {
		return
	}
	if !b.send {
		if code := r.Validate(b.c.nports); code != 0 {
			b.err = fmt.Errorf("generation %d: %s: %w", b.gen, name, headers.RejectError(code))
		}
		return
	}
	b.err = b.c.push(r, b.start)
	b.n++
}

// run builds the batch with fill, first to check every record, then to push.
func (c *RingClient) run(gen uint64, full bool, fill func(b *batch)) error {
	if gen == 0 {
		return errors.New("generation 0: generations start at 1")
	}
	start := time.Now()
	c.handed = 0
	for _, send := range [2]bool{false, true} {
		b := &c.b
		*b = batch{c: c, gen: gen, send: send, start: start}
		b.put(headers.Begin(c.rec[:], gen, full), recName{"begin", -1, -1})
		fill(b)
		b.put(headers.Commit(c.rec[:], gen), recName{"commit", -1, -1})
		if send {
			c.publish()
		}
		if b.err != nil {
			if send {
				return fmt.Errorf("generation %d: pushed %d records: %w (the dataplane drops the partial batch at the next BEGIN)", gen, b.n, b.err)
			}
			return b.err
		}
	}
	return nil
}

// push stages a record, publishing what is staged and waiting for room
// when the ring is full, up to the push timeout counted from the batch
// start.
func (c *RingClient) push(r headers.Record, start time.Time) error {
	sleep := 20 * time.Microsecond
	for !c.cmd.Stage(r) {
		c.publish()
		if time.Since(start) > c.timeout {
			return fmt.Errorf("command ring full (depth %d of %d) for %v: is the switch's ring applier running?", c.cmd.Depth(), c.cmd.Slots(), c.timeout)
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, time.Millisecond)
	}
	return nil
}

// publish makes the staged records visible, noting when the batch's first
// ones were (HandedOver).
func (c *RingClient) publish() {
	if c.handed == 0 {
		c.handed = MonotonicNanos()
	}
	c.cmd.Publish()
}

// HandedOver is when the last batch's first records became visible to the
// dataplane (CLOCK_MONOTONIC ns; 0 if none did): the start of the update
// latency that APPLIED ends. A batch that fits in the ring is published
// whole, by one store right after this reading.
func (c *RingClient) HandedOver() uint64 { return c.handed }

func (c *RingClient) putRoutes(b *batch, routes []Route) {
	for len(routes) > 0 && b.err == nil {
		n := min(len(routes), headers.RoutesPerRec)
		for i, r := range routes[:n] {
			c.routes[i] = headers.RingRoute{Receiver: r.Receiver, Primary: r.Primary, Backup: r.Backup}
		}
		rec, _ := headers.Routes(c.rec[:], b.gen, c.routes[:n])
		b.put(rec, recName{"routes for receivers", int(routes[0].Receiver), int(routes[n-1].Receiver)})
		routes = routes[n:]
	}
}

type groupRec func(b []byte, gen uint64, group uint32, members []uint16) (headers.Record, int)

// putMembers sends members in records of kind first, then rest (GROUP_ADD
// after a GROUP_SET that does not fit in one record).
func (c *RingClient) putMembers(b *batch, first, rest groupRec, group uint32, members []uint16, allowEmpty bool) {
	if len(members) == 0 && !allowEmpty {
		return
	}
	what := recName{"group", int(group), -1}
	mk := first
	for done := false; !done && b.err == nil; mk = rest {
		rec, n := mk(c.rec[:], b.gen, group, members)
		if !b.send && n < len(members) && members[n] <= members[n-1] {
			b.err = fmt.Errorf("generation %d: %s: members not strictly ascending", b.gen, what)
		}
		b.put(rec, what)
		members = members[n:]
		done = len(members) == 0
	}
}

// PushFull sends a full resync: every route and every group of t (groups in
// ascending ID order). Port indexes are checked against t.Ports, which later
// PushRoutes also check against.
func (c *RingClient) PushFull(gen uint64, t *SwitchTables) error {
	if len(t.Ports) == 0 || len(t.Ports) > headers.RingNoPort {
		return fmt.Errorf("switch %s: %d ports: want 1-%d", t.Switch, len(t.Ports), headers.RingNoPort)
	}
	c.nports = len(t.Ports)
	ids := make([]uint32, 0, len(t.Groups))
	for id := range t.Groups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return c.run(gen, true, func(b *batch) {
		c.putRoutes(b, t.Routes)
		for _, id := range ids {
			c.putMembers(b, headers.GroupSet, headers.GroupAdd, id, t.Groups[id], true)
		}
	})
}

// PushRoutes sends changed route entries as one delta batch. A Route with
// Primary NoPort (and Backup NoPort) removes the receiver's route.
func (c *RingClient) PushRoutes(gen uint64, routes []Route) error {
	return c.run(gen, false, func(b *batch) { c.putRoutes(b, routes) })
}

// PushGroupOps sends membership changes as one delta batch.
func (c *RingClient) PushGroupOps(gen uint64, ops []GroupOp) error {
	for i, op := range ops {
		if op.Kind < GroupSet || op.Kind > GroupDelete {
			return fmt.Errorf("generation %d: op %d: unknown kind %d", gen, i, op.Kind)
		}
	}
	return c.run(gen, false, func(b *batch) {
		for _, op := range ops {
			switch op.Kind {
			case GroupSet:
				c.putMembers(b, headers.GroupSet, headers.GroupAdd, op.Group, op.Members, true)
			case GroupAdd:
				c.putMembers(b, headers.GroupAdd, headers.GroupAdd, op.Group, op.Members, false)
			case GroupRemove:
				c.putMembers(b, headers.GroupRemove, headers.GroupRemove, op.Group, op.Members, false)
			case GroupDelete:
				b.put(headers.GroupDelete(c.rec[:], b.gen, op.Group), recName{"delete group", int(op.Group), -1})
			}
		}
	})
}

var eventNames = map[headers.RecordKind]string{
	headers.EvHello: "hello", headers.EvApplied: "applied", headers.EvRejected: "rejected",
	headers.EvLink: "link", headers.EvRerouted: "rerouted",
}

// PollEvents hands every waiting event to fn and returns how many; malformed
// records are skipped and counted (BadEvents).
func (c *RingClient) PollEvents(fn func(Event)) int {
	n := 0
	for c.ev.TryPop(c.rec[:]) {
		r := headers.Record(c.rec[:])
		if r.Validate(headers.RingNoPort) != 0 || !r.Kind().IsEvent() {
			c.badEvents++
			continue
		}
		e := Event{Kind: eventNames[r.Kind()], Generation: r.Generation()}
		switch r.Kind() {
		case headers.EvHello:
			e.BootID, e.Generation = r.BootID(), r.AppliedGen()
		case headers.EvApplied:
			e.Nanos = r.ApplyNanos()
		case headers.EvRejected:
			e.Code, e.Index = r.Code(), r.RejectedIndex()
		case headers.EvLink:
			e.Port, e.LinkState, e.LossPPM, e.Nanos = r.Port(), r.LinkState(), r.LossPPM(), r.EventNanos()
		case headers.EvRerouted:
			e.Port, e.Moved, e.Nanos = r.Port(), r.Moved(), r.EventNanos()
		}
		fn(e)
		n++
	}
	return n
}
