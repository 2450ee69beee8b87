package dataplane

import (
	"bytes"
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
		if len(data) > 64<<10 || bytes.Contains(data, []byte("routes_file")) {
			return // routes_file would read the machine's files
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

// FuzzFlowRoutes: a config read with the flow-routes parser (a routes: list
// of one-line flow mappings, dataplane/routes.go) is the config yaml.v3 alone
// reads from the same bytes: both fail, or both give the same config and the
// same tables.
func FuzzFlowRoutes(f *testing.F) {
	f.Add([]byte(routesPorts + "routes:\n  - {receivers: \"1-4,7\", port: p0, backup: p1}\n  - {receivers: '9', port: p2}\n"))
	f.Add([]byte(routesPorts + "routes:   # c\n- {port: p1, receivers: 1-3}\n\n  # a comment\n- {receivers: \" 5 , 6 - 8 \", backup: p0, port: p1}   # t\ngroups:\n  - {id: 7, members: \"1-2\"}\n"))
	f.Add([]byte("---\r\n" + strings.ReplaceAll(routesPorts, "\n", "\r\n") + "routes:\r\n  - {receivers: \"1\", port: p0}\r\n---\r\nname: x\r\n"))
	f.Add([]byte(routesPorts + "routes:\n  - {receivers: \"1-3\", port: p0}\n  - {receivers: \"3\", port: p1}\n"))
	f.Add([]byte(routesPorts + "routes:\n  - {receivers: 1-4,7, port: p0}\nworkers: 2\n"))
	f.Add([]byte(routesPorts + "routes:\n    - receivers: 1-4,7   # c\n      # c\n\n      backup: 'p1'\n      port: p0\n    - {receivers: \"9\", port: p2}\n    - port: p2\n      receivers: \"10\"\ngroups: []\n"))
	f.Add([]byte(routesPorts + "routes:\n- receivers: \"1\"\n  port: p0\n- receivers: \"2\"\n  port: p5\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 || bytes.Contains(data, []byte("routes_file")) {
			return // routes_file would read the machine's files
		}
		sameAsYAMLv3(t, data)
	})
}

// FuzzRoutesFile: the routes file parser returns spans or an error naming
// the file and line, never panics; what it accepts, each line read as a
// routes: entry by the YAML path (ParseIDSet and all) routes alike.
func FuzzRoutesFile(f *testing.F) {
	f.Add([]byte("# receivers port backup\n1-4,7\tp0 p1\r\n\n  9   p2   # no backup\n10-12 p1 p0\n12 p1"))
	f.Add([]byte("1 p0\n2\n"))
	f.Add([]byte("1-9 p0\n5 p1\n0-65535 p2 p1\n"))
	f.Add([]byte("70000 p0 p1 p2\n5-3 p0\n1,,2 p0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		s, err := parseRoutesFile(bytes.NewReader(data), "r.txt")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "r.txt:") {
				t.Fatalf("error %q does not name the file and line", err)
			}
			return
		}
		c, err := ParseConfig([]byte(routesPorts))
		if err != nil {
			t.Fatal(err)
		}
		c.routeSets = []*routeSet{s}
		// The same lines as Routes entries, the way yaml.v3 would decode
		// them from a list.
		ref := *c
		ref.routeSets = nil
		for _, l := range strings.Split(string(data), "\n") {
			l, _, _ = strings.Cut(l, "#")
			f := strings.FieldsFunc(l, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
			if len(f) > 0 {
				e := RouteEntry{Receivers: f[0], Port: f[1]}
				if len(f) == 3 {
					e.Backup = f[2]
				}
				ref.Routes = append(ref.Routes, e)
			}
		}
		if c.RouteEntries() != len(ref.Routes) {
			t.Fatalf("%d entries, the lines hold %d", c.RouteEntries(), len(ref.Routes))
		}
		ok := c.Validate() == nil
		if okRef := ref.Validate() == nil; ok != okRef {
			t.Fatalf("validate: routes file %v, as Routes %v", ok, okRef)
		}
		if !ok {
			return
		}
		t1, e1 := TablesFromConfig(c)
		t2, e2 := TablesFromConfig(&ref)
		if (e1 == nil) != (e2 == nil) || e1 == nil && !t1.Routes.Equal(t2.Routes) {
			t.Fatalf("tables: routes file %v, as Routes %v", e1, e2)
		}
	})
}
