package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsecast/sparsecast/ffi"
)

// TestSwitchRefusesForeignRing: a ring file another user created before
// the switch started (the takeover of issue 14) is refused at start with an
// error naming the owner, before any port opens; so is a ring in a
// directory others can write.
func TestSwitchRefusesForeignRing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown to another user)")
	}
	dir := t.TempDir()
	ring := filepath.Join(dir, "sparsecast-t.ring")
	f, err := ffi.OpenRingFile(ring, 16)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chown(ring, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	open := t.TempDir()
	os.Chmod(open, 0o1777)
	for ring, want := range map[string]string{
		ring:                                   "belongs to uid 65534, not to this process's uid 0",
		filepath.Join(open, "sparsecast.ring"): "others can write it",
	} {
		cfg := filepath.Join(t.TempDir(), "switch.yaml")
		// The port's interface does not exist: the ring is refused first.
		os.WriteFile(cfg, []byte(fmt.Sprintf("name: t\nports:\n  - {name: p0, iface: sc-none0}\ncontrol_ring: %s\n", ring)), 0o600)
		var log bytes.Buffer
		err := switchRun(context.Background(), &SwitchRunOptions{Log: &log, ConfigPath: cfg})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ring %s: error %v, want %q", ring, err, want)
		}
	}
}
