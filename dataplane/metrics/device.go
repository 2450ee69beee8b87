// A device's own counters: what a port's driver counts below the switch
// (DPDK's rte_eth_stats). In: a hook, called once per scrape, returning one
// DeviceStat per port that has a device; out, per such port:
//
//	sparsecast_switch_port_device_receive_packets_total{port}   counter, ipackets
//	sparsecast_switch_port_device_transmit_packets_total{port}  counter, opackets
//	sparsecast_switch_port_device_receive_missed_total{port}    counter, imissed
//	sparsecast_switch_port_device_receive_errors_total{port}    counter, ierrors
//	sparsecast_switch_port_device_transmit_errors_total{port}   counter, oerrors
//	sparsecast_switch_port_device_receive_nombuf_total{port}    counter, rx_nombuf
//
// DeviceStatsOf finds the ports with a device through a reader that only
// the DPDK build sets (device_dpdk.go), so only that build has the series.

package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sparsecast/sparsecast/dataplane"
)

// DeviceStats are a device's counters since it started.
type DeviceStats struct {
	RxPackets, TxPackets uint64
	// RxMissed: frames the device dropped for want of room in its receive
	// ring (the switch polled too slowly); RxNoMbuf: receive buffer
	// allocation failures.
	RxMissed, RxErrors, TxErrors, RxNoMbuf uint64
}

// DeviceStat is one port's device counters; Port becomes the port label.
type DeviceStat struct {
	Port string
	DeviceStats
}

// WithDeviceStats adds a hook, called once per scrape, whose stats are
// exported as the sparsecast_switch_port_device_* series.
func WithDeviceStats(f func() []DeviceStat) Option {
	return func(c *switchCollector) { c.deviceStats = f }
}

// readDevice reads a port's device counters; ok is false for ports without
// a device. Set by device_dpdk.go.
var readDevice func(p dataplane.Port) (s DeviceStats, ok bool)

// DeviceStatsOf returns a hook for WithDeviceStats over the ports that have
// device counters (DPDK ports, in a DPDK build; none otherwise).
func DeviceStatsOf(ports []dataplane.Port) func() []DeviceStat {
	return func() []DeviceStat {
		if readDevice == nil {
			return nil
		}
		var stats []DeviceStat
		for _, p := range ports {
			if s, ok := readDevice(p); ok {
				stats = append(stats, DeviceStat{Port: p.Name(), DeviceStats: s})
			}
		}
		return stats
	}
}

var (
	devRxPacketsDesc = newDesc("port_device_receive_packets_total",
		"Frames the port's device received (DPDK ipackets).", "port")
	devTxPacketsDesc = newDesc("port_device_transmit_packets_total",
		"Frames the port's device transmitted (DPDK opackets).", "port")
	devRxMissedDesc = newDesc("port_device_receive_missed_total",
		"Frames the port's device dropped with its receive ring full (DPDK imissed).", "port")
	devRxErrorsDesc = newDesc("port_device_receive_errors_total",
		"Erroneous frames the port's device received (DPDK ierrors).", "port")
	devTxErrorsDesc = newDesc("port_device_transmit_errors_total",
		"Frames the port's device failed to transmit (DPDK oerrors).", "port")
	devRxNoMbufDesc = newDesc("port_device_receive_nombuf_total",
		"Receive buffer allocation failures of the port's device (DPDK rx_nombuf).", "port")
	deviceDescs = []*prometheus.Desc{devRxPacketsDesc, devTxPacketsDesc, devRxMissedDesc, devRxErrorsDesc, devTxErrorsDesc, devRxNoMbufDesc}
)

func (c *switchCollector) collectDevices(ch chan<- prometheus.Metric) {
	if c.deviceStats == nil {
		return
	}
	for _, s := range c.deviceStats() {
		for i, v := range [...]uint64{s.RxPackets, s.TxPackets, s.RxMissed, s.RxErrors, s.TxErrors, s.RxNoMbuf} {
			ch <- prometheus.MustNewConstMetric(deviceDescs[i], prometheus.CounterValue, float64(v), s.Port)
		}
	}
}
