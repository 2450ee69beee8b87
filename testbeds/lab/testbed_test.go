//go:build lab

package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
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
