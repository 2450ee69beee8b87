package control

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// testbed loads a fabric from testbeds/.
func testbed(t testing.TB, name string) *Topology {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	topo, err := LoadTopology(filepath.Join(filepath.Dir(file), "..", "testbeds", name))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestTestbedsLoad(t *testing.T) {
	ls := testbed(t, "leafspine.yaml")
	if len(ls.Switches) != 6 || len(ls.Links) != 8 || len(ls.Receivers()) != 8 {
		t.Fatalf("leafspine: %d switches, %d links, %d receivers", len(ls.Switches), len(ls.Links), len(ls.Receivers()))
	}
	var ids []uint16
	for _, r := range ls.Receivers() {
		ids = append(ids, r.ID)
	}
	if want := []uint16{0, 1, 64, 65, 128, 129, 192, 193}; !slices.Equal(ids, want) {
		t.Errorf("leafspine IDs %v, want %v", ids, want)
	}
	if got := ls.PortNames("leaf1"); !slices.Equal(got, []string{"p1", "p2", "h1", "h2"}) {
		t.Errorf("leaf1 port order %v", got)
	}
	if got := ls.PortNames("spine2"); !slices.Equal(got, []string{"p1", "p2", "p3", "p4"}) {
		t.Errorf("spine2 port order %v", got)
	}

	ft := testbed(t, "fattree.yaml")
	if len(ft.Switches) != 20 || len(ft.Links) != 32 || len(ft.Receivers()) != 16 {
		t.Fatalf("fattree: %d switches, %d links, %d receivers", len(ft.Switches), len(ft.Links), len(ft.Receivers()))
	}
	if got := ft.PortNames("p2-agg1"); !slices.Equal(got, []string{"d0", "d1", "u0", "u1"}) {
		t.Errorf("p2-agg1 port order %v", got)
	}

	fo := testbed(t, "failover.yaml")
	if len(fo.Receivers()) != 4 || len(fo.Hosts) != 5 {
		t.Fatalf("failover: %d receivers of %d hosts", len(fo.Receivers()), len(fo.Hosts))
	}
	if got := fo.PortNames("leaf2"); !slices.Equal(got, []string{"p1", "p2", "h1", "h2", "h3", "h4"}) {
		t.Errorf("leaf2 port order %v", got)
	}
	if fo.IsReceiver(0) || !fo.IsReceiver(4) {
		t.Errorf("IsReceiver")
	}
	if l, ok := fo.LinkAt("leaf2", 0); !ok || fo.Links[l].Description != "spine1:p2-leaf2:p1" {
		t.Errorf("LinkAt(leaf2, 0) = %d %v", l, ok)
	}
	if _, ok := fo.LinkAt("leaf2", 2); ok {
		t.Errorf("host port has a link")
	}
}

const miniHead = `
switches:
  - {name: s1, role: spine}
  - {name: l1, role: leaf}
  - {name: l2, role: leaf}
links:
  - {a: s1:p1, b: l1:up}
  - {a: s1:p2, b: l2:up}
`

func TestTopologyErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"empty", ``, "empty topology"},
		{"no switches", `links: []`, "no switches"},
		{"unknown key", miniHead + "colour: blue\n", "colour"},
		{"bad role", "switches: [{name: a, role: tor}]", `role "tor"`},
		{"no role", "switches: [{name: a}]", "no role"},
		{"dup switch", "switches: [{name: a, role: leaf}, {name: a, role: leaf}]", "duplicate switch name"},
		{"switch id range", "switches: [{name: a, role: leaf, id: 70000}]", "out of range 0-65535"},
		{"switch id dup", "switches: [{name: a, role: leaf, id: 3}, {name: b, role: leaf, id: 3}]", "already used by switch a"},
		{"name colon", "switches: [{name: 'a:b', role: leaf}]", "want letters, digits"},
		{"name slash", "switches: [{name: 'x/../../evil', role: leaf}]", "want letters, digits"},
		{"name dotdot", "switches: [{name: 'a..b', role: leaf}]", `no ".."`},
		{"name dot", "switches: [{name: '.', role: leaf}]", "starting with a letter"},
		{"name dash", "switches: [{name: '-x', role: leaf}]", "starting with a letter"},
		{"name long", "switches: [{name: '" + strings.Repeat("a", 65) + "', role: leaf}]", "longer than 64"},
		{"host name slash", miniHead + "hosts:\n  - {name: 'h/1', attach: l1:h1}\n", "want letters, digits"},
		{"dup ip", miniHead + "hosts:\n  - {name: h1, attach: l1:h1, ips: [10.0.0.1]}\n  - {name: h2, attach: l1:h2, ips: [10.0.0.1]}\n", "ip 10.0.0.1 is already host h1's"},
		{"dup mac", miniHead + "hosts:\n  - {name: h1, attach: l1:h1, mac: '02:00:00:00:00:01'}\n  - {name: h2, attach: l1:h2, mac: '02:00:00:00:00:01'}\n", "mac 02:00:00:00:00:01 is already host h1's"},
		{"unknown switch", miniHead + "  - {a: s9:p1, b: l1:x}\n", `unknown switch "s9"`},
		{"bad ref", miniHead + "  - {a: s1, b: l1:x}\n", "want switch:port"},
		{"port twice", miniHead + "  - {a: s1:p1, b: l2:x}\n", "port s1:p1 used twice"},
		{"self link", miniHead + "  - {a: s1:p3, b: s1:p4}\n", "to itself"},
		{"undeclared port", "switches: [{name: a, role: leaf, ports: [x]}, {name: b, role: spine}]\nlinks: [{a: a:y, b: b:p}]", `has no port "y"`},
		{"declared twice", "switches: [{name: a, role: leaf, ports: [x, x]}]", "listed twice"},
		{"disconnected", "switches: [{name: a, role: leaf}, {name: b, role: leaf}]", "disconnected: a cannot reach b"},
		{"host on spine", miniHead + "hosts: [{name: h, attach: s1:h}]", "leaves only"},
		{"host port used", miniHead + "hosts: [{name: h, attach: l1:up}]", "used twice"},
		{"host no attach", miniHead + "hosts: [{name: h}]", "no attach"},
		{"host dup", miniHead + "hosts: [{name: h, attach: l1:a}, {name: h, attach: l1:b}]", "duplicate host name"},
		{"host id range", miniHead + "hosts: [{name: h, attach: l1:a, id: 65536}]", "out of range 0-65535"},
		{"host id negative", miniHead + "hosts: [{name: h, attach: l1:a, id: -1}]", "out of range"},
		{"host id dup", miniHead + "hosts: [{name: h, attach: l1:a, id: 7}, {name: g, attach: l2:a, id: 7}]", "already used by host h"},
		{"sender with id", miniHead + "hosts: [{name: h, attach: l1:a, id: 7, receiver: false}]", "receiver: false with an id"},
		{"bad ip", miniHead + "hosts: [{name: h, attach: l1:a, ips: [10.0.0.300]}]", "not an IP address"},
		{"bad mac", miniHead + "hosts: [{name: h, attach: l1:a, mac: zz}]", "mac"},
	}
	for _, c := range cases {
		_, err := ParseTopology([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

func TestTooManyPorts(t *testing.T) {
	var b strings.Builder
	b.WriteString("switches: [{name: s, role: spine}, {name: l, role: leaf}]\nlinks:\n")
	for i := range MaxSwitchPorts + 1 {
		fmt.Fprintf(&b, "  - {a: s:p%d, b: l:u%d}\n", i, i)
	}
	if _, err := ParseTopology([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "more than 255 ports") {
		t.Fatalf("error %v", err)
	}
}

func TestReceiverIDBlocks(t *testing.T) {
	var b strings.Builder
	b.WriteString(miniHead + "  - {a: s1:p3, b: l3:up}\nhosts:\n")
	b.WriteString("  - {name: fixed, attach: l2:f, id: 200}\n")
	for i := range 70 {
		fmt.Fprintf(&b, "  - {name: a%d, attach: l1:h%d}\n", i, i) // 70 hosts: two blocks
	}
	for i := range 3 {
		fmt.Fprintf(&b, "  - {name: b%d, attach: l2:h%d}\n", i, i)
	}
	b.WriteString("  - {name: tx, attach: l3:h0, receiver: false}\n  - {name: c0, attach: l3:h1}\n")
	src := strings.Replace(b.String(), "  - {name: l2, role: leaf}\n", "  - {name: l2, role: leaf}\n  - {name: l3, role: leaf}\n", 1)
	topo, err := ParseTopology([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint16{}
	for _, r := range topo.Receivers() {
		got[r.Host] = r.ID
	}
	// l1: 0-69 (two blocks); l2: the next aligned block, 128-130; l3: 192.
	if got["a0"] != 0 || got["a69"] != 69 || got["b0"] != 128 || got["b2"] != 130 || got["c0"] != 192 || got["fixed"] != 200 {
		t.Fatalf("IDs %v", got)
	}
	if _, ok := got["tx"]; ok {
		t.Fatalf("sender got a receiver ID")
	}
	// An explicit ID inside the next aligned run pushes the leaf on.
	topo, err = ParseTopology([]byte(miniHead + "hosts: [{name: x, attach: l1:x, id: 0}, {name: y, attach: l1:y}, {name: z, attach: l2:z}]"))
	if err != nil {
		t.Fatal(err)
	}
	got = map[string]uint16{}
	for _, r := range topo.Receivers() {
		got[r.Host] = r.ID
	}
	if got["y"] != 64 || got["z"] != 128 {
		t.Fatalf("IDs %v", got)
	}
}
