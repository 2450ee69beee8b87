package perf

import (
	"cmp"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const testpmdSample = `
  ######################## NIC statistics for port 0  ########################
  RX-packets: 303072     RX-missed: 0          RX-bytes:  0
  Throughput (since last show)
  Rx-pps:            0          Rx-bps:            0
  ######################## NIC statistics for port 1  ########################
  Rx-pps:            0          Rx-bps:            0
  ######################## NIC statistics for port 0  ########################
  Rx-pps:     21173079          Rx-bps:            0
  Tx-pps:     21173079          Tx-bps:            0
  ######################## NIC statistics for port 1  ########################
  Rx-pps:     21173080          Rx-bps:            0
  ######################## NIC statistics for port 0  ########################
  Rx-pps:     20000000          Rx-bps:            0
  ######################## NIC statistics for port 1  ########################
  Rx-pps:     20000000          Rx-bps:            0
  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 69427200       RX-dropped: 0             RX-total: 69427200
`

func TestParseTestpmdStats(t *testing.T) {
	got := ParseTestpmdStats(testpmdSample)
	want := []float64{0, 42.346159, 40}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if d := got[i] - want[i]; d > 1e-9 || d < -1e-9 {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if m := median(got[1:]); m < 41.17 || m > 41.18 {
		t.Fatalf("median %v", m)
	}
	if len(ParseTestpmdStats("EAL: nothing here\n")) != 0 {
		t.Fatal("rates from no reports")
	}
}

// TestRunTestpmd runs the real testpmd briefly where it is installed.
func TestRunTestpmd(t *testing.T) {
	if _, err := exec.LookPath("dpdk-testpmd"); err != nil {
		t.Skip("dpdk-testpmd not installed")
	}
	for _, mode := range []string{"", "mac"} {
		r, err := RunTestpmd(context.Background(), TestpmdOptions{
			EAL:   []string{"-l", "0,1", "--no-pci", "--no-huge", "-m", "1024", "--file-prefix", "sc-perf-test", "--log-level", "*:warning"},
			Vdevs: []string{"net_null0,size=64", "net_null1,size=64"}, Seconds: 2, Mode: mode,
		})
		if err != nil {
			t.Fatal(err)
		}
		if r.Mpps <= 0.1 {
			t.Fatalf("testpmd (mode %q) forwarded %v Mpps: %+v", mode, r.Mpps, r)
		}
		want := "--forward-mode=" + cmp.Or(mode, "io")
		if !strings.Contains(r.Command, want) {
			t.Fatalf("command %q lacks %s", r.Command, want)
		}
		t.Logf("testpmd %s: %.1f Mpps", want, r.Mpps)
	}
	if _, err := RunTestpmd(context.Background(), TestpmdOptions{Mode: "rxonly"}); err == nil || !strings.Contains(err.Error(), "want io or mac") {
		t.Fatalf("mode rxonly: %v", err)
	}
}

func TestParseProcCPU(t *testing.T) {
	stat := "4242 (dpdk-testpmd x) R 1 4242 4242 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 3 0 100 0 0"
	d, err := parseProcCPU(stat)
	if err != nil || d != 2670*time.Millisecond {
		t.Fatalf("parseProcCPU = %v, %v; want 2.67s", d, err)
	}
	if _, err := parseProcCPU("4242 (x) R 1"); err == nil {
		t.Fatal("a short stat line parsed")
	}
	if _, err := parseProcCPU("no name"); err == nil {
		t.Fatal("a stat line without a command name parsed")
	}
}
