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
// Neighbours are tried closest to L first (by their distance on the intact
// fabric), rotated by rank within equal distance so backups spread too, and
// skipping those whose link is down or from which the packet would not
// arrive. That gives, as docs/control.md asks:
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
// Order. A packet forwarded by primaries only ever gets closer to L, so from
// a neighbour no farther from L than S it arrives without passing S: such a
// backup is checked from distances alone. Only a farther neighbour needs the
// walk, and the walk reads only the routes of switches farther from L than
// S (it can only climb through U-turns, and once it goes down it stays
// below S). So backups are chosen farthest switches first, each from the
// final routes of the switches it depends on, and the routes of one
// receiver depend on nothing of any other receiver's.
//
// Cost. Per leaf: two BFS and each switch's candidate ports by class
// (closer, as close, farther); per receiver and switch: an O(1) primary and
// usually an O(1) backup. After one link changes (SetLink), only leaves
// whose distances change are redone; for the others only the receivers
// whose route at one of the link's two switches changes, and for those
// only the switches nearer to L than that switch.
package control

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sparsecast/sparsecast/headers"
)

// HopLimit bounds every path the computation accepts: SMH's default hop
// limit, which the dataplane enforces too.
const HopLimit = headers.DefaultHopLimit

// MaxRouteSwitches is the most switches route computation takes: distances
// are kept in 16 bits per switch and leaf (a 65,536-host fat-tree has 5,120).
const MaxRouteSwitches = 32767

// fabricRoutes holds the routes of every switch: primary[rank][s], one
// receiver's routes together, as they are computed.
type fabricRoutes struct {
	t       *Topology
	down    map[LinkID]bool
	isDown  []bool // per link: down
	primary [][]uint8
	backup  [][]uint8
	// leaves are the leaves with receivers, in switch order; leafOf maps a
	// switch index to its position there (-1: none).
	leaves []*leafState
	leafOf []int
	// portOff[s] is where switch s's link ports start in a leafState's
	// grp; linkPorts[s] are its ports with a link, in port order.
	portOff   []int32
	linkPorts [][]uint8
	// adjPeer, adjLink and adjPeerPort are, at portOff[s]+i, the peer
	// switch, link and peer's port of linkPorts[s][i]: the fabric's graph
	// without Port's strings. adjOf[portBase[s]+p] is port p's index there
	// (-1: a host port).
	adjPeer, adjLink []int32
	adjPeerPort      []uint8
	portBase, adjOf  []int32
	// updaters are setLink's scratch states, one per worker.
	updaters sync.Pool
}

// leafState is what the computation keeps per receiver leaf.
type leafState struct {
	sw    int
	ranks []int // receivers on this leaf, ascending
	// distI and distD are every switch's hop count to the leaf, intact and
	// with the down links removed (-1: unreachable); distD aliases distI
	// while no down link changes them.
	distI, distD []int16
	// grp holds, per switch s at portOff[s], its link ports (as indexes in
	// linkPorts[s]) grouped by the intact distance of their peer: closer (the intact ECMP candidates),
	// as close, farther, each in port order; cut1[s] and cut2[s] end the
	// first two groups (offsets from portOff[s]).
	grp        []uint8
	cut1, cut2 []uint8
	// stride is the ECMP stride per switch on the intact fabric.
	stride []int32
	// order lists the switches reachable on the down fabric, farthest
	// from the leaf first (the backup order).
	order []int32
	// walker marks the switches whose backup choice may read other
	// switches' routes: those without two usable neighbours as close to
	// the leaf as they are or closer (one may be the primary). The others
	// always take one of those, checked from distances alone.
	walker []bool
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
		st.Routes[rank] = Route{Receiver: t.Hosts[hi].ID, Primary: f.primary[rank][si], Backup: f.backup[rank][si]}
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
	if nsw > MaxRouteSwitches {
		return nil, fmt.Errorf("%d switches: route computation takes at most %d", nsw, MaxRouteSwitches)
	}
	f := &fabricRoutes{t: t, down: down, isDown: make([]bool, len(t.Links)), primary: make([][]uint8, nr), backup: make([][]uint8, nr),
		leafOf: make([]int, nsw), portOff: make([]int32, nsw+1), portBase: make([]int32, nsw+1), linkPorts: make([][]uint8, nsw)}
	pb := make([]uint8, 2*nsw*nr)
	for i := range pb {
		pb[i] = NoPort
	}
	for r := range nr {
		f.primary[r], pb = pb[:nsw:nsw], pb[nsw:]
		f.backup[r], pb = pb[:nsw:nsw], pb[nsw:]
	}
	for s := range nsw {
		f.leafOf[s] = -1
		for pi, p := range t.Switches[s].Ports {
			if p.Link >= 0 {
				f.linkPorts[s] = append(f.linkPorts[s], uint8(pi))
			}
		}
		f.portOff[s+1] = f.portOff[s] + int32(len(f.linkPorts[s]))
		for _, pi := range f.linkPorts[s] {
			p := &t.Switches[s].Ports[pi]
			f.adjPeer = append(f.adjPeer, int32(p.Peer))
			f.adjLink = append(f.adjLink, int32(p.Link))
			f.adjPeerPort = append(f.adjPeerPort, uint8(p.PeerPort))
		}
		f.portBase[s+1] = f.portBase[s] + int32(len(t.Switches[s].Ports))
		a := f.portOff[s]
		for _, p := range t.Switches[s].Ports {
			if p.Link >= 0 {
				f.adjOf = append(f.adjOf, a)
				a++
			} else {
				f.adjOf = append(f.adjOf, -1)
			}
		}
	}
	for l := range down {
		f.isDown[l] = true
	}
	for rank, hi := range t.receivers {
		sw := t.Hosts[hi].Switch
		if f.leafOf[sw] < 0 {
			f.leafOf[sw] = len(f.leaves)
			f.leaves = append(f.leaves, &leafState{sw: sw})
		}
		ls := f.leaves[f.leafOf[sw]]
		ls.ranks = append(ls.ranks, rank)
	}
	parallel(len(f.leaves), func(i int) {
		f.initLeaf(f.leaves[i])
		f.computeLeaf(f.leaves[i])
	})
	return f, nil
}

// parallel runs fn(0..n-1) on GOMAXPROCS goroutines. The leaves' routes
// are independent: each writes only its own receivers' entries.
func parallel(n int, fn func(i int)) {
	w := min(runtime.GOMAXPROCS(0), n)
	if w <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	wg.Add(w)
	for range w {
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// bfs16 is Topology.bfs over the flat graph, into 16-bit distances, with
// the links isDown marks removed (nil: none).
func (f *fabricRoutes) bfs16(from int, isDown []bool) []int16 {
	n := len(f.t.Switches)
	dist := make([]int16, n)
	for i := range dist {
		dist[i] = -1
	}
	dist[from] = 0
	queue := make([]int32, 1, n)
	queue[0] = int32(from)
	for qi := 0; qi < len(queue); qi++ {
		s := queue[qi]
		d := dist[s] + 1
		for j := f.portOff[s]; j < f.portOff[s+1]; j++ {
			peer := f.adjPeer[j]
			if dist[peer] >= 0 || (isDown != nil && isDown[f.adjLink[j]]) {
				continue
			}
			dist[peer] = d
			queue = append(queue, peer)
		}
	}
	return dist
}

// initLeaf fills everything of ls that depends on the intact fabric, and
// its down distances.
func (f *fabricRoutes) initLeaf(ls *leafState) {
	t := f.t
	n := len(t.Switches)
	ls.distI = f.bfs16(ls.sw, nil)
	ls.grp = make([]uint8, f.portOff[n])
	ls.cut1, ls.cut2 = make([]uint8, n), make([]uint8, n)
	ls.stride = make([]int32, n)
	dist := ls.distI
	for s := range n {
		lo, hi := f.portOff[s], f.portOff[s+1]
		var cnt [3]int
		for j := lo; j < hi; j++ {
			cnt[dist[f.adjPeer[j]]-dist[s]+1]++
		}
		pos := [3]int{0, cnt[0], cnt[0] + cnt[1]}
		ls.cut1[s], ls.cut2[s] = uint8(pos[1]), uint8(pos[2])
		g := ls.grp[lo:hi]
		for i := range hi - lo {
			c := dist[f.adjPeer[lo+i]] - dist[s] + 1
			g[pos[c]] = uint8(i)
			pos[c]++
		}
	}
	// Strides on the intact fabric, farthest switches first, so that a
	// failure elsewhere never reshuffles an unaffected receiver.
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return int(dist[b]) - int(dist[a]) })
	for _, s := range order {
		ls.stride[s] = 1
		for j := f.portOff[s]; j < f.portOff[s+1]; j++ {
			peer := f.adjPeer[j]
			if dist[peer] == dist[s]+1 {
				if w := int32(ls.cut1[peer]) * ls.stride[peer]; w > ls.stride[s] {
					ls.stride[s] = w
				}
			}
		}
	}
	f.setDownDist(ls)
}

// setDownDist computes ls.distD and ls.order for the current down set.
func (f *fabricRoutes) setDownDist(ls *leafState) {
	f.setDownDistOnly(ls)
	for s := range ls.distD {
		ls.walker[s] = f.isWalker(ls, s)
	}
}

// setDownDistOnly is setDownDist but for the walkers (allocated, not set).
func (f *fabricRoutes) setDownDistOnly(ls *leafState) {
	ls.distD = ls.distI
	if len(f.down) > 0 {
		d := f.bfs16(ls.sw, f.isDown)
		if !slices.Equal(d, ls.distI) {
			ls.distD = d
		}
	}
	ls.order = ls.order[:0]
	for s, d := range ls.distD {
		if d > 0 {
			ls.order = append(ls.order, int32(s))
		}
	}
	dist := ls.distD
	slices.SortStableFunc(ls.order, func(a, b int32) int { return int(dist[b]) - int(dist[a]) })
	if ls.walker == nil {
		ls.walker = make([]bool, len(dist))
	}
}

// isWalker computes ls.walker[s] (see there): s's choice reads no route if
// its closer and as-close candidates (by intact distance, the ones tried
// first) are all either unusable (link down, cut off) or no farther from
// the leaf than s now, and at least two of them are usable: one besides
// the primary is then always found before any that needs a walk.
func (f *fabricRoutes) isWalker(ls *leafState, s int) bool {
	d := ls.distD[s]
	if d <= 0 {
		return false
	}
	lo := f.portOff[s]
	usable := 0
	for _, li := range ls.grp[lo : lo+int32(ls.cut2[s])] {
		a := lo + int32(li)
		dq := ls.distD[f.adjPeer[a]]
		switch {
		case f.isDown[f.adjLink[a]] || dq < 0:
		case dq > d:
			return true
		case int(dq)+1 <= HopLimit-1:
			usable++
		}
	}
	return usable < 2
}

// computeLeaf computes every route of the leaf's receivers.
func (f *fabricRoutes) computeLeaf(ls *leafState) { f.computeRanks(ls, ls.ranks, -1) }

// computeRanks sets the receivers' primaries everywhere and their backups
// at every switch nearer to the leaf than maxDist (-1: all).
func (f *fabricRoutes) computeRanks(ls *leafState, ranks []int, maxDist int16) {
	t := f.t
	for _, rank := range ranks {
		prim, back := f.primary[rank], f.backup[rank]
		for s := range t.Switches {
			prim[s] = f.primaryFor(ls, s, rank)
			if ls.distD[s] <= 0 {
				back[s] = NoPort // the leaf itself, or cut off from it
			}
		}
		for _, s := range ls.order {
			if maxDist >= 0 && ls.distD[s] >= maxDist {
				continue
			}
			back[s] = f.backupFor(ls, int(s), rank)
		}
	}
}

// primaryFor is switch s's primary for receiver rank.
func (f *fabricRoutes) primaryFor(ls *leafState, s, rank int) uint8 {
	d := ls.distD[s]
	if d <= 0 {
		if s == ls.sw {
			h := &f.t.Hosts[f.t.receivers[rank]]
			return uint8(h.Port)
		}
		return NoPort
	}
	lo, hi := f.portOff[s], f.portOff[s+1]
	ci := ls.grp[lo : lo+int32(ls.cut1[s])]
	k := rank / int(ls.stride[s])
	if len(ci) > 0 {
		li := ci[k%len(ci)]
		a := lo + int32(li)
		if len(f.down) == 0 || (!f.isDown[f.adjLink[a]] && ls.distD[f.adjPeer[a]] == d-1) {
			return f.linkPorts[s][li]
		}
	}
	// The intact choice is gone: pick among the remaining candidates.
	n := 0
	for a := lo; a < hi; a++ {
		if !f.isDown[f.adjLink[a]] && ls.distD[f.adjPeer[a]] == d-1 {
			n++
		}
	}
	if n == 0 {
		return NoPort
	}
	i := k % n
	for a := lo; a < hi; a++ {
		if !f.isDown[f.adjLink[a]] && ls.distD[f.adjPeer[a]] == d-1 {
			if i == 0 {
				return f.linkPorts[s][a-lo]
			}
			i--
		}
	}
	return NoPort
}

// backupFor is switch s's backup for receiver rank, from its primary and
// the final routes of the switches farther from the leaf.
func (f *fabricRoutes) backupFor(ls *leafState, s, rank int) uint8 {
	p := f.primary[rank][s]
	if p == NoPort || s == ls.sw {
		return NoPort
	}
	lo, hi := f.portOff[s], f.portOff[s+1]
	pl := uint8(f.adjOf[f.portBase[s]+int32(p)] - lo) // p is a link port
	g := ls.grp[lo:hi]
	cuts := [4]int{0, int(ls.cut1[s]), int(ls.cut2[s]), len(g)}
	for c := range 3 {
		group := g[cuts[c]:cuts[c+1]]
		ip := slices.Index(group, pl)
		n := len(group)
		if ip >= 0 {
			n--
		}
		for j := range n {
			i := (rank + j) % n
			if ip >= 0 && i >= ip {
				i++
			}
			a := lo + int32(group[i])
			peer := f.adjPeer[a]
			if f.isDown[f.adjLink[a]] || ls.distD[peer] < 0 {
				continue
			}
			if f.arrives(ls, s, int(peer), f.adjPeerPort[a], rank) {
				return f.linkPorts[s][group[i]]
			}
		}
	}
	return NoPort
}

// arrives reports whether a packet for receiver rank that s sends to switch
// x, entering it through port in, reaches the receiver within the hop limit
// without passing through s, forwarded as the dataplane forwards it: by
// primaries, and at a switch whose primary points back at the ingress port,
// by its backup. Below s's distance the packet only descends, so only the
// routes of switches farther than s are read.
func (f *fabricRoutes) arrives(ls *leafState, s, x int, in uint8, rank int) bool {
	dist := ls.distD
	ds := dist[s]
	limit := HopLimit - 1 // switches after s
	for n := 1; n <= limit; n++ {
		dx := dist[x]
		switch {
		case x == s || dx < 0:
			return false
		case dx <= ds:
			// Entered from a switch no nearer than x: primaries from here
			// descend, never back to s, in dx more switches.
			return n+int(dx) <= limit
		}
		out := f.primary[rank][x]
		if out == NoPort {
			return false
		}
		if out == in {
			if out = f.backup[rank][x]; out == NoPort || out == in {
				return false
			}
		}
		a := f.adjOf[f.portBase[x]+int32(out)]
		if a < 0 || f.isDown[f.adjLink[a]] {
			return false
		}
		x, in = int(f.adjPeer[a]), f.adjPeerPort[a]
	}
	return false
}

// routeChange names one entry that a SetLink changed: switch sw's route for
// receiver rank.
type routeChange struct{ sw, rank int32 }

// setLink marks link l down (or up again) and updates the routes, redoing
// only what the change can reach (see Cost above); it returns the entries
// whose primary or backup changed, by switch then rank.
func (f *fabricRoutes) setLink(l LinkID, down bool) ([]routeChange, error) {
	if l < 0 || int(l) >= len(f.t.Links) {
		return nil, fmt.Errorf("link %d: the fabric has links 0-%d", l, len(f.t.Links)-1)
	}
	if f.isDown[l] == down {
		return nil, nil
	}
	lk := &f.t.Links[l]
	a, b := lk.ASw, lk.BSw
	// Which leaves' distances change, from the distances before.
	redo := make([]bool, len(f.leaves))
	for i, ls := range f.leaves {
		redo[i] = f.distChanges(ls, a, b, down)
	}
	f.isDown[l] = down
	if down {
		f.down[l] = true
	} else {
		delete(f.down, l)
	}
	out := make([][]routeChange, len(f.leaves))
	parallel(len(f.leaves), func(i int) {
		ls := f.leaves[i]
		if redo[i] {
			out[i] = f.redoLeaf(ls, a, b)
		} else {
			out[i] = f.updateLeaf(ls, a, b, uint8(lk.APort), uint8(lk.BPort), down)
		}
	})
	var all []routeChange
	for _, c := range out {
		all = append(all, c...)
	}
	slices.SortFunc(all, func(x, y routeChange) int {
		if x.sw != y.sw {
			return int(x.sw - y.sw)
		}
		return int(x.rank - y.rank)
	})
	return all, nil
}

// distChanges reports whether taking the link between switches a and b
// down (or up) changes any switch's distance to ls's leaf, from the
// distances before: a link down matters only if it is the last link from
// its farther end to a switch one hop closer; a link up only if its ends'
// distances differ by more than one (or one end is cut off).
func (f *fabricRoutes) distChanges(ls *leafState, a, b int, down bool) bool {
	da, db := ls.distD[a], ls.distD[b]
	if !down {
		switch {
		case da < 0 && db < 0:
			return false
		case da < 0 || db < 0:
			return true
		}
		return da-db > 1 || db-da > 1
	}
	if da < 0 || da == db {
		return false
	}
	far := a
	if db > da {
		far = b
	}
	d := ls.distD[far]
	others := 0
	for j := f.portOff[far]; j < f.portOff[far+1]; j++ {
		if !f.isDown[f.adjLink[j]] && ls.distD[f.adjPeer[j]] == d-1 {
			others++
		}
	}
	// The link itself is still up in isDown: it is one of them.
	return others <= 1
}

// redoLeaf updates a leaf whose distances changed after the link between a
// and b did. A switch's primary depends only on its own and its
// neighbours' distances and its own links, and so does the backup of a
// switch that is no walker (ls.walker) but for its primary. So only the
// switches whose distance changed, their neighbours, a and b (near) get
// their primaries and backups chosen again; then, as in updateLeaf, the
// walkers that may have read a changed route or distance (a walk reads the
// distance of every switch it enters, so those count as changed
// primaries), farthest first.
func (f *fabricRoutes) redoLeaf(ls *leafState, a, b int) []routeChange {
	n := len(f.t.Switches)
	oldDist := ls.distD
	f.setDownDistOnly(ls)
	near := make([]bool, n)
	var nearList, moved []int
	add := func(s int) {
		if !near[s] {
			near[s] = true
			nearList = append(nearList, s)
		}
	}
	add(a)
	add(b)
	for s := range n {
		if oldDist[s] != ls.distD[s] {
			moved = append(moved, s)
			add(s)
			for j := f.portOff[s]; j < f.portOff[s+1]; j++ {
				add(int(f.adjPeer[j]))
			}
		}
	}
	// Only a near switch's walker status can change: it depends on the
	// switch's links and its own and its neighbours' distances.
	for _, s := range nearList {
		ls.walker[s] = f.isWalker(ls, s)
	}
	u := f.getUpdater(ls, oldDist)
	defer f.putUpdater(u)
	for _, r := range ls.ranks {
		u.changed = u.changed[:0]
		u.nextRank()
		for _, s := range nearList {
			op, ob := f.primary[r][s], f.backup[r][s]
			f.primary[r][s] = f.primaryFor(ls, s, r)
			if ls.distD[s] <= 0 {
				f.backup[r][s] = NoPort
			}
			if f.primary[r][s] != op || f.backup[r][s] != ob {
				u.note(int32(s), op, ob)
			}
			u.queue(int32(s))
		}
		for _, s := range moved {
			u.readers(s, r, true)
		}
		for i := range u.changed {
			if c := u.changed[i]; f.primary[r][c.sw] != c.primary {
				u.readers(int(c.sw), r, true)
			}
		}
		u.chooseAgain(r, -1, -1)
		u.emit(r)
	}
	return u.ch
}

// updateLeaf updates, after the link between a and b changed, a leaf whose
// distances did not. Primaries change only at a and b. A backup elsewhere
// changes only if its choice read a route that changed: only walkers read
// routes, and only of switches farther from the leaf, reached either as
// one of their own neighbours or along a walk, which enters a switch only
// by the primary or backup of the switch before. So after a and b, the
// walkers next to a changed switch, or next to a switch whose routes lead
// (through others) into one, are chosen again, farthest first, each one
// that changes adding its own such walkers.
//
// For a link going down this starts cheaper: a's routes change only if its
// primary was the link's port or a fallback (not its intact choice) or its
// backup was the port, since a reads only switches farther than both ends;
// the same for b, unless a changed and b is nearer.
func (f *fabricRoutes) updateLeaf(ls *leafState, a, b int, portA, portB uint8, down bool) []routeChange {
	if ls.distD[a] < ls.distD[b] {
		a, b = b, a // a is the farther end
		portA, portB = portB, portA
	}
	if ls.distD[a] < 0 {
		return nil // both ends cut off from this leaf
	}
	ls.walker[a], ls.walker[b] = f.isWalker(ls, a), f.isWalker(ls, b)
	u := f.getUpdater(ls, nil)
	defer f.putUpdater(u)
	for _, r := range ls.ranks {
		u.rank(r, a, b, portA, portB, down)
	}
	return u.ch
}

// intactChoice is s's primary for receiver rank on the intact fabric.
func (f *fabricRoutes) intactChoice(ls *leafState, s, rank int) uint8 {
	lo := f.portOff[s]
	ci := ls.grp[lo : lo+int32(ls.cut1[s])]
	if len(ci) == 0 || s == ls.sw {
		return NoPort
	}
	return f.linkPorts[s][ci[(rank/int(ls.stride[s]))%len(ci)]]
}

// getUpdater returns an updater for leaf ls, its per-switch arrays reused
// from an earlier leaf (their stamps stay valid: epochs only grow).
func (f *fabricRoutes) getUpdater(ls *leafState, oldDist []int16) *updater {
	u, _ := f.updaters.Get().(*updater)
	if u == nil {
		n := len(f.t.Switches)
		u = &updater{f: f, mark: make([]uint32, n), markP: make([]uint32, n), queued: make([]uint32, n),
			chStamp: make([]uint32, n), chIdx: make([]int32, n)}
	}
	u.ls, u.oldDist, u.ch = ls, oldDist, nil
	return u
}

func (f *fabricRoutes) putUpdater(u *updater) {
	u.ls, u.oldDist, u.ch = nil, nil, nil
	f.updaters.Put(u)
}

// updater is updateLeaf's working state for one leaf.
type updater struct {
	f  *fabricRoutes
	ls *leafState
	// oldDist are the leaf's distances before the change, if they changed.
	oldDist []int16
	ch      []routeChange
	// mark[s] == epoch: s seen by the current search; markP[s] == epoch:
	// seen as one whose primary leads into the changed switch.
	mark, markP []uint32
	epoch       uint32
	// changed holds this receiver's switches whose routes changed, with
	// the routes before; work the walkers to choose again.
	changed []oldRoute
	// work[d] are the walkers at distance d to choose again; queued[s] ==
	// repoch: s is in work for this receiver.
	work   [][]int32
	queued []uint32
	repoch uint32
	// chStamp[s] == repoch: s is in changed, at chIdx[s].
	chStamp []uint32
	chIdx   []int32
	pbuf    [2]uint8
	anc     []int32
	ancP    []bool
}

type oldRoute struct {
	sw              int32
	primary, backup uint8
}

func (u *updater) rank(r, a, b int, portA, portB uint8, down bool) {
	f, ls := u.f, u.ls
	u.changed = u.changed[:0]
	u.nextRank()
	pa, ba, pb, bb := f.primary[r][a], f.backup[r][a], f.primary[r][b], f.backup[r][b]
	if down {
		redoA := a != ls.sw && (pa == portA || pa != f.intactChoice(ls, a, r) || ba == portA)
		if redoA {
			f.primary[r][a] = f.primaryFor(ls, a, r)
			f.backup[r][a] = f.backupFor(ls, a, r)
		}
		changedA := f.primary[r][a] != pa || f.backup[r][a] != ba
		if b != ls.sw && (pb == portB || pb != f.intactChoice(ls, b, r) || bb == portB || (changedA && ls.distD[b] < ls.distD[a])) {
			f.primary[r][b] = f.primaryFor(ls, b, r)
			if ls.distD[b] > 0 {
				f.backup[r][b] = f.backupFor(ls, b, r)
			}
		}
	} else {
		f.primary[r][a] = f.primaryFor(ls, a, r)
		f.primary[r][b] = f.primaryFor(ls, b, r)
		f.backup[r][a] = f.backupFor(ls, a, r)
		if ls.distD[b] > 0 {
			f.backup[r][b] = f.backupFor(ls, b, r)
		}
	}
	if f.primary[r][a] != pa || f.backup[r][a] != ba {
		u.note(int32(a), pa, ba)
	}
	if f.primary[r][b] != pb || f.backup[r][b] != bb {
		u.note(int32(b), pb, bb)
	}
	if len(u.changed) == 0 {
		return
	}
	for i := range u.changed {
		c := u.changed[i]
		u.readers(int(c.sw), r, f.primary[r][c.sw] != c.primary)
	}
	u.chooseAgain(r, a, b)
	u.emit(r)
}

// nextRank starts the next receiver: new stamps for queued and chStamp.
func (u *updater) nextRank() {
	u.repoch++
	if u.repoch == 0 {
		clear(u.queued)
		clear(u.chStamp)
		u.repoch = 1
	}
}

// note records s's routes before this update, the first time it changes.
func (u *updater) note(s int32, primary, backup uint8) {
	if u.chStamp[s] == u.repoch {
		return
	}
	u.chStamp[s], u.chIdx[s] = u.repoch, int32(len(u.changed))
	u.changed = append(u.changed, oldRoute{s, primary, backup})
}

// queue adds s to the switches to choose a backup for again.
func (u *updater) queue(s int32) {
	if u.queued[s] == u.repoch {
		return
	}
	u.queued[s] = u.repoch
	d := u.ls.distD[s]
	if d <= 0 {
		return
	}
	for int(d) >= len(u.work) {
		u.work = append(u.work, nil)
	}
	u.work[d] = append(u.work[d], s)
}

// chooseAgain chooses the queued switches' backups for receiver r again,
// farthest first (skipping a and b, done already): a walker is nearer the
// leaf than what it read, so the ones that a change adds are always nearer
// than the one that changed, and nothing chosen later changes a walker
// done earlier.
func (u *updater) chooseAgain(r, a, b int) {
	f, ls := u.f, u.ls
	for d := len(u.work) - 1; d > 0; d-- {
		for i := 0; i < len(u.work[d]); i++ {
			s := u.work[d][i]
			if int(s) == a || int(s) == b {
				continue
			}
			old := f.backup[r][s]
			if nb := f.backupFor(ls, int(s), r); nb != old {
				f.backup[r][s] = nb
				u.note(s, f.primary[r][s], old)
				u.readers(int(s), r, false)
			}
		}
		u.work[d] = u.work[d][:0]
	}
}

// emit notes the receiver's changed entries.
func (u *updater) emit(r int) {
	for _, c := range u.changed {
		if u.f.primary[r][c.sw] != c.primary || u.f.backup[r][c.sw] != c.backup {
			u.ch = append(u.ch, routeChange{c.sw, int32(r)})
		}
	}
}

// readers adds to u.work every walker that may have read x's routes for
// receiver r. A walk reads a switch's backup only at a U-turn, entering it
// from the peer of its primary (the walker itself, or a switch whose
// backup led there: a U-turn there too), and its primary whenever it
// enters it. So if x's primary changed (or its distance), every walker
// next to x and nearer the leaf may have read it, and so may every walker
// that reaches x through a switch whose primary or backup leads to x; if
// only x's backup changed, only the primary's peer (before or after),
// directly or through a chain of such U-turns.
func (u *updater) readers(x, r int, primaryChanged bool) {
	f, ls := u.f, u.ls
	u.epoch++
	if u.epoch == 0 {
		clear(u.mark)
		clear(u.markP)
		u.epoch = 1
	}
	u.anc = append(u.anc[:0], int32(x))
	u.ancP = append(u.ancP[:0], primaryChanged)
	u.mark[x] = u.epoch
	if primaryChanged {
		u.markP[x] = u.epoch
	}
	reader := func(z, y int32) {
		dz := ls.distD[z]
		if dz > 0 && ls.walker[z] && (dz < ls.distD[y] || (u.oldDist != nil && u.oldDist[z] < u.oldDist[y])) {
			u.queue(z)
		}
	}
	for i := 0; i < len(u.anc); i++ {
		y, yp := u.anc[i], u.ancP[i]
		if !yp {
			// Entered from the primary's peer only.
			for _, p := range u.primaries(y, r) {
				z := f.peerOf(y, p)
				if z < 0 || ls.distD[z] <= 0 {
					continue
				}
				reader(z, y)
				if _, viaB := u.leadsTo(z, y, r); viaB && u.mark[z] != u.epoch {
					u.mark[z] = u.epoch
					u.anc = append(u.anc, z)
					u.ancP = append(u.ancP, false)
				}
			}
			continue
		}
		for j := f.portOff[y]; j < f.portOff[y+1]; j++ {
			z := f.adjPeer[j]
			if ls.distD[z] <= 0 {
				continue
			}
			reader(z, y)
			if u.markP[z] == u.epoch {
				continue
			}
			viaP, viaB := u.leadsTo(z, y, r)
			switch {
			case viaP:
				u.markP[z], u.mark[z] = u.epoch, u.epoch
				u.anc = append(u.anc, z)
				u.ancP = append(u.ancP, true)
			case viaB && u.mark[z] != u.epoch:
				u.mark[z] = u.epoch
				u.anc = append(u.anc, z)
				u.ancP = append(u.ancP, false)
			}
		}
	}
}

// primaries returns y's primary for receiver r, and the one before this
// update if it differs.
func (u *updater) primaries(y int32, r int) []uint8 {
	p := u.f.primary[r][y]
	u.pbuf[0] = p
	if u.chStamp[y] == u.repoch {
		if op := u.changed[u.chIdx[y]].primary; op != p {
			u.pbuf[1] = op
			return u.pbuf[:2]
		}
	}
	return u.pbuf[:1]
}

// peerOf is the switch on port p of switch s, or -1.
func (f *fabricRoutes) peerOf(s int32, p uint8) int32 {
	if p == NoPort {
		return -1
	}
	a := f.adjOf[f.portBase[s]+int32(p)]
	if a < 0 {
		return -1
	}
	return f.adjPeer[a]
}

// leadsTo reports whether z's primary, and its backup, for receiver r, now
// or before this update, is a port to y.
func (u *updater) leadsTo(z, y int32, r int) (primary, backup bool) {
	f := u.f
	to := func(p uint8) bool {
		if p == NoPort {
			return false
		}
		a := f.adjOf[f.portBase[z]+int32(p)]
		return a >= 0 && f.adjPeer[a] == y
	}
	primary, backup = to(f.primary[r][z]), to(f.backup[r][z])
	if u.chStamp[z] == u.repoch {
		c := u.changed[u.chIdx[z]]
		primary = primary || to(c.primary)
		backup = backup || to(c.backup)
	}
	return primary, backup
}

// Routes is the fabric's computed routes, kept for updating when a link
// goes down or comes back (SetLink). It is used by one goroutine at a time.
type Routes struct{ f *fabricRoutes }

// RouteDelta is one switch's changed entries after a SetLink.
type RouteDelta struct {
	Switch int     // index in the topology's switches
	Routes []Route // ascending by receiver
}

// ComputeRoutes computes every switch's routes with the links in down
// removed.
func ComputeRoutes(topo *Topology, down []LinkID) (*Routes, error) {
	f, err := computeFabric(topo, down)
	if err != nil {
		return nil, err
	}
	return &Routes{f: f}, nil
}

// Tables returns switch si's route table (no groups).
func (r *Routes) Tables(si int) *SwitchTables { return r.f.tables(si) }

// Down returns the links that are down, ascending.
func (r *Routes) Down() []LinkID {
	var l []LinkID
	for i, d := range r.f.isDown {
		if d {
			l = append(l, LinkID(i))
		}
	}
	return l
}

// SetLink takes link l down (down true) or back up and updates the routes
// incrementally (see the package comment's Cost); it returns the changed
// entries, per switch in switch order. Setting a link to the state it is
// in changes nothing.
func (r *Routes) SetLink(l LinkID, down bool) ([]RouteDelta, error) {
	ch, err := r.f.setLink(l, down)
	if err != nil {
		return nil, err
	}
	f := r.f
	var out []RouteDelta
	for i, c := range ch {
		if i == 0 || ch[i-1].sw != c.sw {
			out = append(out, RouteDelta{Switch: int(c.sw)})
		}
		d := &out[len(out)-1]
		d.Routes = append(d.Routes, Route{Receiver: f.t.Hosts[f.t.receivers[c.rank]].ID, Primary: f.primary[c.rank][c.sw], Backup: f.backup[c.rank][c.sw]})
	}
	return out, nil
}

// StateBytes is the memory the routes and the per-leaf state take: a
// primary and a backup byte per switch and receiver, and per leaf with
// receivers its distances, candidate ports and walk order.
func (r *Routes) StateBytes() int64 {
	f := r.f
	n := int64(len(f.t.Switches))
	b := 2 * n * int64(len(f.t.receivers))
	for _, ls := range f.leaves {
		b += int64(len(ls.grp)) + 2*n /* cuts */ + 4*n /* stride */ + 4*int64(len(ls.order)) + n /* walker */ + 2*n
		if &ls.distD[0] != &ls.distI[0] {
			b += 2 * n
		}
	}
	return b
}

// EachTables calls fn with every switch's route table in switch order,
// building them a block of switches at a time (one pass over the
// receivers' routes per block, not one per switch). fn must not keep the
// tables: their Routes are reused.
func (r *Routes) EachTables(fn func(si int, t *SwitchTables) error) error {
	const block = 64
	f := r.f
	t := f.t
	nsw, nr := len(t.Switches), len(t.receivers)
	bufs := make([][]Route, min(block, nsw))
	for i := range bufs {
		bufs[i] = make([]Route, nr)
	}
	for lo := 0; lo < nsw; lo += block {
		hi := min(lo+block, nsw)
		for rank, h := range t.receivers {
			id := t.Hosts[h].ID
			prim, back := f.primary[rank][lo:hi], f.backup[rank][lo:hi]
			for i := range prim {
				bufs[i][rank] = Route{Receiver: id, Primary: prim[i], Backup: back[i]}
			}
		}
		for si := lo; si < hi; si++ {
			st := &SwitchTables{Switch: t.Switches[si].Name, Ports: portNames(&t.Switches[si]), Routes: bufs[si-lo], Groups: map[uint32][]uint16{}}
			if err := fn(si, st); err != nil {
				return err
			}
		}
	}
	return nil
}
