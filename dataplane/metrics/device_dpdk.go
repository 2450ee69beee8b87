//go:build dpdk

package metrics

import (
	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/dpdkport"
)

func init() { readDevice = readDPDK }

// readDPDK reads a DPDK port's rte_eth_stats (a cgo call, at scrape time).
// A closed port, or one whose driver fails the read, gives no sample.
func readDPDK(p dataplane.Port) (DeviceStats, bool) {
	dp, ok := p.(*dpdkport.Port)
	if !ok {
		return DeviceStats{}, false
	}
	s, err := dp.Stats()
	if err != nil {
		return DeviceStats{}, false
	}
	d := s.Device
	return DeviceStats{RxPackets: d.RxPackets, TxPackets: d.TxPackets, RxMissed: d.RxMissed,
		RxErrors: d.RxErrors, TxErrors: d.TxErrors, RxNoMbuf: d.RxNoMbuf}, true
}
