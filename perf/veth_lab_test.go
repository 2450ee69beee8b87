//go:build lab

package perf

// The veth bench builds network namespaces: root only.
//   go test -tags lab -run Veth ./perf/

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/headers"
	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// vethTestPrefix is not the bench's default, so the test never removes a
// bench someone runs by hand, nor the labs' "sc-" or "sct-";
// SPARSECAST_LAB_PREFIX (as the lab tests use it) keeps several people's
// runs on one machine apart.
var vethTestPrefix = func() string {
	if p := os.Getenv("SPARSECAST_LAB_PREFIX"); p != "" {
		return p + "veth-"
	}
	return "sctveth-"
}()

func needRootForVeth(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the veth bench needs root (network namespaces)")
	}
}

// buildSparsecast builds the binary the switch runs as.
func buildSparsecast(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
	bin := filepath.Join(t.TempDir(), "sparsecast")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/sparsecast")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// checkNoNamespaces fails if any namespace with the test's prefix is left.
func checkNoNamespaces(t *testing.T) {
	t.Helper()
	left, err := lab.Namespaces(context.Background(), vethTestPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
		_ = lab.Teardown(context.Background(), vethTestPrefix, nil)
	}
}

// TestVethBench runs a short comparison and checks that each of the three
// replicators delivered to every output, and that nothing is left behind.
func TestVethBench(t *testing.T) {
	needRootForVeth(t)
	bin := buildSparsecast(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log strings.Builder
	dir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "switch.log"))
			t.Logf("switch.log:\n%s", tail(string(b), 3000))
		}
	})
	r, err := BenchVeth(ctx, VethOptions{
		Binary: bin, Outputs: 8, Seconds: 2, Size: 256, Warmup: time.Second,
		Prefix: vethTestPrefix, Dir: dir, Log: &log,
	})
	checkNoNamespaces(t)
	if err != nil {
		t.Fatalf("BenchVeth: %v\n%s", err, log.String())
	}
	runs := []*VethRun{r.Switch, r.TC, r.Smcroute}
	noMroute := kernelMroute(mrouteProc) != nil
	switch {
	case noMroute && (r.SmcrouteError != ErrNoMroute.Error() || r.Smcroute != nil):
		t.Fatalf("kernel without multicast routing: smcroute error %q, run %v; want %q and no run", r.SmcrouteError, r.Smcroute, ErrNoMroute)
	case noMroute:
		// The switch against tc is still measured, and reported.
		runs = runs[:2]
	case r.SmcrouteError != "" || r.Smcroute == nil:
		t.Fatalf("smcroute was not measured: %s", r.SmcrouteError)
	}
	for _, run := range runs {
		if run == nil {
			t.Fatal("a replicator has no result")
		}
		t.Logf("%-8s offered %8.0f pps, ingress %8.0f pps, per output %8.0f pps, CPU busy %v%% (softirq %v%%), replicator CPU %.0f%%",
			run.Replicator, run.OfferedPPS, run.IngressPPS, run.PPSPerOutput, run.CPUBusyPct, run.CPUSoftirqPct, run.ReplicatorCPUPct)
		if len(run.OutputPackets) != 8 {
			t.Fatalf("%s: %d output counts, want 8", run.Replicator, len(run.OutputPackets))
		}
		ingress := run.IngressPPS * run.Seconds
		for i, n := range run.OutputPackets {
			if n == 0 {
				t.Errorf("%s: output o%d got no packets (all: %v; offered %.0f pps)", run.Replicator, i+1, run.OutputPackets, run.OfferedPPS)
			}
			// One copy per output per frame in: more would be counted twice.
			if float64(n) > ingress*1.05+1000 {
				t.Errorf("%s: output o%d got %d packets of %.0f that came in", run.Replicator, i+1, n, ingress)
			}
		}
		if run.PPSPerOutput <= 0 || run.EgressPPS < run.PPSPerOutput || run.MinPPSPerOutput > run.MaxPPSPerOutput {
			t.Errorf("%s: inconsistent rates %+v", run.Replicator, run)
		}
		if len(run.CPUBusyPct) != len(run.CPUSoftirqPct) || len(run.CPUBusyPct) == 0 {
			t.Errorf("%s: CPU figures %v %v", run.Replicator, run.CPUBusyPct, run.CPUSoftirqPct)
		}
	}
	if r.Switch.ProcessCPUPct <= 0 {
		t.Errorf("switch process CPU %v%%: want more than 0", r.Switch.ProcessCPUPct)
	}
	if r.RatioVsTC <= 0 || r.CPURatioVsTC <= 0 || (!noMroute && r.RatioVsSmcroute <= 0) {
		t.Errorf("ratios %v %v %v: want them set", r.RatioVsTC, r.CPURatioVsTC, r.RatioVsSmcroute)
	}
	t.Logf("switch/tc %.2fx, switch/smcroute %.2fx (per CPU-second %.2fx, %.2fx)", r.RatioVsTC, r.RatioVsSmcroute, r.CPURatioVsTC, r.CPURatioVsSmcroute)
}

// TestVethBenchCleansUpOnError leaves a namespace behind as a crashed run
// would, then runs the bench with a switch binary that fails at once: the
// leftover must be cleared first (or building would fail on it), the error
// must name the switch, and no namespace may remain.
func TestVethBenchCleansUpOnError(t *testing.T) {
	needRootForVeth(t)
	if out, err := exec.Command("ip", "netns", "add", vethTestPrefix+"gen").CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	broken := filepath.Join(t.TempDir(), "broken-switch")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'broken on purpose' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	_, err := BenchVeth(ctx, VethOptions{Binary: broken, Seconds: 1, Prefix: vethTestPrefix, Dir: dir, SkipSmcroute: true})
	checkNoNamespaces(t)
	if err == nil {
		t.Fatal("BenchVeth with a failing switch returned no error")
	}
	if !strings.Contains(err.Error(), "switch") {
		t.Errorf("error %q does not name the switch", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "switch.log")); !strings.Contains(string(b), "broken on purpose") {
		t.Errorf("switch.log holds %q, want the switch's output", b)
	}
}

func TestVethOptionErrors(t *testing.T) {
	for _, o := range []VethOptions{
		{},                                     // no binary
		{Binary: "/nonexistent/sparsecast"},    // missing binary
		{Binary: "/", Outputs: 8},              // a directory
		{Binary: "/bin/sh", Outputs: 31},       // too many outputs
		{Binary: "/bin/sh", Size: 40},          // too small a frame
		{Binary: "/bin/sh", Size: 9000},        // not one Ethernet frame
		{Binary: "/bin/sh", Prefix: "Bad_Pfx"}, // prefix could match others
	} {
		if _, err := BenchVeth(context.Background(), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

// TestVethFrameAndConfig checks the bench frame is SMH DATA for receivers
// 1..N of the size asked, and the switch configuration loads.
func TestVethFrameAndConfig(t *testing.T) {
	f, err := VethFrame(8, 256)
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != 256 || f[0] != 0x01 || f[1] != 0x00 || f[2] != 0x5e {
		t.Fatalf("frame of %d bytes to %x", len(f), f[:6])
	}
	smh := headers.SMH(f[14+20+8:])
	if err := smh.Validate(); err != nil {
		t.Fatalf("SMH: %v", err)
	}
	if _, err := VethFrame(8, 30); err == nil {
		t.Error("a 30-byte frame was built")
	}
	for i, cpu := range []int{-1, 0} {
		ring := []string{"", "v2"}[i]
		path := filepath.Join(t.TempDir(), "switch.yaml")
		if err := os.WriteFile(path, VethSwitchConfig(8, cpu, ring, ""), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := dataplane.LoadConfig(path)
		if err != nil {
			t.Fatalf("cpu %d: %v", cpu, err)
		}
		if len(cfg.Ports) != 9 || cfg.RouteEntries() != 8 {
			t.Errorf("cpu %d: %d ports, %d routes", cpu, len(cfg.Ports), cfg.RouteEntries())
		}
		for _, p := range cfg.Ports {
			if p.RxRing != ring {
				t.Errorf("cpu %d: port %s rx_ring %q, want %q", cpu, p.Name, p.RxRing, ring)
			}
		}
	}
}

func TestVethParsers(t *testing.T) {
	stat := "cpu  10 0 10 100 0 0 5 0 0 0\n" +
		"cpu0 4 1 5 50 2 0 3 0 0 0\n" +
		"cpu1 6 0 5 50 0 1 2 0 0 0\n" +
		"intr 1 2 3\n"
	c, err := parseCPUTimes([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	want := []cpuTimes{{busy: 13, softirq: 3, total: 65}, {busy: 14, softirq: 2, total: 64}}
	if len(c) != 2 || c[0] != want[0] || c[1] != want[1] {
		t.Errorf("parseCPUTimes = %+v, want %+v", c, want)
	}
	if _, err := parseCPUTimes([]byte("cpu0 x y\n")); err == nil {
		t.Error("no per-CPU lines: no error")
	}

	u, s, err := parseProcessTicks("123 (sparse cast) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0")
	if err != nil || u != 250 || s != 30 {
		t.Errorf("parseProcessTicks = %d, %d, %v; want 250, 30", u, s, err)
	}
	if _, _, err := parseProcessTicks("123 (x) S 1"); err == nil {
		t.Error("short stat: no error")
	}

	for cpu, want := range map[int]string{0: "00000001", 1: "00000002", 33: "00000002,00000000"} {
		if got := cpuMask(cpu); got != want {
			t.Errorf("cpuMask(%d) = %q, want %q", cpu, got, want)
		}
	}

	// As a little-endian host prints 239.1.1.1 and 10.99.0.2.
	cache := "Group    Origin   Iif     Pkts    Bytes    Wrong Oifs\n" +
		"010101EF 0200630A 0          5      1280        0  1:1    2:1    3:1\n"
	if n := mrCacheOIFs(cache, "239.1.1.1", "10.99.0.2"); n != 3 {
		t.Errorf("mrCacheOIFs = %d, want 3", n)
	}
	if n := mrCacheOIFs(cache, "239.1.1.2", "10.99.0.2"); n != -1 {
		t.Errorf("mrCacheOIFs of a missing route = %d, want -1", n)
	}
}
