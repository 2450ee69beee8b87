package dataplane

import (
	"strings"
	"testing"
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
