//go:build dpdk

package metrics

import (
	"os"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/dpdkport"
)

// TestDeviceStatsDPDK receives from a net_null device and reads its
// counters through DeviceStatsOf, as `switch run` exports them.
func TestDeviceStatsDPDK(t *testing.T) {
	eal := []string{"-l", "0", "--no-pci", "--file-prefix", "sc-metrics-test", "--log-level", "*:error"}
	if dir := os.Getenv("SPARSECAST_DPDK_HUGE_DIR"); dir != "" {
		eal = append(eal, "--huge-dir", dir, "--huge-unlink")
	} else {
		eal = append(eal, "--no-huge", "-m", "512")
	}
	p, err := dpdkport.OpenPort(dpdkport.Options{Name: "n0", Device: "net_null40,size=64", EAL: eal, Mbufs: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	received := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var burst [dataplane.BurstSize]*dataplane.Packet
		for i := 0; i < 10; i++ {
			n, _ := p.RxBurst(nil, burst[:])
			received += n
			for _, pk := range burst[:n] {
				pk.Free()
			}
		}
	}()
	<-done
	got := DeviceStatsOf([]dataplane.Port{p, plainPort{name: "x"}})()
	if len(got) != 1 || got[0].Port != "n0" || got[0].RxPackets < uint64(received) || received == 0 {
		t.Fatalf("DeviceStatsOf = %+v after %d frames received", got, received)
	}
	c := NewSwitchCollector("sw1", []string{"n0", "x"}, []*dataplane.CoreCounters{dataplane.NewCoreCounters(2)},
		WithDeviceStats(DeviceStatsOf([]dataplane.Port{p, plainPort{name: "x"}})))
	if n := testutil.CollectAndCount(c, "sparsecast_switch_port_device_receive_packets_total"); n != 1 {
		t.Errorf("%d receive samples, want 1 (the DPDK port only)", n)
	}
}
