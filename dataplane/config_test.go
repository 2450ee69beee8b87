package dataplane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPortRxRingConfig: rx_ring takes v2 or v3 on afpacket ports, nothing
// else, and is left empty (the port's own default) when not set.
func TestPortRxRingConfig(t *testing.T) {
	for _, c := range []struct {
		typ, ring, err string
	}{
		{"afpacket", "", ""},
		{"", "v2", ""},
		{"afpacket", "v3", ""},
		{"afpacket", "v1", "want v2 or v3"},
		{"afpacket", "V2", "want v2 or v3"},
		{"mem", "v2", "for type afpacket"},
	} {
		cfg := &Config{Name: "s", Ports: []PortConfig{{Name: "p0", Type: c.typ, RxRing: c.ring}}}
		err := cfg.Validate()
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("type %q rx_ring %q: err %v, want %q", c.typ, c.ring, err, c.err)
		}
		if err == nil && cfg.Ports[0].RxRing != c.ring {
			t.Errorf("rx_ring %q became %q", c.ring, cfg.Ports[0].RxRing)
		}
	}
}

// TestPortTxConfig: tx takes ring, ring-zerocopy or sendmmsg, and it and
// tx_qdisc_bypass are for afpacket ports only.
func TestPortTxConfig(t *testing.T) {
	for _, c := range []struct {
		typ, tx string
		qdisc   bool
		err     string
	}{
		{"afpacket", "", false, ""},
		{"", "ring", true, ""},
		{"afpacket", "ring-zerocopy", false, ""},
		{"afpacket", "sendmmsg", true, ""},
		{"afpacket", "mmap", false, "want ring, ring-zerocopy or sendmmsg"},
		{"mem", "ring", false, "for type afpacket"},
		{"mem", "", true, "for type afpacket"},
	} {
		cfg := &Config{Name: "s", Ports: []PortConfig{{Name: "p0", Type: c.typ, Tx: c.tx, TxQdiscBypass: c.qdisc}}}
		err := cfg.Validate()
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("type %q tx %q tx_qdisc_bypass %v: err %v, want %q", c.typ, c.tx, c.qdisc, err, c.err)
		}
	}
}

// TestFeedbackIdleTimeoutConfig: idle_timeout defaults to 30s and takes
// 1ms-24h.
func TestFeedbackIdleTimeoutConfig(t *testing.T) {
	for _, c := range []struct {
		in, want time.Duration
		err      string
	}{
		{0, 30 * time.Second, ""},
		{time.Millisecond, time.Millisecond, ""},
		{5 * time.Minute, 5 * time.Minute, ""},
		{-time.Second, 0, "feedback.idle_timeout"},
		{time.Microsecond, 0, "feedback.idle_timeout"},
		{25 * time.Hour, 0, "feedback.idle_timeout"},
	} {
		cfg := &Config{Name: "s", Ports: []PortConfig{{Name: "p0", Type: "mem"}}, Feedback: FeedbackConfig{IdleTimeout: c.in}}
		err := cfg.Validate()
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("idle_timeout %v: err %v, want %q", c.in, err, c.err)
		}
		if err == nil && cfg.Feedback.IdleTimeout != c.want {
			t.Errorf("idle_timeout %v became %v, want %v", c.in, cfg.Feedback.IdleTimeout, c.want)
		}
	}
}

// TestSpinBeforeBlockConfig: spin_before_block defaults to 50µs, takes
// 0-10ms from YAML (0: block after one empty round), and reaches the
// workers.
func TestSpinBeforeBlockConfig(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want time.Duration
		err  string
	}{
		{"", defaultSpinBeforeBlock, ""},
		{"spin_before_block: 0s\n", 0, ""},
		{"spin_before_block: 200us\n", 200 * time.Microsecond, ""},
		{"spin_before_block: -1ms\n", 0, "spin_before_block"},
		{"spin_before_block: 11ms\n", 0, "spin_before_block"},
	} {
		path := filepath.Join(t.TempDir(), "sw.yaml")
		if err := os.WriteFile(path, []byte("name: s\n"+c.yaml+"ports:\n  - {name: p0, type: mem}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(path)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: err %v, want %q", c.yaml, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		if got := cfg.spinBeforeBlock(); got != c.want {
			t.Errorf("%q: spin %v, want %v", c.yaml, got, c.want)
		}
		a, _ := NewMemPair("a", "b", 8, 2048)
		sw, err := NewSwitch(cfg, []Port{a}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sw.workers[0].spin != c.want {
			t.Errorf("%q: worker spins %v, want %v", c.yaml, sw.workers[0].spin, c.want)
		}
	}
}
