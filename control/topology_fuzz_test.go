package control

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzTopology feeds the topology loader arbitrary YAML: an error or a
// topology whose names are all valid names, never a panic. Routes are
// computed for what it accepts.
func FuzzTopology(f *testing.F) {
	for _, name := range []string{"failover.yaml", "leafspine.yaml"} {
		if b, err := os.ReadFile(filepath.Join("..", "testbeds", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(miniHead))
	f.Add([]byte(miniHead + "hosts:\n  - {name: h1, attach: l1:h1, ips: [10.0.0.1], mac: '02:00:00:00:00:01'}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 32<<10 {
			return
		}
		topo, err := ParseTopology(data)
		if err != nil {
			return
		}
		for _, sw := range topo.Switches {
			if checkName(sw.Name) != nil {
				t.Fatalf("accepted switch name %q", sw.Name)
			}
			if p, err := ringPathIn("/run/sparsecast", sw.Name); err != nil || filepath.Dir(p) != "/run/sparsecast" {
				t.Fatalf("switch %q: ring path %q %v", sw.Name, p, err)
			}
		}
		for _, h := range topo.Hosts {
			if checkName(h.Name) != nil || strings.Contains(h.Name, "/") {
				t.Fatalf("accepted host name %q", h.Name)
			}
		}
		if len(topo.Switches) <= 64 {
			computeFabric(topo, nil)
		}
	})
}
