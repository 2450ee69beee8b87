//go:build dpdk

package main

import (
	"context"
	"fmt"
	"os"

	"github.com/sparsecast/sparsecast/perf"
)

func init() { benchDPDKRun = benchDPDKMeasure }

func benchDPDKMeasure(ctx context.Context, o *BenchDPDKOptions) error {
	po := perf.DPDKOptions{Vdev: o.Vdev, Fanout: o.Fanout, Size: o.Size,
		Seconds: o.Seconds, CPU: o.CPU, VsTestpmd: o.VsTestpmd, HugeDir: o.HugeDir}
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		po.CPUProfile = f
	}
	r, err := perf.BenchDPDK(ctx, po)
	if err != nil {
		return err
	}
	if o.JSON {
		return printJSON(o.Out, r)
	}
	mem := "4 KiB pages (--no-huge)"
	if r.Hugepages {
		mem = "2 MiB hugepages"
	}
	fmt.Fprintf(o.Out, "%s, fan-out %d, %d-byte frames, %.1f s on CPU %d, DPDK memory on %s\n", r.Vdev, r.Fanout, r.Size, r.Seconds, r.CPU, mem)
	if r.SwitchSkipped != "" {
		fmt.Fprintf(o.Out, "  switch    not measured: %s\n", r.SwitchSkipped)
	} else {
		fmt.Fprintf(o.Out, "  switch    %8.3f Mpps in, %8.3f Mpps out   %6.1f ns/packet\n", r.SwitchMpps, r.EgressMpps, r.NsPerPacket)
		fmt.Fprintf(o.Out, "  per CPU-s %8.3f Mpps in, %8.3f Mpps out\n", r.SwitchCPUMpps, r.EgressCPUMpps)
	}
	fmt.Fprintf(o.Out, "  io fwd    %8.3f Mpps (same DPDK port code, no switch)\n", r.IOMpps)
	if r.TestpmdMpps > 0 {
		fmt.Fprintf(o.Out, "  testpmd   %8.3f Mpps (io mode)\n", r.TestpmdMpps)
		fmt.Fprintf(o.Out, "  ratios    switch %.2f, egress %.2f, io %.2f of testpmd\n", r.RatioVsTestpmd, r.EgressVsTestpmd, r.IORatioVsTestpmd)
		fmt.Fprintf(o.Out, "  per CPU-s testpmd %.3f Mpps; switch %.2f, egress %.2f of it\n", r.TestpmdCPUMpps, r.CPURatioVsTestpmd, r.EgressCPUVsTestpmd)
	}
	if r.TestpmdMacMpps > 0 {
		fmt.Fprintf(o.Out, "  testpmd   %8.3f Mpps (mac mode: Ethernet addresses rewritten; %.2f of io mode)\n", r.TestpmdMacMpps, r.TestpmdMacVsIO)
		fmt.Fprintf(o.Out, "  ratios    switch %.2f of testpmd's mac mode\n", r.RatioVsTestpmdMac)
	}
	return nil
}
