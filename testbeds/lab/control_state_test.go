//go:build lab

package lab

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/control"
)

// controlRestarts is how many SIGKILL-and-restart rounds
// TestControlStateSurvivesKill runs: 3 by default (each is a kill, a
// resync and a transfer), SPARSECAST_LAB_RESTARTS=20 for the full loop.
func controlRestarts(t *testing.T) int {
	s := os.Getenv("SPARSECAST_LAB_RESTARTS")
	if s == "" {
		return 3
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("SPARSECAST_LAB_RESTARTS=%q: want a count of at least 1", s)
	}
	return n
}

// fullResyncRE matches control's log line for each full resync it pushes.
var fullResyncRE = regexp.MustCompile(`switch (\S+): full resync, generation \d+: \d+ routes, (\d+) groups`)

// The control process killed with SIGKILL and started again comes back
// with every group, pushes every switch a full table with all of them
// (never an empty one), and group transfers go on byte-exact.
func TestControlStateSurvivesKill(t *testing.T) {
	rounds := controlRestarts(t)
	// The transfer fabric: its sender has an ID (group transfers are
	// reliable, so feedback is routed to it) and the receivers are on two
	// leaves, so the group is replicated at a spine.
	dir := t.TempDir()
	topoPath := filepath.Join(dir, "transfer.yaml")
	if err := os.WriteFile(topoPath, []byte(transferTopology), 0o644); err != nil {
		t.Fatal(err)
	}
	topo, err := control.LoadTopology(topoPath)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	f, err := StartFabric(sctx, FabricOptions{
		Topology: topo, TopologyPath: topoPath, Binary: buildBinary(t), Prefix: labPrefix,
		Dir: dir, Control: true, Log: t.Logf,
	})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if left, _ := Namespaces(context.Background(), labPrefix); len(left) != 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	ctx := context.Background()
	c, err := control.NewClient("unix:"+f.ControlAPI, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var names []string
	var ids []uint16
	for _, h := range f.Receivers() {
		if h.Name != "tx" {
			names = append(names, h.Name)
			ids = append(ids, h.ID)
		}
	}
	slices.Sort(ids)
	// Group 7 is every receiver (the transfers' group); 100-139 are the
	// other subsets, so the table is more than one group.
	want := map[uint32][]uint16{7: ids}
	if _, err := c.SetGroup(ctx, 7, ids); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		var m []uint16
		for b, id := range ids {
			if (i%15+1)&(1<<b) != 0 {
				m = append(m, id)
			}
		}
		id := uint32(100 + i)
		if _, err := c.SetGroup(ctx, id, m); err != nil {
			t.Fatal(err)
		}
		want[id] = m
	}
	checkGroups := func(when string) {
		t.Helper()
		got, err := c.Groups(ctx)
		if err != nil {
			t.Fatalf("%s: group show: %v", when, err)
		}
		have := map[uint32][]uint16{}
		for _, g := range got {
			have[g.ID] = g.Members
		}
		if len(have) != len(want) {
			t.Fatalf("%s: %d groups, want %d", when, len(have), len(want))
		}
		for id, m := range want {
			if !slices.Equal(have[id], m) {
				t.Fatalf("%s: group %d has %v, want %v", when, id, have[id], m)
			}
		}
	}
	transfer := func(when string) {
		t.Helper()
		res, err := TransferOn(ctx, f, TransferOptions{
			Sender: "tx", Receivers: names, UseGroup: true, Group: 7, Size: 512 << 10,
			Timeout: time.Minute, Log: t.Logf,
		})
		if err != nil {
			t.Fatalf("%s: transfer: %v", when, err)
		}
		if !res.DeliveredOK {
			t.Fatalf("%s: group transfer not delivered byte-exact:\n%s", when, res.Table())
		}
	}
	checkGroups("before the first kill")
	transfer("before the first kill")

	passed := 0
	for round := 1; round <= rounds; round++ {
		logBefore, err := os.ReadFile(f.ControlLog)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.StopControl(true); err != nil {
			t.Fatalf("round %d: SIGKILL: %v", round, err)
		}
		if err := f.StartControl(ctx); err != nil {
			t.Fatalf("round %d: restart: %v", round, err)
		}
		// Every switch resynced by the new process, and applied it.
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, err := c.Status(ctx)
			synced := 0
			if err == nil {
				for _, s := range st.Switches {
					if s.InSync && s.Pushes["full"] > 0 {
						synced++
					}
				}
			}
			if err == nil && synced == len(f.Topo.Switches) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: switches not resynced after the restart: %+v %v", round, st, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		checkGroups("round " + strconv.Itoa(round))
		// What the new process pushed: no full resync without every group.
		logAll, err := os.ReadFile(f.ControlLog)
		if err != nil {
			t.Fatal(err)
		}
		resyncs := fullResyncRE.FindAllStringSubmatch(string(logAll[len(logBefore):]), -1)
		if len(resyncs) < len(f.Topo.Switches) {
			t.Fatalf("round %d: %d full resyncs in the log, want one per switch at least", round, len(resyncs))
		}
		for _, m := range resyncs {
			if m[2] != strconv.Itoa(len(want)) {
				t.Fatalf("round %d: switch %s was pushed %s groups, want %d", round, m[1], m[2], len(want))
			}
		}
		transfer("round " + strconv.Itoa(round))
		// A change after the restart is kept by the next one too.
		id := uint32(1000 + round)
		m := ids[:1+round%len(ids)]
		if _, err := c.SetGroup(ctx, id, m); err != nil {
			t.Fatal(err)
		}
		want[id] = m
		passed++
	}
	t.Logf("control killed and restarted %d of %d times: groups back, transfers byte-exact", passed, rounds)
}
