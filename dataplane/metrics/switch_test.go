package metrics

import (
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/headers"
)

const golden = "testdata/switch.golden"

var testPorts = []string{"eth0", "eth1", "mem0"}

// testCores fills two workers' counters with values whose sums are written
// by hand in testdata/switch.golden, so a collector that sums wrong (one core
// only, a port shifted, buckets left non-cumulative) fails the comparison.
func testCores() []*dataplane.CoreCounters {
	c0 := dataplane.NewCoreCounters(len(testPorts))
	c1 := dataplane.NewCoreCounters(len(testPorts))

	setPort := func(c *dataplane.CoreCounters, i int, rxp, rxb, txp, txb uint64) {
		c.Ports[i].RxPackets.Store(rxp)
		c.Ports[i].RxBytes.Store(rxb)
		c.Ports[i].TxPackets.Store(txp)
		c.Ports[i].TxBytes.Store(txb)
	}
	setPort(c0, 0, 10, 1000, 1, 100)
	setPort(c0, 1, 2, 200, 20, 2000)
	setPort(c1, 0, 5, 500, 3, 300)
	setPort(c1, 1, 7, 700, 11, 1100)
	setPort(c1, 2, 1, 64, 0, 0)

	c0.Drops[dataplane.DropNoRoute].Store(3)
	c0.Drops[dataplane.DropQueueFull].Store(1)
	c1.Drops[dataplane.DropNoRoute].Store(4)
	c1.Drops[dataplane.DropTxError].Store(2)
	c1.Drops[dataplane.DropNotSMH].Store(5)

	// Core 0: two packets of fan-out 1, one of 3 (le 4), one of 300 (+Inf).
	c0.FanoutBuckets[0].Store(2)
	c0.FanoutBuckets[2].Store(1)
	c0.FanoutBuckets[len(dataplane.FanoutBounds)].Store(1)
	c0.FanoutSum.Store(2 + 3 + 300)
	// Core 1: three packets of fan-out 2, one of 10 (le 16).
	c1.FanoutBuckets[1].Store(3)
	c1.FanoutBuckets[4].Store(1)
	c1.FanoutSum.Store(6 + 10)

	// Feedback: ABORTs on both cores (the type the counters grew last),
	// and streams expired and restarted.
	c0.Feedback[headers.TypeABORT][dataplane.FbIn].Store(3)
	c1.Feedback[headers.TypeABORT][dataplane.FbIn].Store(1)
	c0.Feedback[headers.TypeABORT][dataplane.FbUp].Store(3)
	c0.StreamsExpired.Store(2)
	c1.StreamsExpired.Store(1)
	c0.StreamsRestarted.Store(1)
	c1.StreamsRestarted.Store(4)

	c0.Polls.Store(100)
	c0.Sleeps.Store(7)
	c1.Polls.Store(50)
	return []*dataplane.CoreCounters{c0, c1}
}

func testPortStats() []PortStat {
	return []PortStat{{Port: "eth0", KernelDrops: 12}, {Port: "eth1", TooBig: 5}}
}

func compareGolden(t *testing.T, c prometheus.Collector) error {
	t.Helper()
	f, err := os.Open(golden)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return testutil.CollectAndCompare(c, f)
}

func TestSwitchCollectorGolden(t *testing.T) {
	c := NewSwitchCollector("sw1", testPorts, testCores(), WithPortStats(testPortStats))
	if err := compareGolden(t, c); err != nil {
		t.Fatal(err)
	}
}

// TestSwitchCollectorGoldenDetectsChange guards the golden test itself: one
// packet more on one core must make the comparison fail.
func TestSwitchCollectorGoldenDetectsChange(t *testing.T) {
	cores := testCores()
	cores[1].Ports[1].TxPackets.Add(1)
	c := NewSwitchCollector("sw1", testPorts, cores, WithPortStats(testPortStats))
	err := compareGolden(t, c)
	if err == nil {
		t.Fatal("golden comparison passed with a changed counter")
	}
	if !strings.Contains(err.Error(), `sparsecast_switch_port_transmit_packets_total{port="eth1"} 32`) {
		t.Errorf("diff does not show the changed sample:\n%v", err)
	}
}

func TestSwitchCollectorLint(t *testing.T) {
	c := NewSwitchCollector("sw1", testPorts, testCores(), WithPortStats(testPortStats))
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestSwitchCollectorZero checks that every drop reason is exported even
// when nothing was dropped, that kernel drops are absent without a hook, and
// that the fan-out histogram exists with no observations.
func TestSwitchCollectorZero(t *testing.T) {
	cores := []*dataplane.CoreCounters{dataplane.NewCoreCounters(1)}
	c := NewSwitchCollector("sw0", []string{"p0"}, cores)
	want := map[string]int{
		"sparsecast_switch_info":                             1,
		"sparsecast_switch_drops_total":                      int(dataplane.NumDropReasons),
		"sparsecast_switch_port_receive_packets_total":       1,
		"sparsecast_switch_port_receive_bytes_total":         1,
		"sparsecast_switch_port_transmit_packets_total":      1,
		"sparsecast_switch_port_transmit_bytes_total":        1,
		"sparsecast_switch_port_kernel_drops_total":          0,
		"sparsecast_switch_replication_fanout":               1,
		"sparsecast_switch_worker_polls_total":               1,
		"sparsecast_switch_worker_sleeps_total":              1,
		"sparsecast_switch_feedback_total":                   4 * dataplane.NumFbActions,
		"sparsecast_switch_feedback_streams_evicted_total":   1,
		"sparsecast_switch_feedback_streams_expired_total":   1,
		"sparsecast_switch_feedback_streams_restarted_total": 1,
	}
	for name, n := range want {
		if got := testutil.CollectAndCount(c, name); got != n {
			t.Errorf("%s: %d samples, want %d", name, got, n)
		}
	}
	all := 11 + int(dataplane.NumDropReasons) + 4*dataplane.NumFbActions
	if got := testutil.CollectAndCount(c); got != all {
		t.Errorf("%d metrics in all, want %d", got, all)
	}
}

type kdPort struct {
	dataplane.Port // nil: only Name and KernelDrops are called
	name           string
	drops          uint64
}

func (p kdPort) Name() string        { return p.name }
func (p kdPort) KernelDrops() uint64 { return p.drops }

// osPort also counts oversize receive drops.
type osPort struct {
	kdPort
	oversize uint64
}

func (p osPort) RxOversize() uint64 { return p.oversize }

// txPort also counts oversize transmit drops.
type txPort struct {
	osPort
	txOversize uint64
}

func (p txPort) TxOversize() uint64 { return p.txOversize }

type plainPort struct {
	dataplane.Port
	name string
}

func (p plainPort) Name() string { return p.name }

func TestPortStatsOf(t *testing.T) {
	ports := []dataplane.Port{kdPort{name: "a", drops: 3}, plainPort{name: "b"}, kdPort{name: "c"}, osPort{kdPort{name: "d"}, 7},
		txPort{osPort{kdPort{name: "e"}, 2}, 5}}
	got := PortStatsOf(ports)()
	want := []PortStat{{Port: "a", KernelDrops: 3}, {Port: "c"}, {Port: "d", TooBig: 7}, {Port: "e", TooBig: 7}}
	if len(got) != len(want) {
		t.Fatalf("PortStatsOf = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("PortStatsOf = %v, want %v", got, want)
		}
	}
}

func TestNewSwitchCollectorRejectsBadPortNames(t *testing.T) {
	for _, ports := range [][]string{{"a", "a"}, {""}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("ports %q: no panic", ports)
				}
			}()
			NewSwitchCollector("sw", ports, nil)
		}()
	}
}

// TestSwitchCollectorConcurrent scrapes while workers count, for -race.
func TestSwitchCollectorConcurrent(t *testing.T) {
	cores := []*dataplane.CoreCounters{dataplane.NewCoreCounters(2), dataplane.NewCoreCounters(2)}
	c := NewSwitchCollector("sw", []string{"a", "b"}, cores)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, core := range cores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// One writer per core, as in the workers.
				core.Ports[0].RxPackets.Store(core.Ports[0].RxPackets.Load() + 1)
				core.FanoutBuckets[1].Store(core.FanoutBuckets[1].Load() + 1)
				core.Polls.Store(core.Polls.Load() + 1)
			}
		}()
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	var last float64
	for range 50 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var v float64
		for _, mf := range mfs {
			if mf.GetName() == "sparsecast_switch_port_receive_packets_total" {
				v = mf.GetMetric()[0].GetCounter().GetValue() // port "a" sorts first
			}
		}
		if v < last {
			t.Fatalf("receive packets went backwards: %v after %v", v, last)
		}
		last = v
	}
	close(stop)
	wg.Wait()
}

// assertHelpListsLabelValues checks that the HELP of every metric names
// each value its enumerated labels take (all but the free ones, whose
// values come from the configuration: switch, port and worker names), so a
// reader of /metrics learns the values without the source.
func assertHelpListsLabelValues(t *testing.T, c prometheus.Collector, free ...string) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		missing := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(free, lp.GetName()) && !strings.Contains(mf.GetHelp(), lp.GetValue()) {
					missing[lp.GetName()+"="+lp.GetValue()] = true
				}
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s: HELP %q does not list %v", mf.GetName(), mf.GetHelp(), slices.Sorted(maps.Keys(missing)))
		}
	}
}

func TestSwitchCollectorHelpListsLabelValues(t *testing.T) {
	c := NewSwitchCollector("sw1", testPorts, testCores(), WithPortStats(testPortStats),
		WithRing(&dataplane.RingCounters{}), WithFaults(&dataplane.FaultCounters{}), WithReloads(&dataplane.ReloadCounters{}))
	assertHelpListsLabelValues(t, c, "port", "worker", "name")
}
