package lab

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsecast/sparsecast/control"
)

func TestParseDropMetrics(t *testing.T) {
	out := []byte(`# HELP sparsecast_switch_port_kernel_drops_total Packets the kernel dropped
# TYPE sparsecast_switch_port_kernel_drops_total counter
sparsecast_switch_port_kernel_drops_total{port="p1"} 12
sparsecast_switch_port_kernel_drops_total{port="h0"} 0
sparsecast_switch_drops_total{reason="no_route"} 7
sparsecast_switch_drops_total{reason="queue_full"} 3
sparsecast_switch_drops_total{reason="no_buffer"} 2
sparsecast_switch_drops_total{reason="tx_error"} 9
`)
	ring, queue, decisions := parseDropMetrics(out)
	if len(ring) != 2 || ring["p1"] != 12 || ring["h0"] != 0 || queue != 5 {
		t.Errorf("ring %v, queue %d; want p1 12, h0 0, queue 5", ring, queue)
	}
	if len(decisions) != 2 || decisions["no_route"] != 7 || decisions["tx_error"] != 9 {
		t.Errorf("decisions %v, want no_route 7, tx_error 9 (decisions, not stalls)", decisions)
	}
}

func TestParseSNMP(t *testing.T) {
	out := []byte("Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 2283 37 5 3348 4 0\nUdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n")
	udp, err := parseSNMP(out, "Udp")
	if err != nil || udp["NoPorts"] != 37 || udp["RcvbufErrors"] != 4 || udp["InDatagrams"] != 2283 {
		t.Errorf("%v, %v", udp, err)
	}
	if _, err := parseSNMP(out, "Tcp"); err == nil {
		t.Error("no Tcp lines: want an error")
	}
}

func TestDropCountersSub(t *testing.T) {
	a, b := newDropCounters(), newDropCounters()
	a.Ring["leaf1:p1"], b.Ring["leaf1:p1"] = 10, 4
	a.NoPorts["r1"], b.NoPorts["r1"] = 3, 5 // went back: a restart
	d := a.Sub(b)
	if d.Ring["leaf1:p1"] != 6 || d.NoPorts["r1"] != 3 {
		t.Errorf("%+v", d)
	}
	d.TxDropped["tx:eth0"], d.TxDropped["tx:lo"] = 2, 0
	if got, want := strings.Join(d.NonZero(), ", "), "no_ports r1=3, ring leaf1:p1=6, tx_dropped tx:eth0=2"; got != want {
		t.Errorf("non-zero %q, want %q", got, want)
	}
}

// On testbeds/failover.yaml receivers 1 and 3 go through spine1, 2 and 4
// through spine2: a drop counted on one spine's path explains losses behind
// it only; a receiver whose path changed counts every port but the failed
// link's.
func TestPathCounts(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	topo, err := control.LoadTopology(filepath.Join(root, "testbeds", "failover.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f := &Fabric{Topo: topo, Hosts: map[string]*FabricHost{}}
	for _, h := range topo.Hosts {
		f.Hosts[h.Name] = &FabricHost{Name: h.Name, Receiver: h.Receiver, ID: h.ID}
	}
	d := newDropCounters()
	d.Ring["leaf1:h0"] = 1      // from the sender: everyone's
	d.Ring["spine1:p1"] = 10    // from leaf1 into spine1
	d.Ring["spine2:p1"] = 100   // from leaf1 into spine2
	d.Ring["leaf2:h1"] = 1000   // from r1 into leaf2: no DATA goes that way
	d.TxDropped["leaf2:h3"] = 7 // leaf2 to r3
	d.TxDropped["spine1:p2"] = 5000
	d.TxDropped["tx:eth0"] = 2
	d.SwitchQueue["spine2"] = 20
	d.RcvbufErrors["r4"], d.NoPorts["r4"] = 3, 4
	want := map[uint16]LossCounts{
		1: {Ring: 11, Veth: 2 + 5000},
		2: {Ring: 101, SwitchQueue: 20, Veth: 2},
		3: {Ring: 11, Veth: 2 + 5000 + 7},
		4: {Ring: 101, SwitchQueue: 20, Veth: 2, Socket: 3, NoPort: 4},
	}
	for id, w := range want {
		c, err := f.PathCounts(d, "tx", id, false, nil, false)
		if err != nil || c != w {
			t.Errorf("receiver %d: %+v (%v), want %+v", id, c, err, w)
		}
	}
	c, err := f.PathCounts(d, "tx", 3, true, map[string]bool{"spine1:p2": true, "leaf2:p1": true}, false)
	if w := (LossCounts{Ring: 1111, SwitchQueue: 20, Veth: 2 + 7}); err != nil || c != w {
		t.Errorf("receiver 3 rerouted: %+v (%v), want %+v", c, err, w)
	}
	// Decided drops count only while probes had a healthy link down (on
	// any switch: the probes rerouted the stream), and tx_error (sent to
	// a port that is down) never.
	d.Decisions["spine1 no_route"], d.Decisions["spine2 no_route"] = 30, 300
	d.Decisions["leaf1 hop_limit"], d.Decisions["spine1 tx_error"] = 4, 40
	for _, probe := range []bool{false, true} {
		c, err := f.PathCounts(d, "tx", 1, false, nil, probe)
		w := want[1]
		if probe {
			w.ProbeDown = 334
		}
		if err != nil || c != w {
			t.Errorf("receiver 1, probe down %v: %+v (%v), want %+v", probe, c, err, w)
		}
	}
	if _, err := f.PathCounts(d, "tx", 9, false, nil, false); err == nil {
		t.Error("receiver 9 does not exist: want an error")
	}
}

func TestProbeDownSeen(t *testing.T) {
	failed := map[string]bool{"spine1:p2": true, "leaf2:p1": true}
	for _, c := range []struct {
		events []string
		want   bool
	}{
		{nil, false},
		{[]string{"spine1:p2 down (carrier)", "leaf2:p1 down (carrier)"}, false},
		{[]string{"spine1:p2 down (carrier)", "leaf2:p1 down (probe_timeout)"}, false}, // the failed link itself
		{[]string{"spine1:p1 down (probe_timeout)", "spine1:p1 up (probe_recovered)"}, true},
		{[]string{"leaf1:p2 up (probe_recovered)"}, true},
		{[]string{"leaf1:p2 degraded (probe_loss)"}, false},
		{[]string{"leaf1:p2 down (probe_loss)"}, true},
	} {
		if got := probeDownSeen(c.events, failed); got != c.want {
			t.Errorf("%q: %v, want %v", c.events, got, c.want)
		}
	}
}
