package perf

import (
	"context"
	"os"
	"testing"
)

func TestBenchTopology(t *testing.T) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skip("no /dev/shm")
	}
	r, err := BenchTopology(context.Background(), TopologyOptions{Path: "../testbeds/fattree.yaml", Failures: 4, Seed: 3, ShmDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Hosts != 16 || r.Switches != 20 || r.Links != 32 || r.ResyncSwitches != 20 || r.ResyncExtrapolated {
		t.Errorf("fabric %+v", r)
	}
	if len(r.Roles) != 3 {
		t.Fatalf("roles %+v", r.Roles)
	}
	for _, role := range r.Roles {
		// 16 routes: BEGIN, two ROUTES records, COMMIT.
		if role.Entries != [3]int{16, 16, 16} || role.RingBytes != [3]int{256, 256, 256} || role.DataplaneBytes != 3*65536+8192 {
			t.Errorf("%s: %+v", role.Role, role)
		}
	}
	if len(r.Failures) != 4 {
		t.Fatalf("failures %+v", r.Failures)
	}
	for _, f := range r.Failures {
		if f.ChangedEntries == 0 || f.ChangedSwitches == 0 || f.ControlMs <= 0 {
			t.Errorf("failure %+v", f)
		}
	}
	if _, err := BenchTopology(context.Background(), TopologyOptions{Path: "../testbeds/nope.yaml"}); err == nil {
		t.Error("missing file accepted")
	}
}
