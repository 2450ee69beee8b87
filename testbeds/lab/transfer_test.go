//go:build lab

package lab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runTransfer(t *testing.T, o TransferOptions) *TransferResult {
	bin := buildBinary(t)
	cleanup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log strings.Builder
	o.Binary, o.Prefix, o.Dir = bin, labPrefix, t.TempDir()
	if d := os.Getenv("SPARSECAST_LAB_DIR"); d != "" {
		// Keep configs and logs for a post-mortem: a directory per run
		// (a -count loop's runs too), removed when the run passes.
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dir, err := os.MkdirTemp(d, strings.ReplaceAll(t.Name(), "/", "_")+"-")
		if err != nil {
			t.Fatal(err)
		}
		o.Dir = dir
		t.Cleanup(func() {
			if !t.Failed() {
				os.RemoveAll(dir)
			}
		})
	}
	o.Log = func(format string, args ...any) { log.WriteString(strings.TrimSpace(format) + "\n") }
	res, err := Transfer(ctx, o)
	if err != nil {
		t.Fatalf("Transfer: %v\n%s", err, log.String())
	}
	t.Logf("\n%s\nsender: %s", res.Table(), res.Sender)
	if !res.DeliveredOK || len(res.Receivers) != 4 {
		t.Fatalf("delivered_ok %v, %d receivers (logs in %s)", res.DeliveredOK, len(res.Receivers), res.Dir)
	}
	for _, r := range res.Receivers {
		if !r.OK || r.Bytes != int64(res.Size) {
			t.Errorf("receiver %+v", r)
		}
	}
	if len(res.Sender) == 0 || !strings.Contains(string(res.Sender), `"complete": true`) {
		t.Errorf("sender summary %s", res.Sender)
	}
	// Every receiver's interface was sampled while the file went out (the
	// last sample after the sender's end: all of it), and it plots.
	if len(res.Progress) != len(res.Receivers) {
		t.Fatalf("progress of %d receivers, want %d", len(res.Progress), len(res.Receivers))
	}
	for _, p := range res.Progress {
		if n := len(p.Samples); n < 2 {
			t.Errorf("receiver %s: %d progress samples", p.Host, n)
		} else if last := p.Samples[n-1]; last.Bytes < uint64(res.Size) {
			t.Errorf("receiver %s: last sample %+v: want at least %d bytes", p.Host, last, res.Size)
		}
	}
	plot := filepath.Join(res.Dir, "progress.png")
	if err := PlotProgress(plot, "transfer", res.Progress, res.FailAt, "link "+res.FailedLink+" down"); err != nil {
		t.Errorf("plot: %v", err)
	}
	return res
}

// TestTransferLoss copies 4 MiB to 4 receivers with 5% loss on their ports.
func TestTransferLoss(t *testing.T) { runTransfer(t, TransferOptions{}) }

// TestTransferSmall is a quick smoke test without loss.
func TestTransferSmall(t *testing.T) { runTransfer(t, TransferOptions{Size: 200_000, Loss: -1}) }

// TestTransferLinkFailure fails a spine link mid-transfer, with no control
// process: the spine U-turns the affected receivers' copies until the end,
// and the copy still completes byte-exact. (It used to stall about half the
// time: switches credited the receiver behind the failed link with packets
// still on their way round the detour, TestAggregateLongerPathOnSamePort
// and TestAggregateNamesOnlyReceiversHeardFrom in dataplane.)
func TestTransferLinkFailure(t *testing.T) {
	runTransfer(t, TransferOptions{FailLink: "spine1:p2", FailAfter: 400 * time.Millisecond, MaxRate: 2000})
}

// TestTransferLinkFailureControl is TestTransferLinkFailure with a control
// process running: the switches report the carrier loss, and control
// recomputes and pushes new tables mid-transfer.
func TestTransferLinkFailureControl(t *testing.T) {
	res := runTransfer(t, TransferOptions{FailLink: "spine1:p2", FailAfter: 400 * time.Millisecond, MaxRate: 2000, Control: true})
	if res.SwitchesUpdated == 0 {
		t.Errorf("no switch applied a table from control after the link went down")
	}
}

// TestTransferSilentFailure: both ends of a spine link on the path drop
// every frame for 300 ms mid-transfer, carrier up (runtime faults, `switch
// fault`), with no control process; the copy completes byte-exact.
func TestTransferSilentFailure(t *testing.T) { runSilentFailure(t, false) }

// TestTransferSilentFailureControl is the same with a control process.
func TestTransferSilentFailureControl(t *testing.T) { runSilentFailure(t, true) }

func runSilentFailure(t *testing.T, control bool) {
	res := runTransfer(t, TransferOptions{FailLink: "spine1:p2", FailAfter: 400 * time.Millisecond, Silent: 300 * time.Millisecond,
		MaxRate: 2000, Control: control})
	// spine1 has no configured loss: its fault_injected drops are the
	// silent failure's (its probes at least, every 20 ms).
	if res.FaultDrops["spine1"] == 0 {
		t.Errorf("spine1 dropped nothing as fault_injected: %v", res.FaultDrops)
	}
}

// TestTransferSpoofedACK: a host on the receivers' leaf that is not in the
// set forges ACKs for the receivers (their own, and aggregates naming all
// of them) throughout a lossy transfer. The switch drops them as spoofed,
// and the copy is byte-exact: had a forged ACK reached the source, it would
// have freed packets a receiver still lacked.
func TestTransferSpoofedACK(t *testing.T) {
	topo := strings.Replace(transferTopology, "{name: leaf2, role: leaf, id: 1012, ports: [p1, p2, h1, h2]}",
		"{name: leaf2, role: leaf, id: 1012, ports: [p1, p2, h1, h2, h3]}", 1)
	topo += "  - {name: mal, attach: leaf2:h3, id: 3, ips: [10.0.2.3]}\n"
	path := filepath.Join(t.TempDir(), "spoof.yaml")
	if err := os.WriteFile(path, []byte(topo), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runTransfer(t, TransferOptions{Topology: path, Receivers: []string{"r1", "r2", "r3", "r4"}, Spoofer: "mal", MaxRate: 3000})
	if res.SpoofedSent == 0 || res.SpoofedDropped == 0 || res.SpoofedDropped > uint64(res.SpoofedSent) {
		t.Fatalf("forged ACKs sent %d, dropped as spoofed %d", res.SpoofedSent, res.SpoofedDropped)
	}
}
