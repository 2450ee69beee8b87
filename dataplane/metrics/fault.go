// The fault endpoint of a switch's metrics server: POST /fault sets a
// runtime fault on one port (dataplane.Switch.SetFault: drop frames on its
// egress, up to all of them, for a while, carrier up), GET /fault lists the
// faults in force. It is an operator's and a lab's tool for silent
// failures, so it answers loopback clients only, addressed by a loopback
// host name, and takes JSON (a web page cannot send that to another origin
// without a preflight, which this server does not answer). Every request is
// counted: sparsecast_switch_fault_requests_total{result="applied"|"rejected"}.
//
//	curl -H 'Content-Type: application/json' -d '{"port":"p1","loss":1,"for":"300ms"}' http://127.0.0.1:9470/fault
//
// `sparsecast switch fault` sends the same request.

package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sparsecast/sparsecast/dataplane"
)

// FaultPath is the endpoint's path on the metrics server.
const FaultPath = "/fault"

// FaultRequest is POST /fault's body. A Loss of 0 ends a fault at once.
type FaultRequest struct {
	Port  string  `json:"port"`
	Loss  float64 `json:"loss"`
	Burst int     `json:"burst,omitempty"`
	// For is a Go duration ("300ms"), at most dataplane.MaxFaultDuration.
	For string `json:"for,omitempty"`
}

// FaultInForce is one fault in GET /fault's answer (and POST's).
type FaultInForce struct {
	Port      string  `json:"port"`
	Loss      float64 `json:"loss"`
	Burst     int     `json:"burst"`
	Remaining string  `json:"remaining"`
}

// FaultSwitch is what the endpoint needs of a switch (*dataplane.Switch).
type FaultSwitch interface {
	SetFault(port string, f dataplane.FaultConfig, d time.Duration) error
	Faults() []dataplane.PortFault
	FaultCounters() *dataplane.FaultCounters
}

// FaultHandler serves FaultPath for sw; applied, if not nil, is called with
// every fault applied (for the switch's log).
func FaultHandler(sw FaultSwitch, applied func(FaultRequest)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, err := serveFault(sw, r, applied)
		if err != nil {
			// SetFault counts its own refusals.
			if refused := (*setFaultError)(nil); !errors.As(err, &refused) {
				sw.FaultCounters().Rejected.Add(1)
			}
			http.Error(w, err.Error(), code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(faultsInForce(sw))
	})
}

// setFaultError is a refusal of SetFault's, already counted.
type setFaultError struct{ error }

func (e *setFaultError) Unwrap() error { return e.error }

func serveFault(sw FaultSwitch, r *http.Request, applied func(FaultRequest)) (int, error) {
	if err := checkLoopback(r); err != nil {
		return http.StatusForbidden, err
	}
	switch r.Method {
	case http.MethodGet:
		return 0, nil
	case http.MethodPost:
	default:
		return http.StatusMethodNotAllowed, fmt.Errorf("fault: method %s: want GET or POST", r.Method)
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		return http.StatusUnsupportedMediaType, fmt.Errorf("fault: want a JSON body (Content-Type: application/json)")
	}
	var req FaultRequest
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return http.StatusBadRequest, fmt.Errorf("fault: body: %w", err)
	}
	var d time.Duration
	if req.For != "" {
		var err error
		if d, err = time.ParseDuration(req.For); err != nil {
			return http.StatusBadRequest, fmt.Errorf("fault: for: %w", err)
		}
	}
	if err := sw.SetFault(req.Port, dataplane.FaultConfig{Loss: req.Loss, Burst: req.Burst}, d); err != nil {
		return http.StatusBadRequest, &setFaultError{err}
	}
	if applied != nil {
		applied(req)
	}
	return 0, nil
}

// checkLoopback refuses a client that is not on this host, and a request
// whose Host is not a loopback name (a DNS rebinding page's would be its
// own name).
func checkLoopback(r *http.Request) error {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		return fmt.Errorf("fault: only loopback clients may set faults, not %s", r.RemoteAddr)
	}
	name := r.Host
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	name = strings.Trim(name, "[]")
	if a, err := netip.ParseAddr(name); (err != nil || !a.IsLoopback()) && !strings.EqualFold(name, "localhost") {
		return fmt.Errorf("fault: host %q: address the switch by a loopback address", r.Host)
	}
	return nil
}

func faultsInForce(sw FaultSwitch) []FaultInForce {
	now := dataplane.MonotonicNs()
	out := []FaultInForce{}
	for _, f := range sw.Faults() {
		out = append(out, FaultInForce{Port: f.Port, Loss: f.Fault.Loss, Burst: f.Fault.Burst,
			Remaining: time.Duration(max(f.UntilNs-now, 0)).String()})
	}
	return out
}

var faultRequestsDesc = newDesc("fault_requests_total",
	"Runtime fault requests (POST /fault, `sparsecast switch fault`): applied, or rejected (bad port, loss, burst, duration, body, method or client).", "result")

// WithFaults exports the runtime fault request counters.
func WithFaults(fc *dataplane.FaultCounters) Option {
	return func(c *switchCollector) { c.faults = fc }
}

func (c *switchCollector) collectFaults(ch chan<- prometheus.Metric) {
	if c.faults == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(faultRequestsDesc, prometheus.CounterValue, float64(c.faults.Applied.Load()), "applied")
	ch <- prometheus.MustNewConstMetric(faultRequestsDesc, prometheus.CounterValue, float64(c.faults.Rejected.Load()), "rejected")
}
