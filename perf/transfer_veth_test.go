package perf

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// A step's carried rate is its slowest receiver's: received over the
// sending time plus that receiver's delay growth, never above the rate
// sent.
func TestCarried(t *testing.T) {
	for _, tc := range []struct {
		name          string
		sent          uint64
		pps           float64
		counts        []lab.ReceiverCount
		want, wantGrw float64
	}{
		{"nothing sent", 0, 0, []lab.ReceiverCount{{Received: 0}}, 0, 0},
		{"kept up", 10000, 10000, []lab.ReceiverCount{{Received: 10000, LatencyMin: time.Millisecond, LatencyMax: time.Millisecond}}, 10000, 0},
		// 10,000 sent in 1 s arriving over 1 s + 0.25 s.
		{"queued", 10000, 10000, []lab.ReceiverCount{
			{Received: 10000, LatencyMin: time.Millisecond, LatencyMax: 2 * time.Millisecond},
			{Received: 10000, LatencyMin: time.Millisecond, LatencyMax: 251 * time.Millisecond},
		}, 8000, 250},
		// Losses count against it too: 9,000 of 10,000 over 1 s.
		{"lost", 10000, 10000, []lab.ReceiverCount{{Received: 9000, Lost: 1000}}, 9000, 0},
		{"no receivers", 5000, 5000, nil, 5000, 0},
	} {
		got, grw := carried(tc.sent, tc.pps, tc.counts)
		if math.Abs(got-tc.want) > 1e-6 || math.Abs(grw-tc.wantGrw) > 1e-6 {
			t.Errorf("%s: carried %v, growth %v ms: want %v, %v", tc.name, got, grw, tc.want, tc.wantGrw)
		}
	}
}

// The table lists the steps by rate with what each carried.
func TestTransferBenchTable(t *testing.T) {
	r := &TransferBenchResult{Fabric: "testbed x-", Sender: "h11", Receivers: []string{"h21"}, PayloadBytes: CapacityPayload, MaxLoss: 0.001,
		Steps: []CapacityStep{
			{RatePPS: 20000, SentPPS: 19000, CarriedPPS: 6000, DelayGrowthMs: 900, WorstLoss: 0.3},
			{RatePPS: 10000, SentPPS: 9900, CarriedPPS: 7000, DelayGrowthMs: 400, OK: true, MBps: 9.8},
		}, CapacityPPS: 7000, CapacityMBps: 9.8}
	tab := r.Table()
	i, j := strings.Index(tab, "      10000        9900         7000"), strings.Index(tab, "      20000       19000         6000")
	if i < 0 || j < 0 || i > j || !strings.Contains(tab, "capacity 7000 packets/s = 9.8 MB/s") {
		t.Errorf("table:\n%s", tab)
	}
}
