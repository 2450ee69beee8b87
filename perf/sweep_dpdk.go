//go:build dpdk

// The sweep's DPDK backend: the switch of `bench dpdk` (benchSwitch), from
// a net_null device to fan-out net_null devices, one point at a time in one
// process (one EAL), each point on devices numbered after the last point's.
package perf

import (
	"context"
	"fmt"
	"os"
)

// maxDPDKPorts is RTE_MAX_ETHPORTS in Debian's DPDK 22.11 build.
const maxDPDKPorts = 32

func init() { sweepDPDKPoint = dpdkPoint }

func dpdkPoint(ctx context.Context, o *SweepOptions, fanout, size, base int) (SweepPoint, error) {
	p := SweepPoint{Backend: BackendDPDK, Fanout: fanout, Size: size}
	if fanout+1 > maxDPDKPorts {
		p.Skipped = fmt.Sprintf("%s (%d ports; RTE_MAX_ETHPORTS is %d)", SkipPorts, fanout+1, maxDPDKPorts)
		return p, nil
	}
	frame, err := benchFrame(fanout, size)
	if err != nil {
		return p, err
	}
	eal := o.EAL
	if len(eal) == 0 {
		eal = append([]string{"-l", fmt.Sprint(o.CPU)}, benchEAL(fmt.Sprintf("sc-sweep-%d", os.Getpid()), o.HugeDir)...)
	}
	do := DPDKOptions{Vdev: "net_null", Fanout: fanout, Size: size, Seconds: o.SecondsPerPoint, CPU: o.CPU,
		EAL: eal, DeviceBase: base}
	r := &DPDKResult{Vdev: do.Vdev, Fanout: fanout, Size: size, CPU: o.CPU, EAL: eal}
	if err := benchSwitch(ctx, do, r, frame); err != nil {
		return p, err
	}
	p.IngressMpps, p.EgressMpps, p.NsPerPacket = r.SwitchMpps, r.EgressMpps, r.NsPerPacket
	p.EgressGbps = r.EgressMpps * float64(size) * 8 / 1e3
	if r.EgressMpps > 0 {
		p.NsPerCopy = 1e3 / r.EgressMpps
	}
	return p, nil
}
