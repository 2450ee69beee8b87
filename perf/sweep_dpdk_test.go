//go:build dpdk

package perf

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"
)

// dpdkTestEAL runs EAL on hugepages when SPARSECAST_DPDK_HUGE_DIR names a
// hugetlbfs mount (make test-dpdk reserves pages and mounts one through
// testbeds/dpdk/with-hugepages.sh), else without.
func dpdkTestEAL(lcores, prefix string) []string {
	eal := []string{"-l", lcores, "--no-pci", "--file-prefix", prefix, "--log-level", "*:warning"}
	if dir := os.Getenv("SPARSECAST_DPDK_HUGE_DIR"); dir != "" {
		return append(eal, "--huge-dir", dir, "--huge-unlink")
	}
	return append(eal, "--no-huge", "-m", "1024")
}

// TestSweepDPDK sweeps a small grid on net_null devices in one process:
// each point on devices of its own (a device name is probed once per
// process), a fan-out beyond DPDK's port limit skipped, every measured
// point replicating fan-out copies per packet.
func TestSweepDPDK(t *testing.T) {
	r, err := Sweep(context.Background(), SweepOptions{Backend: BackendDPDK, Fanouts: []int{2, 9, 40}, Sizes: []int{256, 4096},
		SecondsPerPoint: 0.2, CPU: 0, EAL: dpdkTestEAL("0", "sc-sweep-test")})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Points) != 6 {
		t.Fatalf("%d points, want 6: %+v", len(r.Points), r.Points)
	}
	for _, p := range r.Points {
		if p.Fanout == 40 {
			if !strings.HasPrefix(p.Skipped, SkipPorts) {
				t.Errorf("fan-out 40 (41 ports): %+v, want skipped for the port limit", p)
			}
			continue
		}
		if p.Skipped != "" || p.IngressMpps <= 0 {
			t.Errorf("point %+v: not measured", p)
			continue
		}
		if ratio := p.EgressMpps / p.IngressMpps; math.Abs(ratio-float64(p.Fanout)) > 0.05*float64(p.Fanout) {
			t.Errorf("point %+v: %.2f copies per packet, want %d", p, ratio, p.Fanout)
		}
	}
	if r.Cores == nil || r.Cores.Cores <= 0 {
		t.Errorf("no core count from fan-out 9, 4096 bytes: %+v", r.Cores)
	}
}
