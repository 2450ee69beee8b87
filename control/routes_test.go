package control

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// fabricSim forwards packets over computed tables the way the dataplane
// does (dataplane/tables.go Resolve, dataplane/replicate.go uturn), written
// independently of routes.go's own walk.
type fabricSim struct {
	topo  *Topology
	route []map[uint16]Route // per switch
}

func newFabricSim(t *testing.T, topo *Topology, down []LinkID) *fabricSim {
	t.Helper()
	tabs, err := ComputeAllTables(topo, down)
	if err != nil {
		t.Fatal(err)
	}
	s := &fabricSim{topo: topo}
	for si, st := range tabs {
		if st.Switch != topo.Switches[si].Name || !slices.Equal(st.Ports, topo.PortNames(st.Switch)) {
			t.Fatalf("tables of %s: ports %v", st.Switch, st.Ports)
		}
		if !slices.IsSortedFunc(st.Routes, func(a, b Route) int { return int(a.Receiver) - int(b.Receiver) }) {
			t.Fatalf("%s: routes not ascending", st.Switch)
		}
		m := map[uint16]Route{}
		for _, r := range st.Routes {
			m[r.Receiver] = r
		}
		s.route = append(s.route, m)
	}
	return s
}

// forward sends a packet for receiver id into switch sw through port in.
// failed (or -1) is a link whose ports are down at both its ends: the
// dataplane there uses backups for entries whose primary is that port. It
// returns the switches visited and an error if the packet is lost.
func (s *fabricSim) forward(sw, in int, id uint16, failed LinkID) ([]int, error) {
	isDown := func(sw int, port uint8) bool {
		if failed < 0 || port == NoPort {
			return false
		}
		l := s.topo.Links[failed]
		return (sw == l.ASw && int(port) == l.APort) || (sw == l.BSw && int(port) == l.BPort)
	}
	var path []int
	for {
		path = append(path, sw)
		if len(path) > HopLimit {
			return path, fmt.Errorf("hop limit")
		}
		r, ok := s.route[sw][id]
		if !ok {
			return path, fmt.Errorf("%s has no entry", s.topo.Switches[sw].Name)
		}
		active := r.Primary
		if isDown(sw, active) {
			active = NoPort
			if r.Backup != NoPort && !isDown(sw, r.Backup) {
				active = r.Backup
			}
		}
		if active == NoPort {
			return path, fmt.Errorf("no route at %s", s.topo.Switches[sw].Name)
		}
		if int(active) == in {
			switch {
			case r.Primary != uint8(in):
				// rerouted entry: U-turn out of the ingress port
			case r.Backup != uint8(in):
				active = r.Backup
			default:
				return path, fmt.Errorf("loop at %s", s.topo.Switches[sw].Name)
			}
			if active == NoPort {
				return path, fmt.Errorf("U-turn without backup at %s", s.topo.Switches[sw].Name)
			}
		}
		p := s.topo.Switches[sw].Ports[active]
		if p.Host >= 0 {
			h := s.topo.Hosts[p.Host]
			if !h.Receiver || h.ID != id {
				return path, fmt.Errorf("delivered to host %s", h.Name)
			}
			return path, nil
		}
		if p.Link == failed || isDown(sw, active) {
			return path, fmt.Errorf("sent into the failed link at %s", s.topo.Switches[sw].Name)
		}
		sw, in = p.Peer, p.PeerPort
	}
}

// checkPath allows no switch twice, except, with a failed link, one U-turn:
// path[i] == path[i+2] where path[i+1] is an end of the failed link.
func checkPath(topo *Topology, path []int, failed LinkID) error {
	seen := map[int]int{}
	uturns := 0
	for i, sw := range path {
		if j, dup := seen[sw]; dup {
			l := LinkID(-1)
			if failed >= 0 {
				l = failed
			}
			ok := l >= 0 && j == i-2 && (path[i-1] == topo.Links[l].ASw || path[i-1] == topo.Links[l].BSw)
			if !ok {
				return fmt.Errorf("%s visited twice", topo.Switches[sw].Name)
			}
			uturns++
		}
		seen[sw] = i
	}
	if uturns > 1 {
		return fmt.Errorf("%d U-turns", uturns)
	}
	return nil
}

func names(topo *Topology, path []int) []string {
	var n []string
	for _, s := range path {
		n = append(n, topo.Switches[s].Name)
	}
	return n
}

// pathUses reports whether following primaries from sw (the intact tables)
// crosses link l.
func (s *fabricSim) pathUses(sw int, id uint16, l LinkID) bool {
	for range HopLimit {
		r := s.route[sw][id]
		if r.Primary == NoPort {
			return false
		}
		p := s.topo.Switches[sw].Ports[r.Primary]
		if p.Link < 0 {
			return false
		}
		if p.Link == l {
			return true
		}
		sw = p.Peer
	}
	return false
}

// threeSpines is a leaf-spine fabric with 3-way ECMP, where a failure
// shrinks a candidate list without emptying it.
func threeSpines(t *testing.T) *Topology {
	var b strings.Builder
	b.WriteString("switches:\n")
	for s := 1; s <= 3; s++ {
		fmt.Fprintf(&b, "  - {name: s%d, role: spine}\n", s)
	}
	for l := 1; l <= 3; l++ {
		fmt.Fprintf(&b, "  - {name: l%d, role: leaf}\n", l)
	}
	b.WriteString("links:\n")
	for l := 1; l <= 3; l++ {
		for s := 1; s <= 3; s++ {
			fmt.Fprintf(&b, "  - {a: s%d:p%d, b: l%d:u%d}\n", s, l, l, s)
		}
	}
	b.WriteString("hosts:\n")
	for l := 1; l <= 3; l++ {
		for h := 1; h <= 4; h++ {
			fmt.Fprintf(&b, "  - {name: h%d%d, attach: l%d:h%d}\n", l, h, l, h)
		}
	}
	topo, err := ParseTopology([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestRoutesProperties(t *testing.T) {
	for _, name := range []string{"leafspine.yaml", "fattree.yaml", "failover.yaml", "three-spines"} {
		t.Run(name, func(t *testing.T) {
			var topo *Topology
			if name == "three-spines" {
				topo = threeSpines(t)
			} else {
				topo = testbed(t, name)
			}
			intact := newFabricSim(t, topo, nil)
			recv := topo.Receivers()

			// Every host's leaf reaches every receiver on a shortest path.
			for _, h := range topo.Hosts {
				for _, r := range recv {
					if r.Host == h.Name {
						continue
					}
					path, err := intact.forward(h.Switch, h.Port, r.ID, -1)
					if err == nil {
						err = checkPath(topo, path, -1)
					}
					if err != nil {
						t.Fatalf("intact %s -> %d: %v (path %v)", h.Name, r.ID, err, names(topo, path))
					}
					leaf := topo.SwitchIndex(r.Switch)
					if d := topo.bfs(leaf, nil)[h.Switch]; len(path) != d+1 {
						t.Errorf("intact %s -> %d: %d switches, shortest is %d", h.Name, r.ID, len(path), d+1)
					}
				}
			}

			for l := range topo.Links {
				failed := LinkID(l)
				after := newFabricSim(t, topo, []LinkID{failed})
				changed := 0
				for _, h := range topo.Hosts {
					for _, r := range recv {
						if r.Host == h.Name {
							continue
						}
						// Fast reroute: intact tables, backups at both ends.
						path, err := intact.forward(h.Switch, h.Port, r.ID, failed)
						if err == nil {
							err = checkPath(topo, path, failed)
						}
						if err != nil {
							t.Fatalf("%s down, fast reroute %s -> %d: %v (path %v)", topo.Links[l].Description, h.Name, r.ID, err, names(topo, path))
						}
						// Recomputed tables: primaries only, no U-turn.
						path, err = after.forward(h.Switch, h.Port, r.ID, failed)
						if err == nil {
							err = checkPath(topo, path, -1)
						}
						if err != nil {
							t.Fatalf("%s down, recomputed %s -> %d: %v (path %v)", topo.Links[l].Description, h.Name, r.ID, err, names(topo, path))
						}
						down := map[LinkID]bool{failed: true}
						if d := topo.bfs(topo.SwitchIndex(r.Switch), down)[h.Switch]; len(path) != d+1 {
							t.Errorf("%s down, recomputed %s -> %d: %d switches, shortest is %d", topo.Links[l].Description, h.Name, r.ID, len(path), d+1)
						}
					}
				}
				// Only receivers whose primary path crossed the link move.
				for sw := range topo.Switches {
					for _, r := range recv {
						if after.route[sw][r.ID].Primary != intact.route[sw][r.ID].Primary {
							changed++
							if !intact.pathUses(sw, r.ID, failed) {
								t.Errorf("%s down: %s changed the primary of receiver %d, whose path did not use the link",
									topo.Links[l].Description, topo.Switches[sw].Name, r.ID)
							}
						}
					}
				}
				if changed == 0 {
					t.Errorf("%s down: no primary changed", topo.Links[l].Description)
				}
			}
		})
	}
}

func TestRoutesSpreadOverSpines(t *testing.T) {
	topo := testbed(t, "leafspine.yaml")
	for _, leaf := range []string{"leaf1", "leaf2", "leaf3", "leaf4"} {
		st, err := ComputeTables(topo, leaf, nil)
		if err != nil {
			t.Fatal(err)
		}
		per := map[uint8]int{}
		for _, r := range st.Routes {
			switch st.Ports[r.Primary] {
			case "h1", "h2":
				if r.Backup != NoPort {
					t.Errorf("%s: host-facing entry %d has backup %d", leaf, r.Receiver, r.Backup)
				}
			default:
				per[r.Primary]++
				// A leaf's backup is the other spine.
				if r.Backup == NoPort || r.Backup == r.Primary || st.Ports[r.Backup][0] != 'p' {
					t.Errorf("%s: receiver %d primary %d backup %d", leaf, r.Receiver, r.Primary, r.Backup)
				}
			}
		}
		if len(per) != 2 || per[0] != per[1] {
			t.Errorf("%s: receivers per uplink %v", leaf, per)
		}
	}
	// A spine's backup for a leaf's receivers is another leaf.
	st, err := ComputeTables(topo, "spine1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Routes {
		if r.Backup == NoPort || r.Backup == r.Primary {
			t.Errorf("spine1: receiver %d primary %d backup %d", r.Receiver, r.Primary, r.Backup)
		}
	}

	// In the fat-tree, one edge's traffic to the other pods uses all cores
	// evenly.
	ft := testbed(t, "fattree.yaml")
	sim := newFabricSim(t, ft, nil)
	src := ft.SwitchIndex("p0-edge0")
	cores := map[string]int{}
	for _, r := range ft.Receivers() {
		if r.Switch[:2] == "p0" {
			continue
		}
		path, err := sim.forward(src, -1, r.ID, -1)
		if err != nil {
			t.Fatal(err)
		}
		cores[ft.Switches[path[2]].Name]++
	}
	if len(cores) != 4 || cores["core0"] != 3 || cores["core1"] != 3 || cores["core2"] != 3 || cores["core3"] != 3 {
		t.Errorf("cores used from p0-edge0: %v", cores)
	}
}

func TestComputeTablesErrors(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	if _, err := ComputeTables(topo, "nope", nil); err == nil {
		t.Error("unknown switch accepted")
	}
	if _, err := ComputeTables(topo, "leaf1", []LinkID{4}); err == nil {
		t.Error("link 4 of 4 accepted")
	}
	// Both uplinks of leaf2 down: its receivers are unreachable from
	// leaf1, which gets NoPort entries rather than an error.
	st, err := ComputeTables(topo, "leaf1", []LinkID{1, 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Routes {
		if r.Primary != NoPort || r.Backup != NoPort {
			t.Errorf("unreachable receiver %d: %+v", r.Receiver, r)
		}
	}
	// Failover fabric: receivers 1 and 3 through spine1, 2 and 4 through
	// spine2, as testbeds/failover.yaml says.
	st, _ = ComputeTables(topo, "leaf1", nil)
	want := []Route{{1, 0, 1}, {2, 1, 0}, {3, 0, 1}, {4, 1, 0}}
	if !slices.Equal(st.Routes, want) {
		t.Errorf("leaf1 routes %v, want %v", st.Routes, want)
	}
}
