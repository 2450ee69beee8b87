package dataplane

import (
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
