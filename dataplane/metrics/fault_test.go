package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sparsecast/sparsecast/dataplane"
)

// faultSwitch is a two-port switch over in-memory ports (never run).
func faultSwitch(t *testing.T) *dataplane.Switch {
	t.Helper()
	cfg := &dataplane.Config{Name: "f", Ports: []dataplane.PortConfig{{Name: "p1", Type: "mem"}, {Name: "p2", Type: "mem"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var ports []dataplane.Port
	for _, pc := range cfg.Ports {
		p, _ := dataplane.NewMemPair(pc.Name, pc.Name+"-peer", 64, cfg.BufferSize)
		ports = append(ports, p)
	}
	tb, err := dataplane.TablesFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := dataplane.NewSwitch(cfg, ports, tb)
	if err != nil {
		t.Fatal(err)
	}
	return sw
}

func TestFaultEndpoint(t *testing.T) {
	sw := faultSwitch(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewSwitchCollector("f", sw.PortNames(), sw.Counters(), WithFaults(sw.FaultCounters()))
	addr, err := ServeWith(ctx, "127.0.0.1:0", map[string]http.Handler{FaultPath: FaultHandler(sw, nil)}, c)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	post := func(body string) (int, string) {
		t.Helper()
		resp, err := http.Post(base+FaultPath, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(`{"port":"p2","loss":1,"for":"1h"}`); code != http.StatusOK || !strings.Contains(body, `"port":"p2","loss":1,"burst":1`) {
		t.Fatalf("POST: %d %s", code, body)
	}
	if f := sw.Faults(); len(f) != 1 || f[0].Port != "p2" || f[0].Fault.Loss != 1 {
		t.Fatalf("faults in force %+v", f)
	}
	for _, bad := range []string{
		`{"port":"p9","loss":1,"for":"1s"}`, // no such port
		`{"port":"p1","loss":2,"for":"1s"}`, // loss
		`{"port":"p1","loss":1}`,            // no duration
		`{"port":"p1","loss":1,"for":"x"}`,  // bad duration
		`{"port":"p1","loss":1,"for":"1s","extra":1}`,
		`not json`,
	} {
		if code, body := post(bad); code != http.StatusBadRequest {
			t.Errorf("POST %s: %d %s, want 400", bad, code, body)
		}
	}
	resp, err := http.Post(base+FaultPath, "application/x-www-form-urlencoded", strings.NewReader("port=p1&loss=1&for=1s"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("form POST: %s, want 415", resp.Status)
	}
	// Clearing with loss 0, then GET lists nothing.
	if code, body := post(`{"port":"p2","loss":0}`); code != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Fatalf("clear: %d %s", code, body)
	}
	// A client that is not on loopback, or a page reaching loopback by
	// another name, is refused.
	h := FaultHandler(sw, nil)
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "http://10.0.0.1:9470/fault", nil),
		httptest.NewRequest(http.MethodGet, "http://evil.example:9470/fault", nil),
	} {
		r.Header.Set("Content-Type", "application/json")
		if r.Host == "evil.example:9470" {
			r.RemoteAddr = "127.0.0.1:4000"
		} else {
			r.RemoteAddr = "10.0.0.2:4000"
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s from %s: %d, want 403", r.Host, r.RemoteAddr, rec.Code)
		}
	}
	got, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(got.Body)
	got.Body.Close()
	// Applied: the fault and its clearing; rejected: 6 bodies, the form
	// and the two foreign requests.
	for _, want := range []string{
		`sparsecast_switch_fault_requests_total{result="applied"} 2`,
		`sparsecast_switch_fault_requests_total{result="rejected"} 9`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
