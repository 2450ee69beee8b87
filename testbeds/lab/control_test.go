//go:build lab

package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sparsecast/sparsecast/control"
	"github.com/sparsecast/sparsecast/dataplane"
)

// startControlFabric builds the failover fabric with a control process.
func startControlFabric(t *testing.T, prefix string) *Fabric {
	t.Helper()
	root := moduleRoot(t)
	topoPath := filepath.Join(root, "testbeds", "failover.yaml")
	topo, err := control.LoadTopology(topoPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	f, err := StartFabric(ctx, FabricOptions{
		Topology: topo, TopologyPath: topoPath, Binary: buildBinary(t), Prefix: prefix,
		Dir: t.TempDir(), Probes: true, Control: true, Log: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if left, _ := Namespaces(context.Background(), prefix); len(left) != 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	return f
}

func receiverHosts(f *Fabric) []*FabricHost {
	var hs []*FabricHost
	for _, h := range f.Receivers() {
		if h.Name != "tx" {
			hs = append(hs, h)
		}
	}
	return hs
}

// Killing the control process with SIGKILL under load must not cost a
// packet: the switches keep forwarding on their last tables.
func TestControlKilledUnderLoad(t *testing.T) {
	f := startControlFabric(t, labPrefix+"ck-")
	res, err := f.Stream(context.Background(), StreamOptions{
		Sender: "tx", Receivers: receiverHosts(f), Rate: 3000, Duration: 3 * time.Second,
		At: time.Second, Do: func() error { return f.StopControl(true) },
	})
	if err != nil {
		t.Fatal(err)
	}
	checkLosses(t, f, res)
}

// reportLosses attributes a stream's losses, logs them and fails t on those
// no stall explains.
func reportLosses(t *testing.T, f *Fabric, res *StreamResult) *LossReport {
	t.Helper()
	rep, err := f.StreamLosses(res, LossOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d packets to each receiver; %s", res.Sent, rep.Summary())
	for _, e := range rep.Failures() {
		t.Error(e)
	}
	return rep
}

// checkLosses fails t on losses no stall explains and on duplicates, and
// logs the stall losses (losses.go): a starved process's drops are the
// machine's, not the code's.
func checkLosses(t *testing.T, f *Fabric, res *StreamResult) {
	t.Helper()
	reportLosses(t, f, res)
	for id, r := range res.Receivers {
		if r.Duplicates != 0 {
			t.Errorf("receiver %d: %d duplicates of %d", id, r.Duplicates, res.Sent)
		}
	}
}

// A switch restarted with no routes in its configuration gets its tables
// back from the control process by itself, and traffic flows again.
func TestSwitchRestartIsResynced(t *testing.T) {
	f := startControlFabric(t, labPrefix+"cr-")
	before, err := f.AppliedGeneration("leaf2")
	if err != nil || before == 0 {
		t.Fatalf("leaf2 applied generation %d: %v", before, err)
	}
	if err := f.StopSwitch("leaf2", true); err != nil {
		t.Fatal(err)
	}
	// The restarted leaf2 knows no routes of its own: only control can
	// make it forward.
	raw, err := os.ReadFile(f.Configs["leaf2"])
	if err != nil {
		t.Fatal(err)
	}
	var cfg dataplane.Config
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Routes = nil
	out, err := yaml.Marshal(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Configs["leaf2"], out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.StartSwitch(context.Background(), "leaf2"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		gen, err := f.AppliedGeneration("leaf2")
		if err == nil && gen > before {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(f.ControlLog)
			t.Fatalf("leaf2 was not resynced (generation %d); control log:\n%s", gen, tail(string(log), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, err := f.Stream(context.Background(), StreamOptions{Sender: "tx", Receivers: receiverHosts(f), Rate: 2000, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	checkLosses(t, f, res)
}

// Failing a spine link mid-stream costs only receivers behind it.
func TestFailoverScenario(t *testing.T) {
	root := moduleRoot(t)
	res, err := Failover(context.Background(), FailoverOptions{
		Topology: filepath.Join(root, "testbeds", "failover.yaml"), Binary: buildBinary(t),
		Prefix: labPrefix + "cv-", Dir: t.TempDir(), Log: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + res.Table())
	// Losses a starved process caused are logged (in the table), not
	// failed on: only reroute losses past the bound and losses no stall
	// explains are the code's (losses.go).
	for _, e := range res.Losses.Failures() {
		t.Error(e)
	}
	for _, r := range res.Receivers {
		if !r.Affected && r.Duplicates != 0 {
			t.Errorf("unaffected receiver %d: %d duplicates", r.ID, r.Duplicates)
		}
	}
	if len(res.AffectedReceivers) == 0 || len(res.UnaffectedReceivers) == 0 {
		t.Errorf("the failed link should split the receivers: affected %v, unaffected %v", res.AffectedReceivers, res.UnaffectedReceivers)
	}
	// Detection and repair are timed on a shared 2-core machine: assert
	// they happened, and that repair took well under the stream.
	if res.DetectUs <= 0 || res.RepairUs <= 0 || res.RepairUs > 500_000 {
		t.Errorf("detect %v µs, repair %v µs", res.DetectUs, res.RepairUs)
	}
	// Not hung: building the fabric is most of it, and takes twice as long
	// on a loaded machine (35-43 s with three busy loops on two cores).
	if res.ElapsedS > 60 {
		t.Errorf("took %.1f s, want under 60", res.ElapsedS)
	}
	// The upstream switch's forwarding time was sampled before the failure
	// (unless probes had routed the stream around it then: a stall's).
	if res.HopSamples == 0 && res.Losses.ProbeDown {
		t.Logf("hop: no sample, probes declared a healthy link down (%v)", res.Losses.LinkEvents)
	} else if res.HopSamples == 0 || res.HopSwitch == "" || res.HopP50Us <= 0 || res.HopP90Us < res.HopP50Us {
		t.Errorf("hop %s: %d samples, p50 %v µs, p90 %v µs", res.HopSwitch, res.HopSamples, res.HopP50Us, res.HopP90Us)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// A ring file truncated under a running switch (issue 14: a SIGBUS that
// killed it) costs no packet: the switch drops the ring, counts the fault,
// forwards on its last tables, reopens the ring and is resynced by control.
func TestRingTruncatedUnderLoad(t *testing.T) {
	f := startControlFabric(t, labPrefix+"rt-")
	ring := filepath.Join(f.Dir, "sparsecast-leaf1.ring")
	before, err := f.AppliedGeneration("leaf1")
	if err != nil || before == 0 {
		t.Fatalf("leaf1 applied generation %d: %v", before, err)
	}
	res, err := f.Stream(context.Background(), StreamOptions{
		Sender: "tx", Receivers: receiverHosts(f), Rate: 2000, Duration: 3 * time.Second,
		At: time.Second, Do: func() error { return os.Truncate(ring, 0) },
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, r := range res.Receivers {
		if r.Received == 0 {
			t.Errorf("receiver %d received nothing of %d", id, res.Sent)
		}
	}
	checkLosses(t, f, res)
	ctx := context.Background()
	if n, err := f.SwitchCounter(ctx, "leaf1", "sparsecast_switch_ring_faults_total"); err != nil || n != 1 {
		t.Errorf("leaf1 ring faults %d (%v), want 1", n, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		reopens, _ := f.SwitchCounter(ctx, "leaf1", "sparsecast_switch_ring_reopens_total")
		connected, _ := f.SwitchCounter(ctx, "leaf1", "sparsecast_switch_ring_connected")
		if reopens == 1 && connected == 1 {
			if gen, err := f.AppliedGeneration("leaf1"); err == nil && gen > before {
				break
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(f.ControlLog)
			t.Fatalf("leaf1 not reopened and resynced (reopens %d, connected %d); control log:\n%s", reopens, connected, tail(string(log), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Starved processes, made on purpose, lose packets at every receiver; the
// losses are the stall's: counted, reported, and no failure.
//
//   - The sender stopped for 2 s, longer than the receivers' idle timeout
//     (the CI failure of issue 14: every receiver lost the same 3,700
//     packets): the receivers exit and the rest of the stream reaches hosts
//     where no one listens (UDP NoPorts), and the sender skipped 2 s of its
//     schedule.
//   - leaf1 stopped for 400 ms, twenty probe intervals: the spines declare
//     their links to it down (probe_timeout), control routes around them,
//     and leaf1, back, has no route until the probes recover (no_route).
func TestStreamStallIsReported(t *testing.T) {
	f := startControlFabric(t, labPrefix+"cs-")
	for _, c := range []struct {
		name  string
		ns    string
		pause time.Duration
		check func(*LossReport) bool
	}{
		{"sender", f.Hosts["tx"].NS, 2 * time.Second, func(r *LossReport) bool {
			return r.StallBy.NoPort > 0 && time.Duration(r.SenderSkippedNs) > 1500*time.Millisecond
		}},
		{"leaf1", f.SwitchNS["leaf1"], 400 * time.Millisecond, func(r *LossReport) bool {
			return r.StallBy.ProbeDown > 0 && len(r.LinkEvents) > 0
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := f.Stream(context.Background(), StreamOptions{
				Sender: "tx", Receivers: receiverHosts(f), Rate: 2000, Duration: 4 * time.Second,
				At: time.Second, Do: func() error { return pauseNamespace(c.ns, c.pause) },
			})
			if err != nil {
				t.Fatal(err)
			}
			rep := reportLosses(t, f, res)
			if rep.StallLost == 0 || !c.check(rep) {
				t.Errorf("%s stopped for %v: stall lost %d (%s): want the losses put down to it", c.name, c.pause, rep.StallLost, rep.StallBy)
			}
		})
		// Let the probes see every link good again.
		time.Sleep(time.Second)
	}
}

// pauseNamespace stops every process in network namespace ns (SIGSTOP) for
// d, then lets them go on (SIGCONT): a starved process, made on purpose.
func pauseNamespace(ns string, d time.Duration) error {
	out, err := Run(context.Background(), "ip", "netns", "pids", ns)
	if err != nil {
		return err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("ip netns pids %s: %q", ns, f)
		}
		pids = append(pids, pid)
	}
	if len(pids) == 0 {
		return fmt.Errorf("no process in %s to pause", ns)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return err
		}
	}
	time.Sleep(d)
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			return err
		}
	}
	return nil
}
