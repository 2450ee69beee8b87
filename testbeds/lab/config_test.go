package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/endpoint"
)

func TestSwitchConfigLoads(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "switch.yaml")
		if err := os.WriteFile(path, SwitchConfigFor(5, 9471, v6), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := dataplane.LoadConfig(path)
		if err != nil {
			t.Fatalf("v6=%v: %v", v6, err)
		}
		if len(c.Ports) != 5 || c.RouteEntries() != 4 || c.PollMode != dataplane.PollAdaptive || c.UDPPort != 9471 {
			t.Fatalf("config %+v", c)
		}
		for i, p := range c.Ports {
			a := addrFor(i, v6)
			if p.Type != "afpacket" || p.Iface != p.Name || p.NeighborMAC != a.HostMAC || p.NeighborIP != a.HostIP || p.RxRing != LabRxRing {
				t.Errorf("port %d: %+v", i, p)
			}
		}
		// Receiver i goes to port p<i>; nobody routes to the sender's port.
		tables, err := dataplane.TablesFromConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		if n := tables.Routes.Len(); n != 4 {
			t.Errorf("%d receivers routed, want 4", n)
		}
		for id := 1; id <= 4; id++ {
			if p := tables.Routes.Lookup(uint16(id)); int(p) != id {
				t.Errorf("receiver %d on port %d, want p%d", id, p, id)
			}
		}
	}
}

func TestAddrFor(t *testing.T) {
	a := addrFor(3, false)
	if a.HostIP != "10.77.3.2" || a.PortIP != "10.77.3.1" || a.HostMAC == a.PortMAC || a.PrefixLen != 24 {
		t.Errorf("%+v", a)
	}
	b := addrFor(12, true)
	if b.HostIP != "fd77:c::2" || b.PortIP != "fd77:c::1" || b.PrefixLen != 64 {
		t.Errorf("%+v", b)
	}
	if addrFor(1, false).HostMAC == addrFor(2, false).HostMAC {
		t.Error("hosts share a MAC")
	}
}

func TestCompare(t *testing.T) {
	sched := endpoint.Schedule{Seed: 3, Receivers: []uint16{1, 2, 3, 4}}
	exp := sched.Expected(2, 0, 1000)
	report := func(seqs *endpoint.SeqSet, dups, viol uint64) *endpoint.Report {
		return &endpoint.Report{ID: 2, Data: seqs.Len() + dups, Streams: []endpoint.StreamReport{{
			Source: 0, Session: 1, Received: seqs.Len() + dups, Unique: seqs.Len(),
			Duplicates: dups, SetViolations: viol, Seqs: seqs,
		}}}
	}
	if r := Compare(2, exp, report(exp, 0, 0), 0, 1); !r.OK || r.Expected != exp.Len() || r.Received != exp.Len() {
		t.Errorf("exact delivery: %+v", r)
	}
	// One missing, one extra.
	var first, extra uint32
	exp.Each(func(s uint32) bool { first = s; return false })
	for s := uint32(0); ; s++ {
		if !exp.Contains(s) {
			extra = s
			break
		}
	}
	got := exp.Minus(nil)
	got2 := &endpoint.SeqSet{}
	got.Each(func(s uint32) bool {
		if s != first {
			got2.Add(s)
		}
		return true
	})
	got2.Add(extra)
	r := Compare(2, exp, report(got2, 0, 0), 0, 1)
	if r.OK || r.Missing != 1 || r.Unexpected != 1 || r.MissingSeqs == "" || r.UnexpectedSeqs == "" {
		t.Errorf("missing+extra: %+v", r)
	}
	if r := Compare(2, exp, report(exp, 1, 0), 0, 1); r.OK || r.Duplicates != 1 {
		t.Errorf("duplicate: %+v", r)
	}
	if r := Compare(2, exp, report(exp, 0, 4), 0, 1); r.OK || r.SetViolations != 4 {
		t.Errorf("set violations: %+v", r)
	}
	if r := Compare(2, exp, report(exp, 0, 0), 0, 2); r.OK || r.OtherStreams != 1 || r.Missing != exp.Len() {
		t.Errorf("wrong session: %+v", r)
	}
	if r := Compare(3, exp, report(exp, 0, 0), 0, 1); r.OK {
		t.Errorf("report of another receiver accepted: %+v", r)
	}
	mal := report(exp, 0, 0)
	mal.Malformed = 1
	if r := Compare(2, exp, mal, 0, 1); r.OK {
		t.Errorf("malformed accepted: %+v", r)
	}
}

func TestOptionsAndPrefix(t *testing.T) {
	for _, p := range []string{"", "-x", "Sc-", "sc_", "a/b", strings.Repeat("a", 17)} {
		if CheckPrefix(p) == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	if err := CheckPrefix("sc-"); err != nil {
		t.Error(err)
	}
	bin := filepath.Join(t.TempDir(), "bin")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{}, "no sparsecast binary"},
		{Options{Binary: "/nonexistent/sparsecast"}, "binary"},
		{Options{Binary: t.TempDir()}, "not an executable"},
		{Options{Binary: bin, Packets: -1}, "packets"},
		{Options{Binary: bin, Receivers: 300}, "receivers"},
		{Options{Binary: bin, Size: 5}, "size"},
		{Options{Binary: bin, Prefix: "X"}, "prefix"},
	} {
		err := tc.o.defaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
	o := Options{Binary: bin}
	if err := o.defaults(); err != nil || o.Packets != 10000 || o.Receivers != 4 || o.Prefix != "sc-" {
		t.Errorf("defaults: %v %+v", err, o)
	}
}
