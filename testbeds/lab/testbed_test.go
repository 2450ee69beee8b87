//go:build lab

package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckpointTwice is the user's first session: `testbed up`, then
// `testbed run checkpoint --json` twice on the same fabric. Both copies
// must be delivered: the second used to stall, its ACKs absorbed by the
// switches' feedback state of the first (same source, same session 9).
func TestCheckpointTwice(t *testing.T) {
	bin := buildBinary(t)
	const prefix = "sctb-"
	topo := filepath.Join(moduleRoot(t), "testbeds", "leafspine.yaml")
	run := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Logf("%v: %v\n%s", args, err, stderr.String())
		}
		return out, err
	}
	t.Cleanup(func() {
		if _, err := run("testbed", "down", "--prefix", prefix); err != nil {
			t.Errorf("testbed down: %v", err)
		}
	})
	if _, err := run("testbed", "up", "--topology", topo, "--prefix", prefix); err != nil {
		t.Fatalf("testbed up: %v", err)
	}
	var sessions []uint16
	for i := range 2 {
		out, err := run("testbed", "run", "checkpoint", "--prefix", prefix, "--json")
		var res TransferResult
		if jerr := json.Unmarshal(out, &res); jerr != nil {
			t.Fatalf("run %d: exit %v, output %q: %v", i+1, err, out, jerr)
		}
		t.Logf("run %d: session %d, delivered_ok %v, sender %.2f s, wall %.2f s", i+1, res.Session, res.DeliveredOK, res.SenderS, res.WallS)
		if err != nil || !res.DeliveredOK || res.TimedOut || len(res.Receivers) != 3 {
			t.Fatalf("run %d: exit %v, delivered_ok %v, timed_out %v, %d receivers: %s", i+1, err, res.DeliveredOK, res.TimedOut, len(res.Receivers), out)
		}
		for _, r := range res.Receivers {
			if !r.OK || r.Bytes != int64(res.Size) || r.SenderView != "complete" || r.Error != "" {
				t.Errorf("run %d: receiver %+v", i+1, r)
			}
		}
		sessions = append(sessions, res.Session)
	}
	if sessions[0] == 0 || sessions[0] == sessions[1] {
		t.Errorf("sessions %v: want two fresh ones", sessions)
	}
}

// TestTestbedDownLeavesNothing: `testbed down` removes the testbed's
// directory under /run/sparsecast (configs, rings, sockets, logs) with its
// state file; --keep-logs keeps only the *.log files.
func TestTestbedDownLeavesNothing(t *testing.T) {
	bin := buildBinary(t)
	prefix := labPrefix + "dn-"
	topo := filepath.Join(moduleRoot(t), "testbeds", "failover.yaml")
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { exec.Command(bin, "testbed", "down", "--prefix", prefix).Run() })
	dir := LabDir(prefix)
	up := func() {
		run("testbed", "up", "--topology", topo, "--prefix", prefix)
		rings, _ := filepath.Glob(filepath.Join(dir, "*.ring"))
		if len(rings) == 0 {
			t.Fatalf("no ring files in %s after up", dir)
		}
	}
	up()
	out := run("testbed", "down", "--prefix", prefix, "--keep-logs")
	if !strings.Contains(out, "logs kept in "+dir) {
		t.Errorf("down --keep-logs said %q", out)
	}
	var left []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) == 0 {
		t.Error("--keep-logs kept no log")
	}
	for _, p := range left {
		if !strings.HasSuffix(p, ".log") {
			t.Errorf("--keep-logs left %s", p)
		}
	}
	up()
	run("testbed", "down", "--prefix", prefix)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after down: %v", dir, err)
	}
	if _, err := os.Stat(statePath(prefix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file after down: %v", err)
	}
	run("testbed", "down", "--prefix", prefix) // twice is fine
}
