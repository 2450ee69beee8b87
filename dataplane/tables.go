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

// RouteTable maps every receiver ID to an egress port index. A dense array:
// 64 KiB, one load per receiver, no hashing.
type RouteTable struct {
	port [headers.MaxID + 1]uint8
}

// Lookup returns the egress port of a receiver, or NoPort.
func (t *RouteTable) Lookup(id uint16) uint8 { return t.port[id] }

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
		t.port[i] = NoPort
	}
	return t
}

// Set routes receiver id through port (NoPort removes the route).
func (t *RouteTable) Set(id uint16, port uint8) { t.port[id] = port }

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
