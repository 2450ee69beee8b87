// `sparsecast bench dpdk`: the command's flags and output. The run itself
// needs DPDK (dpdk_on.go, build tag dpdk); without it the command explains
// how to build it (dpdk_off.go).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// BenchDPDKOptions are the flags of `bench dpdk`.
type BenchDPDKOptions struct {
	Out       io.Writer
	Vdev      string
	Fanout    int
	Size      int
	Seconds   float64
	CPU       int
	VsTestpmd bool
	JSON      bool
}

// benchDPDKRun runs the benchmark; set by dpdk_on.go or dpdk_off.go.
var benchDPDKRun func(ctx context.Context, o *BenchDPDKOptions) error

// NewCmdBenchDPDK builds `sparsecast bench dpdk`.
func NewCmdBenchDPDK(runF func(*BenchDPDKOptions) error) *cobra.Command {
	o := &BenchDPDKOptions{}
	cmd := &cobra.Command{
		Use:   "dpdk --vdev net_null|net_ring [--fanout K] [--size BYTES] [--vs-testpmd] [--json]",
		Short: "Measure the switch over DPDK virtual devices, against dpdk-testpmd (binaries built with make build-dpdk)",
		Long: `Runs, each on one pinned core: the switch (rx, parse, replicate, tx) with an
input DPDK device and --fanout output devices; an io forwarder through the
same DPDK port code (the Go/DPDK boundary alone); and, with --vs-testpmd,
dpdk-testpmd over two devices of the same kind, in io mode (mbufs moved,
packets never touched) and then in mac mode (each frame's Ethernet
addresses rewritten: the least a header-writing forwarder does). Reports
switch_mpps, egress_mpps, io_mpps, testpmd_mpps, testpmd_mac_mpps and the
ratios. DPDK runs without hugepages (--no-huge -m 1024) and without PCI.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			switch {
			case o.Vdev != "net_null" && o.Vdev != "net_ring":
				return fmt.Errorf("--vdev %q: want net_null or net_ring", o.Vdev)
			case o.Fanout < 1 || o.Fanout > 64:
				return fmt.Errorf("--fanout %d: want 1-64", o.Fanout)
			case o.Seconds <= 0 || o.Seconds > 20:
				return fmt.Errorf("--seconds %v: want more than 0 and at most 20", o.Seconds)
			case o.CPU < 0:
				return fmt.Errorf("--cpu %d: want a CPU number", o.CPU)
			}
			if runF != nil {
				return runF(o)
			}
			return benchDPDKRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Vdev, "vdev", "net_null", "virtual device kind: net_null or net_ring")
	cmd.Flags().IntVar(&o.Fanout, "fanout", 1, "copies per packet (receivers, each on its own output device)")
	cmd.Flags().IntVar(&o.Size, "size", 64, "frame size in bytes")
	cmd.Flags().Float64Var(&o.Seconds, "seconds", 3, "measured duration of each run")
	cmd.Flags().IntVar(&o.CPU, "cpu", 1, "CPU for the forwarding loops (testpmd's forwarding lcore too)")
	cmd.Flags().BoolVar(&o.VsTestpmd, "vs-testpmd", false, "also run dpdk-testpmd --forward-mode=io and =mac on the same kind of device")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
