package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/perf"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the switch: replication rate, and more as the project grows",
	}
	cmd.AddCommand(newBenchReplicateCmd(nil), newBenchFailoverCmd(nil))
	return cmd
}

// BenchReplicateOptions are the flags of `bench replicate`.
type BenchReplicateOptions struct {
	Out     io.Writer
	Fanout  int
	Size    int
	Seconds float64
	CPU     int
	JSON    bool
}

func newBenchReplicateCmd(runF func(*BenchReplicateOptions) error) *cobra.Command {
	o := &BenchReplicateOptions{Out: os.Stdout}
	cmd := &cobra.Command{
		Use:   "replicate",
		Short: "Run the real replication code over in-memory ports on one pinned core",
		Long: `Runs rx -> parse -> replicate -> tx busy-polling on one core, with a
generator port feeding packets addressed to --fanout receivers, each behind
its own sink port, and reports ingress and egress rates, nanoseconds per
packet and heap allocations per packet in the steady state.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Seconds <= 0 || o.Seconds > 3600 {
				return fmt.Errorf("--seconds %v: want more than 0 and at most 3600", o.Seconds)
			}
			if o.CPU < -1 {
				return fmt.Errorf("--cpu %d: want a CPU number, or -1 for none", o.CPU)
			}
			if runF != nil {
				return runF(o)
			}
			return benchReplicateRun(cmd.Context(), o)
		},
	}
	cmd.Flags().IntVar(&o.Fanout, "fanout", 9, "copies per packet (receivers, each on its own port)")
	cmd.Flags().IntVar(&o.Size, "size", 256, "frame size in bytes, Ethernet header included")
	cmd.Flags().Float64Var(&o.Seconds, "seconds", 3, "measured duration")
	cmd.Flags().IntVar(&o.CPU, "cpu", 0, "CPU to pin the worker to (-1: unpinned)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

func benchReplicateRun(ctx context.Context, o *BenchReplicateOptions) error {
	r, err := perf.BenchReplicate(ctx, perf.ReplicateOptions{Fanout: o.Fanout, Size: o.Size, Seconds: o.Seconds, CPU: o.CPU})
	if err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(o.Out, "fan-out %d, %d-byte frames, %.1f s on CPU %d\n", r.Fanout, r.Size, r.Seconds, r.CPU)
	fmt.Fprintf(o.Out, "  ingress   %8.3f Mpps   %8.1f ns/packet\n", r.IngressMpps, r.NsPerPacket)
	fmt.Fprintf(o.Out, "  egress    %8.3f Mpps   %8.1f ns/copy   %.2f Gb/s\n", r.EgressMpps, r.NsPerCopy, r.EgressGbps)
	fmt.Fprintf(o.Out, "  allocs    %8.3g per packet\n", r.AllocsPerPacket)
	return nil
}
