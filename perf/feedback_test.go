package perf

import (
	"context"
	"testing"
	"time"
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
