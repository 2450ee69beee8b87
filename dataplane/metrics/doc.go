// Package metrics exports a switch's counters to Prometheus.
//
// In: the per-core dataplane.CoreCounters that the workers already keep (each
// worker is the only writer of its own), the port names in port-index order,
// and optionally a hook that returns stats a port type keeps outside the
// workers (an AF_PACKET socket's kernel drops). Out: a prometheus.Collector
// that, at scrape time, loads every counter atomically, sums over cores and
// emits const metrics named sparsecast_switch_* (node_exporter's
// read-at-scrape pattern), and Serve, an HTTP server for /metrics.
//
// Nothing here runs on the fast path and nothing is kept between scrapes.
// Labels are bounded by configuration: port, worker, drop reason, switch
// name; never a group or a receiver.
package metrics
