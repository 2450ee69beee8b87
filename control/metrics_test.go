package control

import (
	"context"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type depthFake struct{ fakeRing }

func (d *depthFake) Depths() (int, int) { return 3, 1 }

// The exposition of a server in a known state, checked line by line.
const wantMetrics = `
# HELP sparsecast_control_api_errors_total API requests refused, by error class: unauthorized, bad_id, bad_body, bad_member, unknown_group, unknown_switch, group_limit, too_large, not_found, method_not_allowed, store_unavailable, conflict.
# TYPE sparsecast_control_api_errors_total counter
sparsecast_control_api_errors_total{class="bad_body"} 0
sparsecast_control_api_errors_total{class="bad_id"} 0
sparsecast_control_api_errors_total{class="bad_member"} 0
sparsecast_control_api_errors_total{class="conflict"} 0
sparsecast_control_api_errors_total{class="group_limit"} 0
sparsecast_control_api_errors_total{class="method_not_allowed"} 0
sparsecast_control_api_errors_total{class="not_found"} 0
sparsecast_control_api_errors_total{class="store_unavailable"} 0
sparsecast_control_api_errors_total{class="too_large"} 0
sparsecast_control_api_errors_total{class="unauthorized"} 2
sparsecast_control_api_errors_total{class="unknown_group"} 0
sparsecast_control_api_errors_total{class="unknown_switch"} 0
# HELP sparsecast_control_generation_applied The generation a switch's dataplane last applied.
# TYPE sparsecast_control_generation_applied gauge
sparsecast_control_generation_applied{switch="leaf1"} 12
sparsecast_control_generation_applied{switch="spine1"} 0
# HELP sparsecast_control_pushes_total Batches pushed to a switch's command ring, by kind: full (a full resync), routes (a route delta), groups (a group delta).
# TYPE sparsecast_control_pushes_total counter
sparsecast_control_pushes_total{kind="full",switch="leaf1"} 1
sparsecast_control_pushes_total{kind="full",switch="spine1"} 0
sparsecast_control_pushes_total{kind="groups",switch="leaf1"} 10
sparsecast_control_pushes_total{kind="groups",switch="spine1"} 0
sparsecast_control_pushes_total{kind="routes",switch="leaf1"} 1
sparsecast_control_pushes_total{kind="routes",switch="spine1"} 0
# HELP sparsecast_control_rejected_batches_total Batches a switch's dataplane rejected (each is followed by a full resync).
# TYPE sparsecast_control_rejected_batches_total counter
sparsecast_control_rejected_batches_total{switch="leaf1"} 0
sparsecast_control_rejected_batches_total{switch="spine1"} 0
# HELP sparsecast_control_reroute_events_total REROUTED events from a switch: its dataplane moved entries to their backups.
# TYPE sparsecast_control_reroute_events_total counter
sparsecast_control_reroute_events_total{switch="leaf1"} 2
sparsecast_control_reroute_events_total{switch="spine1"} 0
# HELP sparsecast_control_ring_depth Records waiting in a switch's ring (commands: for the dataplane; events: for control).
# TYPE sparsecast_control_ring_depth gauge
sparsecast_control_ring_depth{ring="commands",switch="leaf1"} 3
sparsecast_control_ring_depth{ring="events",switch="leaf1"} 1
# HELP sparsecast_control_ring_faults_total Memory faults in a switch's mapped ring file (it shrank under the mapping): the ring was dropped and reopened.
# TYPE sparsecast_control_ring_faults_total counter
sparsecast_control_ring_faults_total{switch="leaf1"} 0
sparsecast_control_ring_faults_total{switch="spine1"} 0
# HELP sparsecast_control_update_latency_seconds From handing a batch to the ring to the dataplane publishing it (CLOCK_MONOTONIC).
# TYPE sparsecast_control_update_latency_seconds histogram
sparsecast_control_update_latency_seconds_bucket{le="1e-06"} 0
sparsecast_control_update_latency_seconds_bucket{le="2e-06"} 0
sparsecast_control_update_latency_seconds_bucket{le="5e-06"} 1
sparsecast_control_update_latency_seconds_bucket{le="1e-05"} 1
sparsecast_control_update_latency_seconds_bucket{le="2e-05"} 1
sparsecast_control_update_latency_seconds_bucket{le="5e-05"} 1
sparsecast_control_update_latency_seconds_bucket{le="0.0001"} 1
sparsecast_control_update_latency_seconds_bucket{le="0.0002"} 1
sparsecast_control_update_latency_seconds_bucket{le="0.0005"} 1
sparsecast_control_update_latency_seconds_bucket{le="0.001"} 2
sparsecast_control_update_latency_seconds_bucket{le="0.01"} 2
sparsecast_control_update_latency_seconds_bucket{le="0.1"} 2
sparsecast_control_update_latency_seconds_bucket{le="1"} 2
sparsecast_control_update_latency_seconds_bucket{le="+Inf"} 3
sparsecast_control_update_latency_seconds_sum 2.001004
sparsecast_control_update_latency_seconds_count 3
`

func TestMetricsExposition(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	s, err := NewServer(topo, ServerOptions{Switches: []string{"spine1", "leaf1"}, RingDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	leaf1 := s.byName["leaf1"]
	leaf1.ring = &depthFake{}
	leaf1.pushes = [numPushKinds]uint64{1, 1, 10}
	leaf1.applied = 12
	leaf1.reroutes = 2
	// APPLIED events 4µs, 1ms and 2s after their pushes.
	for i, d := range []uint64{4000, 1e6, 2e9} {
		gen := uint64(i + 1)
		leaf1.pending[gen] = pendingPush{gen: gen, pushed: 1000}
		s.handleEvent(leaf1, Event{Kind: "applied", Generation: gen, Nanos: 1000 + d})
	}
	s.apiErrs[classIndex("unauthorized")].Add(2)
	if err := testutil.CollectAndCompare(s.Collector(), strings.NewReader(wantMetrics)); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.CollectAndLint(s.Collector()); err != nil || len(n) != 0 {
		t.Fatalf("lint: %v %v", n, err)
	}
}

func TestServeMetrics(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	s, err := NewServer(topo, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := ServeMetrics(ctx, "127.0.0.1:0", s.Collector())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `sparsecast_control_pushes_total{kind="full",switch="spine2"} 0`) {
		t.Fatalf("scrape:\n%s", body)
	}
	// The process and Go collectors, as on the switch's /metrics.
	for _, name := range []string{"process_start_time_seconds ", "go_goroutines ", "process_open_fds "} {
		if !strings.Contains(string(body), "\n"+name) {
			t.Errorf("scrape lacks %s", name)
		}
	}
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

func TestMetricsHelpListsLabelValues(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	s, err := NewServer(topo, ServerOptions{Switches: []string{"spine1", "leaf1"}})
	if err != nil {
		t.Fatal(err)
	}
	s.byName["leaf1"].ring = &depthFake{}
	assertHelpListsLabelValues(t, s.Collector(), "switch")
}
