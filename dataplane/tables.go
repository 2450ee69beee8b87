// Forwarding tables: immutable snapshots. Writers (config load and the control
// ring's applier, ringapplier.go) build a new Tables and publish it with one
// atomic pointer store; workers load the pointer once per burst and never lock
// (gVisor's multicast route table takes a lock per lookup; this one doesn't).
package dataplane

import (
	"fmt"
	"math/bits"
	"slices"

	"github.com/sparsecast/sparsecast/headers"
)

// NoPort marks a receiver without a route.
const NoPort = 0xFF

// RouteTable maps every receiver ID to an egress port index. Dense arrays:
// one load per receiver, no hashing. port is what forwarding uses: the
// primary, or the backup while the primary's link is down (fast reroute).
// The primaries and backups are shared between snapshots and copied only
// when a snapshot changes them, so a fast reroute copies 64 KiB and walks
// only the receivers that have a route.
type RouteTable struct {
	port  [headers.MaxID + 1]uint8
	ent   *routeEntries
	owned bool // ent belongs to this table alone and may be changed
}

type routeEntries struct {
	primary [headers.MaxID + 1]uint8
	backup  [headers.MaxID + 1]uint8
	has     [(headers.MaxID + 1) / 64]uint64 // receivers with a primary
}

// Lookup returns the egress port of a receiver, or NoPort.
func (t *RouteTable) Lookup(id uint16) uint8 { return t.port[id] }

// Backup returns a receiver's precomputed backup port, or NoPort.
func (t *RouteTable) Backup(id uint16) uint8 { return t.ent.backup[id] }

// Primary returns a receiver's primary port, or NoPort.
func (t *RouteTable) Primary(id uint16) uint8 { return t.ent.primary[id] }

// Tables is one published snapshot of everything the fast path looks up.
type Tables struct {
	Generation uint64
	Routes     *RouteTable
	// Groups maps a group ID to its members, strictly ascending (nil: no
	// groups).
	Groups *GroupTable
}

// NewRouteTable returns a table with no routes.
func NewRouteTable() *RouteTable {
	t := &RouteTable{ent: &routeEntries{}, owned: true}
	for i := range t.port {
		t.port[i], t.ent.primary[i], t.ent.backup[i] = NoPort, NoPort, NoPort
	}
	return t
}

// Set routes receiver id through port with no backup (NoPort removes the
// route).
func (t *RouteTable) Set(id uint16, port uint8) { t.SetWithBackup(id, port, NoPort) }

// SetWithBackup routes receiver id through primary, with backup as its fast
// reroute alternative. The active port is the primary until Resolve says
// otherwise.
func (t *RouteTable) SetWithBackup(id uint16, primary, backup uint8) {
	if !t.owned {
		e := *t.ent
		t.ent, t.owned = &e, true
	}
	t.port[id], t.ent.primary[id], t.ent.backup[id] = primary, primary, backup
	if primary == NoPort {
		t.ent.has[id>>6] &^= 1 << (id & 63)
	} else {
		t.ent.has[id>>6] |= 1 << (id & 63)
	}
}

// Clone returns a copy to modify before publishing. The primaries and
// backups are shared until the copy changes one.
func (t *RouteTable) Clone() *RouteTable {
	return &RouteTable{port: t.port, ent: t.ent}
}

// Len counts the receivers with a route.
func (t *RouteTable) Len() int {
	n := 0
	for _, w := range t.ent.has {
		n += bits.OnesCount64(w)
	}
	return n
}

// PortSet is a set of port indexes (the ones whose link is down).
type PortSet [4]uint64

func (s *PortSet) Add(p uint8)      { s[p>>6] |= 1 << (p & 63) }
func (s *PortSet) Remove(p uint8)   { s[p>>6] &^= 1 << (p & 63) }
func (s *PortSet) Has(p uint8) bool { return s[p>>6]&(1<<(p&63)) != 0 }
func (s *PortSet) Empty() bool      { return s[0]|s[1]|s[2]|s[3] == 0 }

// Resolve sets every entry's active port from its primary and backup given
// the ports that are down: the primary while it is up, else the backup while
// that is up, else no route. It returns how many entries do not use their
// primary. Only entries whose primary is down change, which is what keeps a
// failure's effect to the receivers behind it. It walks only receivers that
// have a route.
func (t *RouteTable) Resolve(down *PortSet) int {
	moved := 0
	e := t.ent
	for wi, w := range e.has {
		for w != 0 {
			id := wi<<6 | bits.TrailingZeros64(w)
			w &= w - 1
			p, b := e.primary[id], e.backup[id]
			switch {
			case !down.Has(p):
				t.port[id] = p
			case b != NoPort && !down.Has(b):
				t.port[id] = b
				moved++
			default:
				t.port[id] = NoPort
				moved++
			}
		}
	}
	return moved
}

// TablesFromConfig builds the first snapshot from a validated config.
func TablesFromConfig(c *Config) (*Tables, error) {
	rt := NewRouteTable()
	// Exact names, as Validate checked them (PortIndex ignores case).
	index := make(map[string]uint8, len(c.Ports))
	for i := len(c.Ports) - 1; i >= 0; i-- {
		index[c.Ports[i].Name] = uint8(i)
	}
	for i, r := range c.Routes {
		ids, err := headers.ParseIDSet(r.Receivers)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		p, ok := index[r.Port]
		if !ok {
			return nil, fmt.Errorf("routes[%d]: unknown port %q", i, r.Port)
		}
		b := uint8(NoPort)
		if r.Backup != "" {
			if b, ok = index[r.Backup]; !ok {
				return nil, fmt.Errorf("routes[%d]: unknown backup port %q", i, r.Backup)
			}
		}
		for _, id := range ids {
			if q := rt.Lookup(id); q != NoPort && q != p {
				return nil, fmt.Errorf("routes[%d]: receiver %d already routed to port %s", i, id, c.Ports[q].Name)
			}
			rt.SetWithBackup(id, p, b)
		}
	}
	// The routes read compactly (dataplane/routes.go), in their order.
	for _, s := range c.routeSets {
		if !s.resolved {
			return nil, fmt.Errorf("routes: config not validated")
		}
		err := s.each(func(sp *routeSpan) error {
			for id := int(sp.lo); id <= int(sp.hi); id++ {
				if q := rt.Lookup(uint16(id)); q != NoPort && q != sp.port {
					return fmt.Errorf("%s: receiver %d already routed to port %s", s.where(sp), id, c.Ports[q].Name)
				}
				rt.SetWithBackup(uint16(id), sp.port, sp.backup)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	groups := make(map[uint32][]uint16, len(c.Groups))
	for i, g := range c.Groups {
		if _, dup := groups[g.ID]; dup {
			return nil, fmt.Errorf("groups[%d]: duplicate group %d", i, g.ID)
		}
		ids, err := headers.ParseIDSet(g.Members)
		if err != nil {
			return nil, fmt.Errorf("groups[%d]: %w", i, err)
		}
		groups[g.ID] = slices.Clip(ids)
	}
	return &Tables{Generation: 1, Routes: rt, Groups: NewGroupTable(groups)}, nil
}

// Equal tells whether two tables route, back up and resolve every receiver
// alike (tables are compared by content, not by what they share).
func (t *RouteTable) Equal(o *RouteTable) bool {
	return t.port == o.port && t.ent.primary == o.ent.primary && t.ent.backup == o.ent.backup && t.ent.has == o.ent.has
}

// Bytes is the memory of the table with entries of its own: the active
// ports, primaries, backups and the bitmap of receivers with a route. It is
// the same for every table (dense arrays over all 65,536 receiver IDs).
func (t *RouteTable) Bytes() int {
	return len(t.port) + len(t.ent.primary) + len(t.ent.backup) + 8*len(t.ent.has)
}
