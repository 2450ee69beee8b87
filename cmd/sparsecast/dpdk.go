// `sparsecast bench dpdk`: the command's flags and output. The run itself
// needs DPDK (dpdk_on.go, build tag dpdk); without it the command explains
// how to build it (dpdk_off.go).
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
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
	HugeDir   string
	// CPUProfile is a file for a CPU profile (pprof) of the switch's
	// measured window.
	CPUProfile string
}

// hugeDirEnv names a hugetlbfs mount for the DPDK benches: the one
// testbeds/dpdk/with-hugepages.sh makes (and make bench-dpdk uses).
const hugeDirEnv = "SPARSECAST_DPDK_HUGE_DIR"

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
ratios. DPDK runs without PCI, and on 2 MiB hugepages from --huge-dir
(make bench-dpdk reserves and mounts them for the run) or, without it, on
ordinary 4 KiB pages (--no-huge -m 1024): on a VM with nested paging that
makes every forwarder, testpmd too, several times slower.`,
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
			if err := checkHugeDir(o.HugeDir); err != nil {
				return err
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
	cmd.Flags().StringVar(&o.HugeDir, "huge-dir", os.Getenv(hugeDirEnv), "a hugetlbfs mount for DPDK's memory, this process's and testpmd's (default $"+hugeDirEnv+", which make bench-dpdk sets; empty: --no-huge)")
	cmd.Flags().StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile (pprof) of the switch's measured window to this file")
	return cmd
}

// checkHugeDir refuses a --huge-dir that is not a hugetlbfs mount before
// EAL does so less clearly (or falls back to another mount).
func checkHugeDir(dir string) error {
	if dir == "" {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("--huge-dir %q: %w", dir, err)
	}
	if st.Type != unix.HUGETLBFS_MAGIC {
		return fmt.Errorf("--huge-dir %q: not a hugetlbfs mount (testbeds/dpdk/with-hugepages.sh makes one)", dir)
	}
	return nil
}
