//go:build linux

package perf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestKernelMroute: a kernel without /proc/net/ip_mr_vif has no multicast
// routing, and the bench says so in the words of ErrNoMroute.
func TestKernelMroute(t *testing.T) {
	dir := t.TempDir()
	if err := kernelMroute(filepath.Join(dir, "ip_mr_vif")); !errors.Is(err, ErrNoMroute) {
		t.Errorf("missing file: %v, want ErrNoMroute", err)
	}
	present := filepath.Join(dir, "present")
	if err := os.WriteFile(present, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := kernelMroute(present); err != nil {
		t.Errorf("present file: %v", err)
	}
	want := "kernel has no multicast routing (CONFIG_IP_MROUTE); smcroute skipped"
	if ErrNoMroute.Error() != want {
		t.Errorf("message %q, want %q", ErrNoMroute, want)
	}
}
