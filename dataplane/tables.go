// Forwarding tables: immutable snapshots. Writers (config load, and later the
// control ring) build a new Tables and publish it with one atomic pointer
// store; workers load the pointer once per burst and never lock (STYLE.md:
// gVisor's multicast route table takes a lock per lookup; this one doesn't).
package dataplane

import (
	"fmt"
	"slices"

	"github.com/sparsecast/sparsecast/headers"
)

// NoPort marks a receiver without a route.
const NoPort = 0xFF

// RouteTable maps every receiver ID to an egress port index. Dense arrays:
// one load per receiver, no hashing. port is what forwarding uses: the
// primary, or the backup while the primary's link is down (fast reroute).
type RouteTable struct {
	port    [headers.MaxID + 1]uint8
	primary [headers.MaxID + 1]uint8
	backup  [headers.MaxID + 1]uint8
}

// Lookup returns the egress port of a receiver, or NoPort.
func (t *RouteTable) Lookup(id uint16) uint8 { return t.port[id] }

// Backup returns a receiver's precomputed backup port, or NoPort.
func (t *RouteTable) Backup(id uint16) uint8 { return t.backup[id] }

// Primary returns a receiver's primary port, or NoPort.
func (t *RouteTable) Primary(id uint16) uint8 { return t.primary[id] }

// Tables is one published snapshot of everything the fast path looks up.
type Tables struct {
	Generation uint64
	Routes     *RouteTable
	// Groups maps a group ID to its members, strictly ascending.
	Groups map[uint32][]uint16
}

// NewRouteTable returns a table with no routes.
func NewRouteTable() *RouteTable {
	t := &RouteTable{}
	for i := range t.port {
		t.port[i], t.primary[i], t.backup[i] = NoPort, NoPort, NoPort
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
	t.port[id], t.primary[id], t.backup[id] = primary, primary, backup
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
// failure's effect to the receivers behind it.
func (t *RouteTable) Resolve(down *PortSet) int {
	moved := 0
	for id := range t.port {
		p := t.primary[id]
		switch {
		case p == NoPort || !down.Has(p):
			t.port[id] = p
		case t.backup[id] != NoPort && !down.Has(t.backup[id]):
			t.port[id] = t.backup[id]
			moved++
		default:
			t.port[id] = NoPort
			moved++
		}
	}
	return moved
}

// Clone returns a copy to modify before publishing.
func (t *RouteTable) Clone() *RouteTable {
	c := *t
	return &c
}

// Len counts the receivers with a route.
func (t *RouteTable) Len() int {
	n := 0
	for _, p := range t.port {
		if p != NoPort {
			n++
		}
	}
	return n
}

// TablesFromConfig builds the first snapshot from a validated config.
func TablesFromConfig(c *Config) (*Tables, error) {
	rt := NewRouteTable()
	for i, r := range c.Routes {
		ids, err := headers.ParseIDSet(r.Receivers)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		p := c.PortIndex(r.Port)
		for _, id := range ids {
			if q := rt.Lookup(id); q != NoPort && int(q) != p {
				return nil, fmt.Errorf("routes[%d]: receiver %d already routed to port %s", i, id, c.Ports[q].Name)
			}
			rt.Set(id, uint8(p))
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
	return &Tables{Generation: 1, Routes: rt, Groups: groups}, nil
}
