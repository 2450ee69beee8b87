package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sparsecast/sparsecast/dataplane"
)

var configReloadsDesc = newDesc("config_reloads_total",
	"Reloads of the config's routes and groups (SIGHUP): applied, or rejected (the file did not load or build tables; the switch kept its tables).", "result")

// WithReloads exports the config reload counters.
func WithReloads(rc *dataplane.ReloadCounters) Option {
	return func(c *switchCollector) { c.reloads = rc }
}

func (c *switchCollector) collectReloads(ch chan<- prometheus.Metric) {
	if c.reloads == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(configReloadsDesc, prometheus.CounterValue, float64(c.reloads.Applied.Load()), "applied")
	ch <- prometheus.MustNewConstMetric(configReloadsDesc, prometheus.CounterValue, float64(c.reloads.Rejected.Load()), "rejected")
}
