// The control collector. In: the Server's state, read at scrape time; out:
//
//	sparsecast_control_pushes_total{switch,kind}          counter, kind full|routes|groups
//	sparsecast_control_generation_applied{switch}         gauge
//	sparsecast_control_ring_depth{switch,ring}            gauge, ring commands|events
//	sparsecast_control_update_latency_seconds             histogram, push to publish
//	sparsecast_control_reroute_events_total{switch}       counter, REROUTED events
//	sparsecast_control_rejected_batches_total{switch}     counter, REJECTED events
//	sparsecast_control_api_errors_total{class}            counter, every class even at 0
//	sparsecast_control_store_writes_total{result}         counter, ok|failed (with a state store)
//	sparsecast_control_store_connected                    gauge, 1 while etcd answers (etcd only)
//	sparsecast_control_store_revision                     gauge, the etcd revision applied (etcd only)
//	sparsecast_control_store_caught_up                    gauge, 1 when that is etcd's own (etcd only)
//
// The switch label takes the served switches of the fabric, the class label
// the fixed API error classes: no label grows with groups or receivers.
// The update latency is the dataplane's publish timestamp (from its APPLIED
// event) minus the moment control handed the batch to the ring, both
// CLOCK_MONOTONIC, so polling delays on either side are not in it.
package control

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LatencyBuckets are the update latency histogram's upper bounds, seconds.
var LatencyBuckets = []float64{1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 1e-2, 0.1, 1}

type histogram struct {
	bounds []float64
	counts []uint64 // per bucket, not cumulative; last is +Inf
	sum    float64
	n      uint64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i]++
	h.sum += v
	h.n++
}

func (h *histogram) cumulative() map[float64]uint64 {
	m := make(map[float64]uint64, len(h.bounds))
	var c uint64
	for i, b := range h.bounds {
		c += h.counts[i]
		m[b] = c
	}
	return m
}

func newControlDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("sparsecast", "control", name), help, labels, nil)
}

var (
	pushesDesc = newControlDesc("pushes_total",
		"Batches pushed to a switch's command ring, by kind: full (a full resync), routes (a route delta), groups (a group delta).", "switch", "kind")
	appliedDesc = newControlDesc("generation_applied",
		"The generation a switch's dataplane last applied.", "switch")
	depthDesc = newControlDesc("ring_depth",
		"Records waiting in a switch's ring (commands: for the dataplane; events: for control).", "switch", "ring")
	latencyDesc = newControlDesc("update_latency_seconds",
		"From handing a batch to the ring to the dataplane publishing it (CLOCK_MONOTONIC).")
	reroutesDesc = newControlDesc("reroute_events_total",
		"REROUTED events from a switch: its dataplane moved entries to their backups.", "switch")
	rejectedDesc = newControlDesc("rejected_batches_total",
		"Batches a switch's dataplane rejected (each is followed by a full resync).", "switch")
	ringFaultsDesc = newControlDesc("ring_faults_total",
		"Memory faults in a switch's mapped ring file (it shrank under the mapping): the ring was dropped and reopened.", "switch")
	apiErrorsDesc = newControlDesc("api_errors_total",
		"API requests refused, by error class: "+strings.Join(apiClasses[:], ", ")+".", "class")
	storeWritesDesc = newControlDesc("store_writes_total",
		"Group changes written to the state store, by result: ok, failed (the change was refused with HTTP 503).", "result")
	storeConnectedDesc = newControlDesc("store_connected",
		"1 while the shared store (etcd) answers, 0 while it does not (group changes are refused).")
	storeRevisionDesc = newControlDesc("store_revision",
		"The shared store's revision this control process has applied.")
	storeCaughtUpDesc = newControlDesc("store_caught_up",
		"1 when the revision applied is the shared store's current one.")
)

// Collector returns a Prometheus collector over the server.
func (s *Server) Collector() prometheus.Collector { return (*serverCollector)(s) }

type serverCollector Server

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pushesDesc, appliedDesc, depthDesc, latencyDesc, reroutesDesc, rejectedDesc, ringFaultsDesc, apiErrorsDesc, storeWritesDesc, storeConnectedDesc, storeRevisionDesc, storeCaughtUpDesc} {
		ch <- d
	}
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	s := (*Server)(c)
	s.mu.Lock()
	for _, sw := range s.sws {
		for k, n := range sw.pushes {
			ch <- prometheus.MustNewConstMetric(pushesDesc, prometheus.CounterValue, float64(n), sw.name, PushKind(k).String())
		}
		ch <- prometheus.MustNewConstMetric(appliedDesc, prometheus.GaugeValue, float64(sw.applied), sw.name)
		if dr, ok := sw.ring.(depthRing); ok {
			cmd, ev := dr.Depths()
			ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(cmd), sw.name, "commands")
			ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(ev), sw.name, "events")
		}
		ch <- prometheus.MustNewConstMetric(reroutesDesc, prometheus.CounterValue, float64(sw.reroutes), sw.name)
		ch <- prometheus.MustNewConstMetric(rejectedDesc, prometheus.CounterValue, float64(sw.rejected), sw.name)
		ch <- prometheus.MustNewConstMetric(ringFaultsDesc, prometheus.CounterValue, float64(sw.faults), sw.name)
	}
	ch <- prometheus.MustNewConstHistogram(latencyDesc, s.latency.n, s.latency.sum, s.latency.cumulative())
	s.mu.Unlock()
	for i, class := range apiClasses {
		ch <- prometheus.MustNewConstMetric(apiErrorsDesc, prometheus.CounterValue, float64(s.apiErrs[i].Load()), class)
	}
	if s.opts.Store != nil {
		ch <- prometheus.MustNewConstMetric(storeWritesDesc, prometheus.CounterValue, float64(s.storeWrites[0].Load()), "ok")
		ch <- prometheus.MustNewConstMetric(storeWritesDesc, prometheus.CounterValue, float64(s.storeWrites[1].Load()), "failed")
	}
	if s.shared != nil {
		h := s.shared.Health()
		ch <- prometheus.MustNewConstMetric(storeConnectedDesc, prometheus.GaugeValue, b2f(h.Connected))
		ch <- prometheus.MustNewConstMetric(storeRevisionDesc, prometheus.GaugeValue, float64(h.Revision))
		ch <- prometheus.MustNewConstMetric(storeCaughtUpDesc, prometheus.GaugeValue, b2f(h.CaughtUp))
	}
}

// ServeMetrics serves /metrics for the collectors on addr until ctx ends
// and returns the address it listens on.
func ServeMetrics(ctx context.Context, addr string, cs ...prometheus.Collector) (net.Addr, error) {
	reg := prometheus.NewRegistry()
	// The process and Go runtime collectors, as the switch's /metrics has
	// them: process_start_time_seconds for restart alerts, memory, fds.
	all := append([]prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, cs...)
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go srv.Serve(ln)
	return ln.Addr(), nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
