// `sparsecast bench transfer`: a reliable transfer's goodput against the
// leaf-spine lab's raw capacity, both measured in one run
// (perf/transfer_veth.go).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/perf"
	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// BenchTransferOptions are the flags of `bench transfer`.
type BenchTransferOptions struct {
	Out, Log io.Writer
	perf.TransferBenchOptions
	Verbose bool
	JSON    bool
}

// NewCmdBenchTransfer builds `sparsecast bench transfer`.
func NewCmdBenchTransfer(runF func(*BenchTransferOptions) error) *cobra.Command {
	o := &BenchTransferOptions{}
	cmd := &cobra.Command{
		Use:   "transfer [--testbed PREFIX] [--size BYTES] [--json]",
		Short: "Reliable transfer goodput against the leaf-spine lab's raw capacity, measured in one run (root)",
		Long: `Measures, on one leaf-spine lab fabric and between the hosts "testbed run
checkpoint" uses (h11 to h21, h31 and h41 on testbeds/leafspine.yaml):

  capacity  unreliable "sparsecast send" streams of 1400-byte payloads,
            --step long each, at rates doubled from --start-rate while
            every receiver loses at most --max-loss, then bisected between
            the last good and the first bad rate; a step carried the rate its slowest receiver
            got the packets at (received over the sending time plus the
            growth of the one-way delay: the switches' rings queue a second
            of what they cannot forward rather than drop it), and
            capacity_MBps is the highest carried rate of a good step times
            1400 bytes;
  goodput   a reliable --size transfer ("sparsecast send FILE", congestion
            control on) to the same receivers, every copy checked;
            goodput_MBps is the file's bytes over the sender's transfer
            time, ratio is goodput over capacity, and
            retransmissions_per_original the transfer's repairs per packet.

By default the fabric is a testbed of its own (--topology, prefix scbt-),
built first and taken down afterwards; with --testbed PREFIX it runs on the
testbed that is up under that prefix and leaves it up. MB are 10^6 bytes.`,
		Example: `  sparsecast bench transfer
  sparsecast bench transfer --testbed sc- --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out, o.Log = cmd.OutOrStdout(), cmd.ErrOrStderr()
			if o.Testbed != "" {
				if err := lab.CheckPrefix(o.Testbed); err != nil {
					return fmt.Errorf("--testbed: %w", err)
				}
				if cmd.Flags().Changed("topology") {
					return fmt.Errorf("--topology builds a fabric of the benchmark's own; --testbed uses a running one")
				}
			}
			// Zero is "the default" to perf, never a value to ask for here.
			if o.Size == 0 || o.StepDuration == 0 || o.StartRate == 0 || o.MaxLoss == 0 || o.Timeout == 0 {
				return fmt.Errorf("--size, --step, --start-rate, --max-loss and --timeout want values above 0")
			}
			if err := o.Check(); err != nil {
				return err
			}
			if err := defaultBinary(&o.Binary); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return benchTransferRun(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Topology, "topology", "testbeds/leafspine.yaml", "fabric of the benchmark's own testbed")
	f.StringVar(&o.Testbed, "testbed", "", "measure on the running testbed of this prefix instead")
	f.IntVar(&o.Size, "size", 64<<20, "reliable transfer's file size in bytes")
	f.DurationVar(&o.StepDuration, "step", time.Second, "length of each capacity step's stream")
	f.Float64Var(&o.StartRate, "start-rate", 10000, "first capacity step's rate, packets per second")
	f.Float64Var(&o.MaxLoss, "max-loss", 0.001, "the loss of the worst receiver a good capacity step may have")
	f.IntVar(&o.Bisections, "bisections", 3, "capacity steps between the last good and the first bad rate")
	f.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "stop the reliable transfer after this long")
	f.IntVar(&o.Window, "window", 0, "the reliable transfer's sender and receiver window in packets (0: send's and recv's default, 8192)")
	f.StringVar(&o.Binary, "binary", "", "sparsecast binary for the lab's processes (default: this one)")
	f.BoolVarP(&o.Verbose, "verbose", "v", false, "print each step as it runs")
	f.BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

func benchTransferRun(ctx context.Context, o *BenchTransferOptions) error {
	if err := needRoot("bench transfer"); err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.Verbose || !o.JSON {
		o.TransferBenchOptions.Log = func(format string, args ...any) { fmt.Fprintf(o.Log, format+"\n", args...) }
	}
	r, err := perf.BenchTransfer(ctx, o.TransferBenchOptions)
	if err != nil {
		return err
	}
	if err := printResult(o.Out, o.JSON, r, r.Table()); err != nil {
		return err
	}
	if !r.DeliveredOK {
		return fmt.Errorf("bench transfer: the reliable transfer was not delivered to every receiver")
	}
	return nil
}
