package gen

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/sparsecast/sparsecast/control"
)

func load(t *testing.T, k int) *control.Topology {
	t.Helper()
	var b bytes.Buffer
	if err := FatTree(&b, k); err != nil {
		t.Fatal(err)
	}
	topo, err := control.ParseTopology(b.Bytes())
	if err != nil {
		t.Fatalf("k=%d: the loader refuses the generated file: %v", k, err)
	}
	return topo
}

func TestFatTreeCounts(t *testing.T) {
	ks := []int{2, 4, 6, 8, 16}
	if !testing.Short() {
		ks = append(ks, 32)
	}
	for _, k := range ks {
		c, err := FatTreeSize(k)
		if err != nil {
			t.Fatal(err)
		}
		h := k / 2
		if c.Hosts != k*k*k/4 || c.Cores != h*h || c.Edges != k*h || c.Aggs != k*h || c.Links != k*k*k/2 {
			t.Errorf("k=%d: counts %+v", k, c)
		}
		topo := load(t, k)
		roles := map[control.Role]int{}
		for _, s := range topo.Switches {
			roles[s.Role]++
			// Every switch has k ports: k/2 down, k/2 up (a core k down).
			if len(s.Ports) != k {
				t.Fatalf("k=%d: %s has %d ports", k, s.Name, len(s.Ports))
			}
		}
		if roles[control.RoleLeaf] != c.Edges || roles[control.RoleAgg] != c.Aggs || roles[control.RoleCore] != c.Cores || len(topo.Switches) != c.Switches {
			t.Errorf("k=%d: roles %v, want %d edges, %d aggs, %d cores", k, roles, c.Edges, c.Aggs, c.Cores)
		}
		if len(topo.Links) != c.Links || len(topo.Hosts) != c.Hosts || len(topo.Receivers()) != c.Hosts {
			t.Errorf("k=%d: %d links, %d hosts, %d receivers; want %d, %d", k, len(topo.Links), len(topo.Hosts), len(topo.Receivers()), c.Links, c.Hosts)
		}
		// Links join adjacent tiers only, each agg to k/2 distinct cores
		// and each core to one agg per pod.
		corePods := map[int]map[string]bool{}
		for _, l := range topo.Links {
			a, b := topo.Switches[l.ASw], topo.Switches[l.BSw]
			switch {
			case a.Role == control.RoleLeaf && b.Role == control.RoleAgg:
				if strings.Split(a.Name, "-")[0] != strings.Split(b.Name, "-")[0] {
					t.Fatalf("k=%d: %s links pods", k, l.Description)
				}
			case a.Role == control.RoleAgg && b.Role == control.RoleCore:
				if corePods[l.BSw] == nil {
					corePods[l.BSw] = map[string]bool{}
				}
				pod := strings.Split(a.Name, "-")[0]
				if corePods[l.BSw][pod] {
					t.Fatalf("k=%d: %s reaches pod %s twice", k, b.Name, pod)
				}
				corePods[l.BSw][pod] = true
			default:
				t.Fatalf("k=%d: link %s joins a %s and a %s", k, l.Description, a.Role, b.Role)
			}
		}
		for sw, pods := range corePods {
			if len(pods) != k {
				t.Errorf("k=%d: %s reaches %d pods", k, topo.Switches[sw].Name, len(pods))
			}
		}
		// Receiver IDs are packed: 0 .. hosts-1, each edge's together.
		for i, r := range topo.Receivers() {
			if int(r.ID) != i {
				t.Fatalf("k=%d: receiver %d has ID %d", k, i, r.ID)
			}
		}
	}
}

// The k=4 output is testbeds/fattree.yaml's fabric: the same switches,
// port orders and links (only the receiver IDs are packed).
func TestFatTreeMatchesTestbed(t *testing.T) {
	want, err := control.LoadTopology("../fattree.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := load(t, 4)
	if !slices.Equal(got.SwitchNames(), want.SwitchNames()) {
		t.Fatalf("switches %v, want %v", got.SwitchNames(), want.SwitchNames())
	}
	for _, sw := range want.SwitchNames() {
		if !slices.Equal(got.PortNames(sw), want.PortNames(sw)) {
			t.Errorf("%s ports %v, want %v", sw, got.PortNames(sw), want.PortNames(sw))
		}
	}
	for i, l := range want.Links {
		if got.Links[i].Description != l.Description {
			t.Errorf("link %d: %s, want %s", i, got.Links[i].Description, l.Description)
		}
	}
}

func TestFatTreeLimits(t *testing.T) {
	for _, k := range []int{0, 1, 3, 66, -2} {
		if _, err := FatTreeSize(k); err == nil {
			t.Errorf("k=%d accepted", k)
		}
		if err := FatTree(&bytes.Buffer{}, k); err == nil {
			t.Errorf("FatTree k=%d accepted", k)
		}
	}
	for hosts, k := range map[int]int{16: 4, 1024: 16, 8192: 32, 65536: 64} {
		if got, err := FatTreeKForHosts(hosts); err != nil || got != k {
			t.Errorf("%d hosts: k %d, %v; want %d", hosts, got, err, k)
		}
	}
	for _, hosts := range []int{0, 1000, 8000, 131072, -16} {
		if _, err := FatTreeKForHosts(hosts); err == nil {
			t.Errorf("%d hosts accepted", hosts)
		}
	}
}
