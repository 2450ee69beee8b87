//go:build lab

package lab

// The lab tests build the real binary and run scenarios in network
// namespaces; they need root: go test -tags lab ./testbeds/lab

import (
	"cmp"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// moduleRoot finds the directory of go.mod above the package directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func buildBinary(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root")
	}
	bin := filepath.Join(t.TempDir(), "sparsecast")
	if err := BuildBinary(bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// labPrefix is this test's namespace prefix, so a lab test never removes a
// lab someone runs by hand with the default prefix. SPARSECAST_LAB_PREFIX
// replaces it, so that two runs of the tests on one machine (two
// checkouts) do not tear down each other's labs.
var labPrefix = cmp.Or(os.Getenv("SPARSECAST_LAB_PREFIX"), "sct-")

func cleanup(t *testing.T) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := Teardown(ctx, labPrefix, nil); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if left, err := Namespaces(ctx, labPrefix); err != nil || len(left) > 0 {
			t.Errorf("namespaces left after teardown: %v %v", left, err)
		}
	})
}

func runSingleSwitch(t *testing.T, v6 bool) {
	bin := buildBinary(t)
	cleanup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log strings.Builder
	sum, err := SingleSwitch(ctx, Options{
		Binary: bin, Packets: 10000, IPv6: v6, Prefix: labPrefix, Dir: t.TempDir(), Log: &log,
	})
	if err != nil {
		t.Fatalf("SingleSwitch: %v\n%s", err, log.String())
	}
	t.Logf("\n%s", sum.Table())
	if !sum.DeliveredOK {
		for _, f := range []string{"switch.log", "send.log", "recv-1.log"} {
			b, _ := os.ReadFile(filepath.Join(sum.Dir, f))
			t.Logf("%s:\n%s", f, b)
		}
		t.Fatal("delivered_ok is false")
	}
	if sum.Sent != 10000 || len(sum.Receivers) != 4 {
		t.Fatalf("sent %d, %d receivers", sum.Sent, len(sum.Receivers))
	}
	var total uint64
	for _, r := range sum.Receivers {
		if !r.OK || r.Received != r.Expected || r.Expected == 0 {
			t.Errorf("receiver %+v", r)
		}
		total += r.Received
	}
	// Each receiver is in about half the subsets: 4 x 10,000 / 2 copies.
	if total < 16000 || total > 24000 {
		t.Errorf("%d copies delivered for 10,000 packets to subsets of 4", total)
	}
	// SingleSwitch tore its lab down itself.
	if left, err := Namespaces(ctx, labPrefix); err != nil || len(left) > 0 {
		t.Errorf("namespaces left after SingleSwitch: %v %v", left, err)
	}
}

func TestSingleSwitchIPv4(t *testing.T) { runSingleSwitch(t, false) }

func TestSingleSwitchIPv6(t *testing.T) { runSingleSwitch(t, true) }

// TestTeardownAfterCrash leaves a lab behind, with a process in it, as a
// crashed run would, and checks that Teardown removes both, twice.
func TestTeardownAfterCrash(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root")
	}
	cleanup(t)
	ctx := context.Background()
	l, err := New(labPrefix)
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.AddNamespace(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddNamespace(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AddVeth(ctx, Link{NS: a, Dev: "x0"}, Link{NS: b, Dev: "y0"}); err != nil {
		t.Fatal(err)
	}
	// Started outside the Lab's bookkeeping, as after a crash.
	sleeper := exec.Command("ip", "netns", "exec", a, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	if names, _ := Namespaces(ctx, labPrefix); len(names) != 2 {
		t.Fatalf("namespaces %v, want 2", names)
	}
	for i := 0; i < 2; i++ {
		if err := Teardown(ctx, labPrefix, nil); err != nil {
			t.Fatalf("teardown %d: %v", i, err)
		}
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("process in the namespace survived teardown")
	}
	if names, _ := Namespaces(ctx, labPrefix); len(names) != 0 {
		t.Fatalf("namespaces left: %v", names)
	}
}
