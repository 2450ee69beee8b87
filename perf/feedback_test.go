package perf

import (
	"context"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/control"
)

func runBenchFeedback(t *testing.T, agg bool) {
	r, err := BenchFeedback(context.Background(), FeedbackOptions{
		Receivers: 8, Loss: 0.05, Aggregate: agg, Size: 1 << 20, HostsPerLeaf: 3, Timeout: 40 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("aggregate=%v: %+v", agg, *r)
	if !r.DeliveredOK {
		t.Fatalf("aggregate=%v: delivered_ok false: failed %v, errors %v", agg, r.FailedReceiver, r.Errors)
	}
	if r.Leaves != 3 || r.FaultDrops == 0 || r.Retransmissions == 0 || r.FeedbackPkts == 0 || r.DataPkts < (1<<20)/1500 {
		t.Errorf("aggregate=%v: implausible counts %+v", agg, *r)
	}
	if !agg && (r.AggregatedACKs != 0 || r.NACKsSuppressed != 0) {
		t.Errorf("aggregation off, but %d aggregated ACKs reached the sender and %d NACKs were suppressed", r.AggregatedACKs, r.NACKsSuppressed)
	}
}

// TestBenchFeedback sends 1 MiB to 8 receivers over a leaf-spine fabric
// with 5% loss on every host-facing port, switches forwarding feedback
// unchanged: every receiver must get the file byte-exact.
func TestBenchFeedback(t *testing.T) { runBenchFeedback(t, false) }

// TestBenchFeedbackAggregated runs the same transfer with aggregation in
// every switch: it must deliver as well, with fewer feedback packets at the
// sender.
func TestBenchFeedbackAggregated(t *testing.T) {
	runBenchFeedback(t, true)
}

// The veth variant's fabric: the sender first on leaf1, receivers after it,
// hosts-per-leaf to a leaf, every host with its own address.
func TestFeedbackTopology(t *testing.T) {
	y, names := feedbackTopology(9, 2, 4)
	topo, err := control.ParseTopology([]byte(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if len(names) != 9 || names[0] != "r1-2" || names[8] != "r3-2" {
		t.Fatalf("receivers %v", names)
	}
	if len(topo.Switches) != 5 || len(topo.Hosts) != 10 || topo.Hosts[0].Name != "tx" || !topo.Hosts[0].Receiver {
		t.Fatalf("%d switches, %d hosts, first %+v", len(topo.Switches), len(topo.Hosts), topo.Hosts[0])
	}
	ips := map[string]bool{}
	for _, h := range topo.Hosts {
		for _, ip := range h.IPs {
			if ips[ip.String()] {
				t.Fatalf("address %s twice", ip)
			}
			ips[ip.String()] = true
		}
	}
}
