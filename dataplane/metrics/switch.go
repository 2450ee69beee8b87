// The switch collector. In: CoreCounters and port names; out: the
// exposition below, one sample per port, drop reason and worker, summed over
// cores:
//
//	sparsecast_switch_info{name}                                gauge, always 1
//	sparsecast_switch_port_receive_packets_total{port}          counter
//	sparsecast_switch_port_receive_bytes_total{port}            counter
//	sparsecast_switch_port_transmit_packets_total{port}         counter
//	sparsecast_switch_port_transmit_bytes_total{port}           counter
//	sparsecast_switch_port_kernel_drops_total{port}             counter, from the PortStats hook
//	sparsecast_switch_drops_total{reason}                       counter, every DropReason, even at 0
//	sparsecast_switch_replication_fanout                        histogram, buckets dataplane.FanoutBounds
//	sparsecast_switch_worker_polls_total{worker}                counter
//	sparsecast_switch_worker_sleeps_total{worker}               counter
//	sparsecast_switch_ring_batches_applied_total                counter, control ring batches published
//	sparsecast_switch_ring_rejected_total{reason}               counter, every headers.Reject* reason, even at 0
//	sparsecast_switch_ring_generation                           gauge, last applied generation
//	sparsecast_switch_ring_events_dropped_total                 counter, events the full event ring refused
//	sparsecast_switch_ring_applier_stalls_total                 counter, gaps over 2 µs in a busy applier's polling
//	sparsecast_switch_ring_applier_stall_seconds_total          counter, their total length
//	sparsecast_switch_ring_bad_records_total                    counter, command records that failed their check
//	sparsecast_switch_ring_resyncs_total                        counter, impossible ring indexes skipped over
//	sparsecast_switch_ring_faults_total                         counter, faults in the mapped ring file (dropped, reopened)
//	sparsecast_switch_ring_reopens_total                        counter, rings reopened after a fault
//	sparsecast_switch_ring_connected                            gauge, 1 while the ring is mapped
//	sparsecast_switch_port_device_*_total{port}                 counters of a port's device (DPDK), device.go
//	sparsecast_switch_fault_requests_total{result}              counter, runtime fault requests applied or rejected, fault.go
//	sparsecast_switch_config_reloads_total{result}              counter, SIGHUP reloads applied or rejected, reload.go
//
// The ring series are exported when WithRing gives the applier's counters
// (a switch with a control ring), every rejection reason even at 0.

package metrics

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/headers"
)

const (
	namespace = "sparsecast"
	subsystem = "switch"
)

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, labels, nil)
}

var (
	infoDesc = newDesc("info",
		"Constant 1, labelled with the switch's configured name.", "name")
	rxPacketsDesc = newDesc("port_receive_packets_total",
		"Packets received on a port, summed over workers.", "port")
	rxBytesDesc = newDesc("port_receive_bytes_total",
		"Bytes received on a port, summed over workers.", "port")
	txPacketsDesc = newDesc("port_transmit_packets_total",
		"Packets transmitted on a port, summed over workers.", "port")
	txBytesDesc = newDesc("port_transmit_bytes_total",
		"Bytes transmitted on a port, summed over workers.", "port")
	kernelDropsDesc = newDesc("port_kernel_drops_total",
		"Packets the kernel dropped before the switch read them (e.g. a full AF_PACKET ring).", "port")
	dropsDesc = newDesc("drops_total",
		"Packets (or, for no_route and ingress_port, receivers of a packet) not forwarded, by reason, summed over workers. Reasons: "+
			labelValues(int(dataplane.NumDropReasons), func(i int) string { return dataplane.DropReason(i).String() })+".", "reason")
	fanoutDesc = newDesc("replication_fanout",
		"Copies sent per forwarded DATA packet.")
	pollsDesc = newDesc("worker_polls_total",
		"Poll loop iterations of a worker.", "worker")
	sleepsDesc = newDesc("worker_sleeps_total",
		"Times a worker blocked waiting for traffic (adaptive poll mode).", "worker")
	feedbackDesc = newDesc("feedback_total",
		"Feedback packets by SMH type (ACK, NACK, CNP, ABORT) and what the aggregate stage did: in, up, absorbed, suppressed, generated, unknown, evicted.", "type", "action")
	evictedDesc = newDesc("feedback_streams_evicted_total",
		"Streams whose aggregation state was dropped for lack of room (feedback.streams).")
	expiredDesc = newDesc("feedback_streams_expired_total",
		"Streams whose aggregation state was freed after feedback.idle_timeout without DATA or feedback.")
	restartedDesc = newDesc("feedback_streams_restarted_total",
		"Streams whose aggregation state was restarted by DATA of a new Transfer Epoch (a new transfer on the same source and session).")
	ringAppliedDesc = newDesc("ring_batches_applied_total",
		"Control ring batches applied and published.")
	ringRejectedDesc = newDesc("ring_rejected_total",
		"Control ring batches (or stray records) refused, by the first bad record's reason: "+
			labelValues(headers.NumRejectCodes-1, func(i int) string { return headers.RejectReason(uint32(i + 1)) })+".", "reason")
	ringGenerationDesc = newDesc("ring_generation",
		"Generation of the last control ring batch applied (0: none since start).")
	ringDroppedDesc = newDesc("ring_events_dropped_total",
		"Events to the control process dropped because the event ring was full.")
	ringStallsDesc = newDesc("ring_applier_stalls_total",
		"Gaps of over 2 µs between two polls of the command ring by a busy-polling applier (control_poll_mode: busy): its CPU was busy elsewhere, and a command arriving then waited.")
	ringBadRecordsDesc = newDesc("ring_bad_records_total",
		"Control ring command records that failed their check, counted as they arrive (even inside a batch that never ends).")
	ringResyncsDesc = newDesc("ring_resyncs_total",
		"Times the command ring's indexes were impossible (a corrupted ring file) and the applier skipped to the producer's.")
	ringFaultsDesc = newDesc("ring_faults_total",
		"Memory faults in the mapped control ring file (it shrank under the mapping): the ring was dropped and reopened, forwarding went on.")
	ringReopensDesc = newDesc("ring_reopens_total",
		"Control rings reopened after a fault.")
	ringConnectedDesc = newDesc("ring_connected",
		"1 while the control ring is mapped, 0 from a fault until its reopen.")
	ringStallSecondsDesc = newDesc("ring_applier_stall_seconds_total",
		"Total length of the busy-polling applier's stalls.")
)

// labelValues lists the n values of an enumerated label for a HELP text,
// so /metrics itself says which values a label takes.
func labelValues(n int, name func(int) string) string {
	names := make([]string, n)
	for i := range names {
		names[i] = name(i)
	}
	return strings.Join(names, ", ")
}

// PortStat is what a port type counts outside the workers' counters.
type PortStat struct {
	// Port is the port's configured name; it becomes the port label.
	Port string
	// KernelDrops counts packets the kernel dropped for this port before the
	// switch could read them (for AF_PACKET, tp_drops of PACKET_STATISTICS,
	// accumulated by the port since the kernel resets it on every read).
	KernelDrops uint64
	// TooBig counts frames the port dropped on receive because they did
	// not fit its ring's frames or the pool's buffers (the kernel truncated
	// them), and on transmit because they did not fit a transmit ring
	// slot; exported in drops_total{reason="too_big"} with the workers'.
	TooBig uint64
}

// OversizeCounter is implemented by ports that drop received frames too
// big for their buffers before a worker sees them.
type OversizeCounter interface {
	RxOversize() uint64
}

// TxOversizeCounter is implemented by ports that drop frames too big for
// their transmit rings.
type TxOversizeCounter interface {
	TxOversize() uint64
}

// KernelDropCounter is implemented by ports whose kernel counts drops that
// the switch never sees. KernelDrops returns the running total since the port
// opened; it is called at scrape time, concurrently with the workers.
type KernelDropCounter interface {
	KernelDrops() uint64
}

// PortStatsOf returns a hook for WithPortStats that asks every port
// implementing KernelDropCounter for its kernel drops and skips the others.
func PortStatsOf(ports []dataplane.Port) func() []PortStat {
	return func() []PortStat {
		var stats []PortStat
		for _, p := range ports {
			if kd, ok := p.(KernelDropCounter); ok {
				st := PortStat{Port: p.Name(), KernelDrops: kd.KernelDrops()}
				if oc, ok := p.(OversizeCounter); ok {
					st.TooBig = oc.RxOversize()
				}
				if oc, ok := p.(TxOversizeCounter); ok {
					st.TooBig += oc.TxOversize()
				}
				stats = append(stats, st)
			}
		}
		return stats
	}
}

// Option configures a switch collector.
type Option func(*switchCollector)

// WithPortStats adds a hook, called once per scrape, whose stats are exported
// as sparsecast_switch_port_kernel_drops_total{port}. Ports missing from its
// result get no sample; port names must be unique within one result.
func WithPortStats(f func() []PortStat) Option {
	return func(c *switchCollector) { c.portStats = f }
}

type switchCollector struct {
	name        string
	ports       []string
	cores       []*dataplane.CoreCounters
	portStats   func() []PortStat
	deviceStats func() []DeviceStat
	ring        *dataplane.RingCounters
	faults      *dataplane.FaultCounters
	reloads     *dataplane.ReloadCounters
}

// WithRing exports the control ring applier's counters (RingApplier.Counters).
func WithRing(rc *dataplane.RingCounters) Option {
	return func(c *switchCollector) { c.ring = rc }
}

// NewSwitchCollector returns a collector over the counters of one switch.
// ports[i] names the port whose counters are CoreCounters.Ports[i]; cores has
// one entry per worker, and the worker label is its index in cores. The
// slices are kept, not copied, and must not change after the call. It panics
// if a port name is empty or repeated, which would make every scrape fail.
func NewSwitchCollector(name string, ports []string, cores []*dataplane.CoreCounters, opts ...Option) prometheus.Collector {
	seen := make(map[string]bool, len(ports))
	for _, p := range ports {
		if p == "" || seen[p] {
			panic(fmt.Sprintf("metrics: port name %q is empty or repeated", p))
		}
		seen[p] = true
	}
	c := &switchCollector{name: name, ports: ports, cores: cores}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Describe sends every descriptor the collector may use.
func (c *switchCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		infoDesc, rxPacketsDesc, rxBytesDesc, txPacketsDesc, txBytesDesc,
		kernelDropsDesc, dropsDesc, fanoutDesc, pollsDesc, sleepsDesc,
		ringAppliedDesc, ringRejectedDesc, ringGenerationDesc, ringDroppedDesc, ringStallsDesc, ringStallSecondsDesc,
		ringBadRecordsDesc, ringResyncsDesc, ringFaultsDesc, ringReopensDesc, ringConnectedDesc,
		feedbackDesc, evictedDesc, expiredDesc, restartedDesc, faultRequestsDesc, configReloadsDesc,
	} {
		ch <- d
	}
	for _, d := range deviceDescs {
		ch <- d
	}
}

// Collect loads the counters, sums them over cores and sends const metrics.
func (c *switchCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(infoDesc, prometheus.GaugeValue, 1, c.name)
	c.collectPorts(ch)
	var tooBig uint64
	if c.portStats != nil {
		for _, s := range c.portStats() {
			ch <- prometheus.MustNewConstMetric(kernelDropsDesc, prometheus.CounterValue, float64(s.KernelDrops), s.Port)
			tooBig += s.TooBig
		}
	}
	c.collectDevices(ch)
	c.collectDrops(ch, tooBig)
	c.collectFanout(ch)
	c.collectWorkers(ch)
	c.collectRing(ch)
	c.collectFeedback(ch)
	c.collectFaults(ch)
	c.collectReloads(ch)
}

// collectFeedback exports the aggregate stage's counters by SMH feedback
// type and action (docs/feedback.md): both label sets are fixed lists.
func (c *switchCollector) collectFeedback(ch chan<- prometheus.Metric) {
	var counts [dataplane.NumFbTypes][dataplane.NumFbActions]uint64
	var evicted, expired, restarted uint64
	for _, core := range c.cores {
		for t := range counts {
			for a := range counts[t] {
				counts[t][a] += core.Feedback[t][a].Load()
			}
		}
		evicted += core.StreamsEvicted.Load()
		expired += core.StreamsExpired.Load()
		restarted += core.StreamsRestarted.Load()
	}
	for t := headers.TypeACK; t <= headers.TypeABORT; t++ {
		for a := range counts[t] {
			ch <- prometheus.MustNewConstMetric(feedbackDesc, prometheus.CounterValue, float64(counts[t][a]), t.String(), dataplane.FbActionName(a))
		}
	}
	ch <- prometheus.MustNewConstMetric(evictedDesc, prometheus.CounterValue, float64(evicted))
	ch <- prometheus.MustNewConstMetric(expiredDesc, prometheus.CounterValue, float64(expired))
	ch <- prometheus.MustNewConstMetric(restartedDesc, prometheus.CounterValue, float64(restarted))
}

func (c *switchCollector) collectRing(ch chan<- prometheus.Metric) {
	r := c.ring
	if r == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(ringAppliedDesc, prometheus.CounterValue, float64(r.BatchesApplied.Load()))
	for code := 1; code < len(r.Rejected); code++ {
		ch <- prometheus.MustNewConstMetric(ringRejectedDesc, prometheus.CounterValue, float64(r.Rejected[code].Load()), headers.RejectReason(uint32(code)))
	}
	ch <- prometheus.MustNewConstMetric(ringGenerationDesc, prometheus.GaugeValue, float64(r.Generation.Load()))
	ch <- prometheus.MustNewConstMetric(ringDroppedDesc, prometheus.CounterValue, float64(r.EventsDropped.Load()))
	ch <- prometheus.MustNewConstMetric(ringStallsDesc, prometheus.CounterValue, float64(r.Stalls.Load()))
	ch <- prometheus.MustNewConstMetric(ringStallSecondsDesc, prometheus.CounterValue, float64(r.StallNanos.Load())/1e9)
	ch <- prometheus.MustNewConstMetric(ringBadRecordsDesc, prometheus.CounterValue, float64(r.BadRecords.Load()))
	ch <- prometheus.MustNewConstMetric(ringResyncsDesc, prometheus.CounterValue, float64(r.Resyncs.Load()))
	ch <- prometheus.MustNewConstMetric(ringFaultsDesc, prometheus.CounterValue, float64(r.Faults.Load()))
	ch <- prometheus.MustNewConstMetric(ringReopensDesc, prometheus.CounterValue, float64(r.Reopens.Load()))
	ch <- prometheus.MustNewConstMetric(ringConnectedDesc, prometheus.GaugeValue, float64(r.Connected.Load()))
}

func (c *switchCollector) collectPorts(ch chan<- prometheus.Metric) {
	for i, port := range c.ports {
		var rxp, rxb, txp, txb uint64
		for _, core := range c.cores {
			if i >= len(core.Ports) {
				continue
			}
			pc := &core.Ports[i]
			rxp += pc.RxPackets.Load()
			rxb += pc.RxBytes.Load()
			txp += pc.TxPackets.Load()
			txb += pc.TxBytes.Load()
		}
		ch <- prometheus.MustNewConstMetric(rxPacketsDesc, prometheus.CounterValue, float64(rxp), port)
		ch <- prometheus.MustNewConstMetric(rxBytesDesc, prometheus.CounterValue, float64(rxb), port)
		ch <- prometheus.MustNewConstMetric(txPacketsDesc, prometheus.CounterValue, float64(txp), port)
		ch <- prometheus.MustNewConstMetric(txBytesDesc, prometheus.CounterValue, float64(txb), port)
	}
}

// collectDrops sends drops_total by reason; tooBig is the ports' own
// oversize receive drops, which no worker saw.
func (c *switchCollector) collectDrops(ch chan<- prometheus.Metric, tooBig uint64) {
	var drops [dataplane.NumDropReasons]uint64
	drops[dataplane.DropTooBig] = tooBig
	for _, core := range c.cores {
		for r := range drops {
			drops[r] += core.Drops[r].Load()
		}
	}
	for r, n := range drops {
		ch <- prometheus.MustNewConstMetric(dropsDesc, prometheus.CounterValue, float64(n), dataplane.DropReason(r).String())
	}
}

// collectFanout turns the per-core, per-bucket counts into one cumulative
// histogram. The count is the sum of the buckets as loaded, so the +Inf bucket
// always equals it; the sum is loaded separately and may be a few packets
// ahead of or behind the buckets under traffic.
func (c *switchCollector) collectFanout(ch chan<- prometheus.Metric) {
	var counts [len(dataplane.FanoutBounds) + 1]uint64
	var sum uint64
	for _, core := range c.cores {
		for i := range counts {
			counts[i] += core.FanoutBuckets[i].Load()
		}
		sum += core.FanoutSum.Load()
	}
	buckets := make(map[float64]uint64, len(dataplane.FanoutBounds))
	var cum uint64
	for i, le := range dataplane.FanoutBounds {
		cum += counts[i]
		buckets[le] = cum
	}
	cum += counts[len(dataplane.FanoutBounds)]
	ch <- prometheus.MustNewConstHistogram(fanoutDesc, cum, float64(sum), buckets)
}

func (c *switchCollector) collectWorkers(ch chan<- prometheus.Metric) {
	for w, core := range c.cores {
		id := strconv.Itoa(w)
		ch <- prometheus.MustNewConstMetric(pollsDesc, prometheus.CounterValue, float64(core.Polls.Load()), id)
		ch <- prometheus.MustNewConstMetric(sleepsDesc, prometheus.CounterValue, float64(core.Sleeps.Load()), id)
	}
}
