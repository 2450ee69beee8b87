// Route computation. In: a Topology and the links that are down; out: every
// switch's primary and backup egress port per receiver (docs/control.md,
// "Routes and fast reroute").
//
// Primary. The primary of switch S for receiver r on leaf L is a next hop on
// a shortest path from S to L (BFS over switches, hop count). When several
// neighbours are equally close (ECMP), the receiver's rank (its position
// among the receivers sorted by ID) picks one: index (rank / stride) mod
// width among the candidate ports in port order, where width is the number
// of candidates and stride the product of the ECMP widths already spent by
// the switches that hand r's packets to S (1 at a sender's leaf). So at a
// leaf, consecutive receivers alternate over the spines, and in a fat-tree
// an agg spreads over its cores the receivers that its edges spread over
// the aggs, instead of sending them all to one core.
//
// The choice is made on the intact fabric first; with links down, a switch
// keeps its intact choice while that neighbour is still on a shortest path
// and only otherwise picks among the remaining candidates. Hence after a
// failure only receivers whose primary path crossed the failed link change
// primaries: every switch on an unaffected path keeps its distance and its
// next hop.
//
// Backup. The backup is what the dataplane uses while the primary's link is
// down, without control. On r's own leaf the host port has no backup
// (NoPort). Elsewhere it is another neighbour from which the packet,
// forwarded as the dataplane forwards (primaries, and at a switch whose
// primary points back at the ingress port, the backup: the U-turn rule of
// dataplane/replicate.go), reaches r without passing through S again.
// Neighbours are tried closest to L first, rotated by rank within equal
// distance so backups spread too. That gives, as docs/control.md asks:
//
//   - for a leaf's uplink: another spine (agg);
//   - for a spine, agg or core with another equally short way to L (a
//     parallel link, another core in the same group): that one;
//   - for a spine whose only link towards r's leaf is the primary: another
//     leaf, which receives the packet from S, finds its own primary pointing
//     back at S and takes its backup, another spine; the leaf may be the one
//     the packet came from, which the dataplane allows as a U-turn out of
//     the ingress port for a rerouted entry; for a fat-tree core: an agg of
//     another pod, which goes up through another core of its group.
//
// Backups are chosen in passes, leaves first, each pass using the backups
// chosen before it, until a pass adds none; a switch with no such
// neighbour keeps NoPort.
package control

import (
	"fmt"
	"slices"

	"github.com/sparsecast/sparsecast/headers"
)

// HopLimit bounds every path the computation accepts: SMH's default hop
// limit, which the dataplane enforces too.
const HopLimit = headers.DefaultHopLimit

// fabricRoutes holds the routes of every switch: primary[s][rank].
type fabricRoutes struct {
	t       *Topology
	down    map[LinkID]bool
	primary [][]uint8
	backup  [][]uint8
	// dist[leaf] is every switch's distance to that leaf with the down
	// links removed (nil for leaves without receivers).
	dist [][]int
}

// ComputeTables returns switchName's route table with the links in down
// removed (global recomputation after a failure). Groups are left empty:
// membership is the control server's state, not the fabric's.
func ComputeTables(topo *Topology, switchName string, down []LinkID) (*SwitchTables, error) {
	si := topo.SwitchIndex(switchName)
	if si < 0 {
		return nil, fmt.Errorf("unknown switch %q", switchName)
	}
	f, err := computeFabric(topo, down)
	if err != nil {
		return nil, err
	}
	return f.tables(si), nil
}

// ComputeAllTables returns every switch's route table, in switch order.
func ComputeAllTables(topo *Topology, down []LinkID) ([]*SwitchTables, error) {
	f, err := computeFabric(topo, down)
	if err != nil {
		return nil, err
	}
	out := make([]*SwitchTables, len(topo.Switches))
	for si := range topo.Switches {
		out[si] = f.tables(si)
	}
	return out, nil
}

func (f *fabricRoutes) tables(si int) *SwitchTables {
	t := f.t
	st := &SwitchTables{
		Switch: t.Switches[si].Name,
		Ports:  portNames(&t.Switches[si]),
		Routes: make([]Route, len(t.receivers)),
		Groups: map[uint32][]uint16{},
	}
	for rank, hi := range t.receivers {
		st.Routes[rank] = Route{Receiver: t.Hosts[hi].ID, Primary: f.primary[si][rank], Backup: f.backup[si][rank]}
	}
	return st
}

func computeFabric(t *Topology, downList []LinkID) (*fabricRoutes, error) {
	down := make(map[LinkID]bool, len(downList))
	for _, l := range downList {
		if l < 0 || int(l) >= len(t.Links) {
			return nil, fmt.Errorf("down link %d: the fabric has links 0-%d", l, len(t.Links)-1)
		}
		down[l] = true
	}
	nsw, nr := len(t.Switches), len(t.receivers)
	f := &fabricRoutes{t: t, down: down, primary: make([][]uint8, nsw), backup: make([][]uint8, nsw), dist: make([][]int, nsw)}
	for s := range f.primary {
		f.primary[s] = make([]uint8, nr)
		f.backup[s] = make([]uint8, nr)
		for r := range nr {
			f.primary[s][r], f.backup[s][r] = NoPort, NoPort
		}
	}
	leaves := map[int]*leafPaths{}
	for rank, hi := range t.receivers {
		h := &t.Hosts[hi]
		li := leaves[h.Switch]
		if li == nil {
			li = f.leafPaths(h.Switch)
			leaves[h.Switch] = li
		}
		for s := range nsw {
			if s == h.Switch {
				f.primary[s][rank] = uint8(h.Port)
				continue
			}
			cd := li.candD[s]
			if len(cd) == 0 {
				continue // unreachable
			}
			ci := li.candI[s]
			k := rank / li.stride[s]
			p := ci[k%len(ci)]
			if len(down) > 0 && !slices.Contains(cd, p) {
				p = cd[k%len(cd)]
			}
			f.primary[s][rank] = p
		}
	}
	f.chooseBackups()
	return f, nil
}

// leafPaths is, for one receiver leaf, every switch's next-hop ports
// towards it (intact, and with the down links removed) and ECMP stride.
type leafPaths struct {
	candI, candD [][]uint8
	stride       []int
}

func (f *fabricRoutes) leafPaths(leaf int) *leafPaths {
	t := f.t
	distI := t.bfs(leaf, nil)
	distD := distI
	if len(f.down) > 0 {
		distD = t.bfs(leaf, f.down)
	}
	f.dist[leaf] = distD
	n := len(t.Switches)
	li := &leafPaths{candI: make([][]uint8, n), candD: make([][]uint8, n), stride: make([]int, n)}
	for s := range n {
		for pi, p := range t.Switches[s].Ports {
			if p.Link < 0 {
				continue
			}
			if distI[s] > 0 && distI[p.Peer] == distI[s]-1 {
				li.candI[s] = append(li.candI[s], uint8(pi))
			}
			if !f.down[p.Link] && distD[s] > 0 && distD[p.Peer] == distD[s]-1 {
				li.candD[s] = append(li.candD[s], uint8(pi))
			}
		}
	}
	// Strides on the intact fabric, farthest switches first, so that a
	// failure elsewhere never reshuffles an unaffected receiver.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return distI[b] - distI[a] })
	for _, s := range order {
		li.stride[s] = 1
		for _, p := range t.Switches[s].Ports {
			if p.Link >= 0 && distI[p.Peer] == distI[s]+1 {
				if w := len(li.candI[p.Peer]) * li.stride[p.Peer]; w > li.stride[s] {
					li.stride[s] = w
				}
			}
		}
	}
	return li
}

// chooseBackups fills f.backup as the package comment describes.
func (f *fabricRoutes) chooseBackups() {
	t := f.t
	order := make([]int, 0, len(t.Switches))
	for s, sw := range t.Switches {
		if sw.Role == RoleLeaf {
			order = append(order, s)
		}
	}
	for s, sw := range t.Switches {
		if sw.Role != RoleLeaf {
			order = append(order, s)
		}
	}
	var cands []uint8
	for {
		added := 0
		for _, s := range order {
			for rank, hi := range t.receivers {
				p := f.primary[s][rank]
				leaf := t.Hosts[hi].Switch
				if p == NoPort || s == leaf || f.backup[s][rank] != NoPort {
					continue
				}
				dist := f.dist[leaf]
				cands = cands[:0]
				for qi, q := range t.Switches[s].Ports {
					if uint8(qi) != p && q.Link >= 0 && !f.down[q.Link] && dist[q.Peer] >= 0 {
						cands = append(cands, uint8(qi))
					}
				}
				ports := t.Switches[s].Ports
				slices.SortStableFunc(cands, func(a, b uint8) int { return dist[ports[a].Peer] - dist[ports[b].Peer] })
				if b := f.firstValidBackup(s, rank, cands); b != NoPort {
					f.backup[s][rank] = b
					added++
				}
			}
		}
		if added == 0 {
			return
		}
	}
}

// firstValidBackup tries cands (sorted by distance) group by group, each
// group rotated by rank, and returns the first from which the packet
// reaches the receiver without coming back to s.
func (f *fabricRoutes) firstValidBackup(s, rank int, cands []uint8) uint8 {
	ports := f.t.Switches[s].Ports
	dist := f.dist[f.t.Hosts[f.t.receivers[rank]].Switch]
	for lo := 0; lo < len(cands); {
		hi := lo + 1
		for hi < len(cands) && dist[ports[cands[hi]].Peer] == dist[ports[cands[lo]].Peer] {
			hi++
		}
		group := cands[lo:hi]
		for k := range group {
			q := group[(rank+k)%len(group)]
			path, ok := f.walk(ports[q].Peer, uint8(ports[q].PeerPort), rank, HopLimit-1)
			if ok && !slices.Contains(path, s) {
				return q
			}
		}
		lo = hi
	}
	return NoPort
}

// walk follows a packet for receiver rank the way the dataplane forwards
// it, from switch s entered through port in, over the routes computed so
// far and the links not down, for at most limit switches. It returns the
// switches visited and whether the packet reached the receiver's host port.
func (f *fabricRoutes) walk(s int, in uint8, rank, limit int) ([]int, bool) {
	t := f.t
	h := &t.Hosts[t.receivers[rank]]
	var path []int
	for len(path) < limit {
		path = append(path, s)
		out := f.primary[s][rank]
		if out == NoPort {
			return path, false
		}
		if out == in {
			// The U-turn rule: the primary points back at the ingress
			// port, so a neighbour rerouted through us: take the backup.
			if out = f.backup[s][rank]; out == NoPort || out == in {
				return path, false
			}
		}
		if s == h.Switch && int(out) == h.Port {
			return path, true
		}
		p := t.Switches[s].Ports[out]
		if p.Link < 0 || f.down[p.Link] {
			return path, false
		}
		s, in = p.Peer, uint8(p.PeerPort)
	}
	return path, false
}
