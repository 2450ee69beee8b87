package perf

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestMain runs bench control's dataplane half when the test binary is
// started as it (controlChild), as `sparsecast bench control-dataplane`
// would be.
func TestMain(m *testing.M) {
	if args := os.Getenv("SPARSECAST_TEST_CONTROL_DATAPLANE"); args != "" {
		var ring string
		var receivers, cpu int
		for i, a := range os.Args {
			switch a {
			case "--ring":
				ring = os.Args[i+1]
			case "--receivers":
				receivers, _ = strconv.Atoi(os.Args[i+1])
			case "--cpu":
				cpu, _ = strconv.Atoi(os.Args[i+1])
			}
		}
		if err := RunControlDataplane(context.Background(), ring, receivers, cpu, os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// controlChild starts this test binary as the dataplane half.
func controlChild(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), "SPARSECAST_TEST_CONTROL_DATAPLANE=1")
	return cmd
}

func TestBenchControl(t *testing.T) {
	dir := t.TempDir()
	r, err := BenchControl(context.Background(), ControlOptions{Updates: 300, Receivers: 8, CPU: -1, ShmDir: dir, Child: controlChild})
	if err != nil {
		t.Fatal(err)
	}
	if r.Applied != 300 || r.Groups != 38 || r.Rejected != 0 {
		t.Fatalf("%+v", r)
	}
	// Latencies are positive and ordered; the API path includes the push.
	if r.UpdateP50Us <= 0 || r.UpdateP99Us < r.UpdateP50Us || r.UpdateMaxUs < r.UpdateP99Us || r.APIP50Us < r.UpdateP50Us {
		t.Fatalf("latencies %+v", r)
	}
	// Nothing is left behind.
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	for _, bad := range []ControlOptions{{Updates: -1}, {Receivers: 255}, {CPU: -2}, {ShmDir: filepath.Join(dir, "missing")}, {ShmDir: dir, Child: func(args ...string) *exec.Cmd { return exec.Command("false") }}} {
		if _, err := BenchControl(context.Background(), bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// Pinned, the applier reports its stalls, and the floor they give is no
// more than the longest of them.
func TestBenchControlPinned(t *testing.T) {
	cpu := DefaultControlCPU()
	if cpu < 0 {
		t.Skip("one CPU")
	}
	r, err := BenchControl(context.Background(), ControlOptions{Updates: 500, Receivers: 8, CPU: cpu, ShmDir: t.TempDir(), Child: controlChild})
	if err != nil {
		t.Fatal(err)
	}
	if r.Applied != 500 || r.CPU != cpu {
		t.Fatalf("%+v", r)
	}
	if r.StallPct < 0 || r.StallPct > 100 || r.StallFloorP99Us < 0 {
		t.Fatalf("stalls %+v", r)
	}
}

func TestWaitQuantile(t *testing.T) {
	ms := time.Millisecond
	// One 20 ms gap in a second: 1% of arrivals wait more than 10 ms.
	if got := waitQuantile([]time.Duration{20 * ms}, time.Second, 0.99); got != 10*ms {
		t.Errorf("one gap: %v, want 10ms", got)
	}
	// Gaps too short to hold 1% of the window leave the p99 at 0.
	if got := waitQuantile([]time.Duration{ms, ms}, time.Second, 0.99); got != 0 {
		t.Errorf("short gaps: %v, want 0", got)
	}
	// Two 10 ms gaps: over x, 2*(10ms-x) <= 10ms at x = 5ms.
	if got := waitQuantile([]time.Duration{10 * ms, 10 * ms}, time.Second, 0.99); got != 5*ms {
		t.Errorf("two gaps: %v, want 5ms", got)
	}
}
