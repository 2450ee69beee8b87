//go:build lab

package perf

// go test -tags lab -run FeedbackVeth ./perf/ (root; in make test-lab).

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// TestBenchFeedbackVeth runs `bench feedback --veth` small: 4 receivers on
// three leaves, 5% loss, 1 MiB, with aggregation and without. Both deliver
// byte-exact; the counts come from the sender, the receivers and the
// switches' metrics, and only the aggregating run suppresses NACKs.
func TestBenchFeedbackVeth(t *testing.T) {
	needRootForVeth(t)
	bin := filepath.Join(t.TempDir(), "sparsecast")
	if err := lab.BuildBinary(bin); err != nil {
		t.Fatal(err)
	}
	for _, agg := range []bool{true, false} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		r, err := BenchFeedbackVeth(ctx, FeedbackOptions{Receivers: 4, HostsPerLeaf: 2, Loss: 0.05, Aggregate: agg, Size: 1 << 20, Prefix: feedbackTestPrefix()}, bin, t.Logf)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("aggregate %v: %+v", agg, r)
		if !r.DeliveredOK || len(r.FailedReceiver) != 0 || r.Ports != "veth" || r.Leaves != 3 {
			t.Fatalf("aggregate %v: delivered_ok %v, failed %v, ports %q, %d leaves", agg, r.DeliveredOK, r.FailedReceiver, r.Ports, r.Leaves)
		}
		if r.DataPkts == 0 || r.FeedbackPkts == 0 || r.ReceiverACKs == 0 || r.FaultDrops == 0 || r.GoodputMbps <= 0 {
			t.Fatalf("aggregate %v: counts missing: %+v", agg, r)
		}
		if r.DataDatagrams != r.DataPkts+r.Retransmissions || r.FeedbackPerD != float64(r.FeedbackPkts)/float64(r.DataDatagrams) {
			t.Fatalf("aggregate %v: datagrams %d, per datagram %v: %+v", agg, r.DataDatagrams, r.FeedbackPerD, r)
		}
		if agg != (r.AggregatedACKs > 0) || !agg && r.NACKsSuppressed != 0 {
			t.Fatalf("aggregate %v: %d aggregated ACKs, %d NACKs suppressed", agg, r.AggregatedACKs, r.NACKsSuppressed)
		}
	}
}

// feedbackTestPrefix keeps runs of this test by several people on one
// machine apart: SPARSECAST_LAB_PREFIX (as the lab tests use it) and
// "fb-", or the benchmark's own prefix.
func feedbackTestPrefix() string {
	if p := os.Getenv("SPARSECAST_LAB_PREFIX"); p != "" {
		return p + "fb-"
	}
	return FeedbackVethPrefix
}
