package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sparsecast/sparsecast/dataplane"
)

func TestDeviceStatsExported(t *testing.T) {
	hook := func() []DeviceStat {
		return []DeviceStat{
			{Port: "d0", DeviceStats: DeviceStats{RxPackets: 1000, TxPackets: 900, RxMissed: 7, RxErrors: 1, TxErrors: 2, RxNoMbuf: 3}},
			{Port: "d1", DeviceStats: DeviceStats{TxPackets: 5}},
		}
	}
	c := NewSwitchCollector("sw1", []string{"d0", "d1"}, []*dataplane.CoreCounters{dataplane.NewCoreCounters(2)}, WithDeviceStats(hook))
	want := `
# HELP sparsecast_switch_port_device_receive_missed_total Frames the port's device dropped with its receive ring full (DPDK imissed).
# TYPE sparsecast_switch_port_device_receive_missed_total counter
sparsecast_switch_port_device_receive_missed_total{port="d0"} 7
sparsecast_switch_port_device_receive_missed_total{port="d1"} 0
# HELP sparsecast_switch_port_device_receive_nombuf_total Receive buffer allocation failures of the port's device (DPDK rx_nombuf).
# TYPE sparsecast_switch_port_device_receive_nombuf_total counter
sparsecast_switch_port_device_receive_nombuf_total{port="d0"} 3
sparsecast_switch_port_device_receive_nombuf_total{port="d1"} 0
# HELP sparsecast_switch_port_device_receive_packets_total Frames the port's device received (DPDK ipackets).
# TYPE sparsecast_switch_port_device_receive_packets_total counter
sparsecast_switch_port_device_receive_packets_total{port="d0"} 1000
sparsecast_switch_port_device_receive_packets_total{port="d1"} 0
# HELP sparsecast_switch_port_device_transmit_errors_total Frames the port's device failed to transmit (DPDK oerrors).
# TYPE sparsecast_switch_port_device_transmit_errors_total counter
sparsecast_switch_port_device_transmit_errors_total{port="d0"} 2
sparsecast_switch_port_device_transmit_errors_total{port="d1"} 0
# HELP sparsecast_switch_port_device_transmit_packets_total Frames the port's device transmitted (DPDK opackets).
# TYPE sparsecast_switch_port_device_transmit_packets_total counter
sparsecast_switch_port_device_transmit_packets_total{port="d0"} 900
sparsecast_switch_port_device_transmit_packets_total{port="d1"} 5
`
	names := []string{
		"sparsecast_switch_port_device_receive_packets_total", "sparsecast_switch_port_device_transmit_packets_total",
		"sparsecast_switch_port_device_receive_missed_total", "sparsecast_switch_port_device_receive_errors_total",
		"sparsecast_switch_port_device_transmit_errors_total", "sparsecast_switch_port_device_receive_nombuf_total",
	}
	// receive_errors is left out of want on purpose: the comparison must
	// then fail, naming it, which guards the comparison itself.
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err == nil || !strings.Contains(err.Error(), "receive_errors") {
		t.Fatalf("comparison without receive_errors: %v", err)
	}
	want += `# HELP sparsecast_switch_port_device_receive_errors_total Erroneous frames the port's device received (DPDK ierrors).
# TYPE sparsecast_switch_port_device_receive_errors_total counter
sparsecast_switch_port_device_receive_errors_total{port="d0"} 1
sparsecast_switch_port_device_receive_errors_total{port="d1"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	// Without the hook, no device series.
	plain := NewSwitchCollector("sw1", []string{"d0"}, []*dataplane.CoreCounters{dataplane.NewCoreCounters(1)})
	if n := testutil.CollectAndCount(plain, names...); n != 0 {
		t.Errorf("%d device samples without a hook", n)
	}
}

// Ports without a device (here not DPDK ports, in either build) give none.
func TestDeviceStatsOfPlainPorts(t *testing.T) {
	if got := DeviceStatsOf([]dataplane.Port{plainPort{name: "a"}, kdPort{name: "b"}})(); len(got) != 0 {
		t.Fatalf("DeviceStatsOf = %v", got)
	}
}
