package dataplane

import (
	"strings"
	"testing"
)

// FuzzConfig feeds the switch config loader arbitrary YAML: it returns a
// config or an error, never panics or hangs, and a config it accepts builds
// tables.
func FuzzConfig(f *testing.F) {
	f.Add([]byte("name: sw1\nports:\n  - {name: p0, iface: veth0}\n  - {name: p1, iface: veth1}\nroutes:\n  - {receivers: 1-4, port: p0, backup: p1}\n"))
	f.Add([]byte("name: b\nports:\n  - {name: a, type: mem}\ngroups:\n  - {id: 7, members: [1, 2]}\n"))
	f.Add([]byte("name: x\nworkers: 2\ncpus: [0, 1]\npoll_mode: busy\nports: [{name: e, type: dpdk, device: net_null0}]\ncontrol_ring: /run/sparsecast/sparsecast-x.ring\n"))
	f.Add([]byte("ports: [{name: a}, {name: a}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		c, err := ParseConfig(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if _, err := TablesFromConfig(c); err != nil && strings.TrimSpace(err.Error()) == "" {
			t.Fatal("empty error")
		}
	})
}
