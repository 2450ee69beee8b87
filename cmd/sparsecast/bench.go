package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/perf"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the switch: replication rate, and more as the project grows",
	}
	cmd.AddCommand(newBenchReplicateCmd(nil), newBenchFailoverCmd(nil), NewCmdBenchControl(nil), newBenchControlDataplaneCmd(), NewCmdBenchDPDK(nil), NewCmdBenchFeedback(nil), NewCmdBenchSweep(nil), NewCmdBenchVeth(nil), NewCmdBenchTransfer(nil), NewCmdBenchTopology(nil))
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
		return printJSON(o.Out, r)
	}
	fmt.Fprintf(o.Out, "fan-out %d, %d-byte frames, %.1f s on CPU %d\n", r.Fanout, r.Size, r.Seconds, r.CPU)
	fmt.Fprintf(o.Out, "  ingress   %8.3f Mpps   %8.1f ns/packet\n", r.IngressMpps, r.NsPerPacket)
	fmt.Fprintf(o.Out, "  egress    %8.3f Mpps   %8.1f ns/copy   %.2f Gb/s\n", r.EgressMpps, r.NsPerCopy, r.EgressGbps)
	fmt.Fprintf(o.Out, "  allocs    %8.3g per packet\n", r.AllocsPerPacket)
	return nil
}

// BenchControlOptions are the flags of `bench control`.
type BenchControlOptions struct {
	Out       io.Writer
	Updates   int
	Receivers int
	CPU       int
	Interval  time.Duration
	StateDir  string
	JSON      bool
}

// NewCmdBenchControl builds `sparsecast bench control`.
func NewCmdBenchControl(runF func(*BenchControlOptions) error) *cobra.Command {
	o := &BenchControlOptions{}
	cmd := &cobra.Command{
		Use:   "control [--updates N] [--json]",
		Short: "Measure group updates from the control API to the dataplane's published tables",
		Long: `Runs, in a child process, a bench switch with a busy-polling ring applier
on a real ring file in /dev/shm (that process confined to --cpu, which this
one keeps off), and here a control server with its API on a
temporary Unix socket; sends --updates member-add requests one after
another and reports percentiles of (a) control handing the batch to the
ring -> the dataplane publishing it (update_p50_us, update_p99_us; target
p99 <= 10 us) and (b) the HTTP request arriving -> the publish (api_p99_us).
It also reports the applier's stalls, gaps in its polling while its CPU did
something else, and stall_floor_p99_us: the update p99 that those gaps alone
give an applier that takes no time at all, this machine's floor for
update_p99_us. With --state-dir the groups are kept as control run keeps
them, in a bbolt file fsynced before each answer (in a fresh directory
under the given one), so api_p99_us includes the write. Everything it
creates is removed afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			if o.Updates < 1 || o.Updates > 10_000_000 {
				return fmt.Errorf("--updates %d: want 1-10000000", o.Updates)
			}
			if o.Receivers < 1 || o.Receivers > 254 {
				return fmt.Errorf("--receivers %d: want 1-254", o.Receivers)
			}
			if o.CPU < -1 {
				return fmt.Errorf("--cpu %d: want a CPU number, or -1 for none", o.CPU)
			}
			if o.Interval < 0 || o.Interval > time.Second {
				return fmt.Errorf("--interval %v: want 0-1s", o.Interval)
			}
			if runF != nil {
				return runF(o)
			}
			return benchControlRun(cmd.Context(), o)
		},
	}
	cmd.Flags().IntVar(&o.Updates, "updates", 10000, "member-add requests to send")
	cmd.Flags().IntVar(&o.Receivers, "receivers", 64, "receivers (ports) of the bench switch")
	cmd.Flags().IntVar(&o.CPU, "cpu", perf.DefaultControlCPU(), "CPU for the dataplane half and its ring applier, which the control half keeps off (-1: unpinned)")
	cmd.Flags().DurationVar(&o.Interval, "interval", 0, "pace requests: start one every interval (0: back to back)")
	cmd.Flags().StringVar(&o.StateDir, "state-dir", "", "keep the groups in a state file under this directory, as control run does (default: in memory)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

// newBenchControlDataplaneCmd builds the hidden `sparsecast bench
// control-dataplane`, the dataplane half that bench control starts.
func newBenchControlDataplaneCmd() *cobra.Command {
	var ring string
	var receivers, cpu int
	cmd := &cobra.Command{
		Use:    "control-dataplane --ring FILE",
		Short:  "The dataplane half of bench control (started by it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ring == "" {
				return fmt.Errorf("--ring: required")
			}
			return perf.RunControlDataplane(cmd.Context(), ring, receivers, cpu, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&ring, "ring", "", "ring file to create")
	cmd.Flags().IntVar(&receivers, "receivers", 64, "receivers (ports) of the bench switch")
	cmd.Flags().IntVar(&cpu, "cpu", -1, "CPU to pin the ring applier to (-1: unpinned)")
	return cmd
}

func benchControlRun(ctx context.Context, o *BenchControlOptions) error {
	r, err := perf.BenchControl(ctx, perf.ControlOptions{Updates: o.Updates, Receivers: o.Receivers, CPU: o.CPU, Interval: o.Interval, StateDir: o.StateDir})
	if err != nil {
		return err
	}
	if o.JSON {
		return printJSON(o.Out, r)
	}
	fmt.Fprintf(o.Out, "%d member-add updates (%d applied) over %d receivers in %.2f s (%.0f/s)\n", r.Updates, r.Applied, r.Receivers, r.Seconds, r.UpdatesPerSecond)
	fmt.Fprintf(o.Out, "  ring -> publish   p50 %7.1f us   p99 %7.1f us   max %7.1f us   (target p99 <= %.0f us: %v)\n", r.UpdateP50Us, r.UpdateP99Us, r.UpdateMaxUs, r.TargetP99Us, r.MeetsTarget)
	fmt.Fprintf(o.Out, "  API  -> publish   p50 %7.1f us   p99 %7.1f us\n", r.APIP50Us, r.APIP99Us)
	if r.Stalls > 0 {
		fmt.Fprintf(o.Out, "  applier stalls    %d (%.1f%% of the time); they alone give p99 %.1f us\n", r.Stalls, r.StallPct, r.StallFloorP99Us)
	}
	return nil
}
