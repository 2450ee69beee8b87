// `sparsecast bench veth`: the switch against tc and kernel multicast
// routing on one veth topology (perf/veth.go).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/perf"
)

// BenchVethOptions are the flags of `bench veth`.
type BenchVethOptions struct {
	Out, Log             io.Writer
	Outputs              int
	Seconds              float64
	Size                 int
	Binary               string
	Prefix               string
	Dir                  string
	KernelOnGeneratorCPU bool
	SkipSmcroute         bool
	RxRing               string
	Tx                   string
	Verbose              bool
	JSON                 bool
}

// NewCmdBenchVeth builds `sparsecast bench veth`.
func NewCmdBenchVeth(runF func(*BenchVethOptions) error) *cobra.Command {
	o := &BenchVethOptions{}
	cmd := &cobra.Command{
		Use:   "veth [--outputs 8] [--seconds N] [--size B] [--json]",
		Short: "Replicate to veths: the switch against a tc mirred chain and kernel multicast routing (smcroute)",
		Long: `Builds three network namespaces (a generator, the device under test with an
ingress veth and --outputs egress veths, a sink that counts and drops) and
measures, one after another on that topology: the switch (switch run, AF_PACKET
ports, one busy-polling worker), a tc u32 + mirred mirror chain on the ingress
veth, and kernel multicast routing with an (S,G) route set by smcroute
(installed with apt-get when missing; if it cannot be, the reason is reported
and the other two are still measured; on a kernel without multicast routing,
no CONFIG_IP_MROUTE, smcroute is skipped and the result says so). The generator sends one frame (IPv4
UDP multicast carrying SMH for one receiver per output) as fast as it can.
Reports per-output packets per second (mean over the outputs, counted by the
egress veths' peers), egress and offered rates, busy time of every CPU, the
switch process's CPU, and the switch's ratios to tc (target 1.2) and to
smcroute (target 2). Needs root; everything it creates is removed afterwards,
and what a crashed run left is removed first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out, o.Log = cmd.OutOrStdout(), cmd.ErrOrStderr()
			switch {
			case o.Outputs < 1 || o.Outputs > 30:
				return fmt.Errorf("--outputs %d: want 1-30", o.Outputs)
			case o.Seconds <= 0 || o.Seconds > 3600:
				return fmt.Errorf("--seconds %v: want more than 0 and at most 3600", o.Seconds)
			case o.Size < 1 || o.Size > 1514:
				return fmt.Errorf("--size %d: want at most 1514 (one Ethernet frame)", o.Size)
			case o.RxRing != "" && o.RxRing != "v2" && o.RxRing != "v3":
				return fmt.Errorf("--rx-ring %q: want v2 or v3", o.RxRing)
			case o.Tx != "" && o.Tx != "ring" && o.Tx != "ring-zerocopy" && o.Tx != "sendmmsg":
				return fmt.Errorf("--tx %q: want ring, ring-zerocopy or sendmmsg", o.Tx)
			}
			if runF != nil {
				return runF(o)
			}
			if err := needRoot("bench veth"); err != nil {
				return err
			}
			if err := defaultBinary(&o.Binary); err != nil {
				return err
			}
			return benchVethRun(cmd.Context(), o)
		},
	}
	cmd.Flags().IntVar(&o.Outputs, "outputs", 8, "egress veths (one receiver each)")
	cmd.Flags().Float64Var(&o.Seconds, "seconds", 5, "measured window of each replicator")
	cmd.Flags().IntVar(&o.Size, "size", 256, "frame size in bytes, Ethernet header included")
	cmd.Flags().StringVar(&o.Binary, "binary", "", "sparsecast binary that runs the switch (default: this one)")
	cmd.Flags().StringVar(&o.Prefix, "prefix", perf.DefaultVethPrefix, "name prefix of the bench's network namespaces")
	cmd.Flags().StringVar(&o.Dir, "dir", "", "directory for switch.yaml and logs (default: a new temporary one)")
	cmd.Flags().BoolVar(&o.KernelOnGeneratorCPU, "kernel-on-generator-cpu", false, "no RPS: tc and smcroute replicate on the generator's CPU")
	cmd.Flags().BoolVar(&o.SkipSmcroute, "skip-smcroute", false, "measure the switch and tc only")
	cmd.Flags().StringVar(&o.RxRing, "rx-ring", "", "the switch ports' AF_PACKET receive ring, v2 or v3 (default: the switch's default)")
	cmd.Flags().StringVar(&o.Tx, "tx", "", "the switch ports' AF_PACKET transmit mode, ring, ring-zerocopy or sendmmsg (default: the switch's default)")
	cmd.Flags().BoolVarP(&o.Verbose, "verbose", "v", false, "print the commands run to stderr")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

func benchVethRun(ctx context.Context, o *BenchVethOptions) error {
	// Interrupted, the bench still takes its namespaces down.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	vo := perf.VethOptions{
		Binary: o.Binary, Outputs: o.Outputs, Seconds: o.Seconds, Size: o.Size,
		Prefix: o.Prefix, Dir: o.Dir, KernelOnGeneratorCPU: o.KernelOnGeneratorCPU, SkipSmcroute: o.SkipSmcroute,
		RxRing: o.RxRing, Tx: o.Tx,
	}
	if o.Verbose {
		vo.Log = o.Log
	}
	r, err := perf.BenchVeth(ctx, vo)
	if err != nil {
		return err
	}
	if o.JSON {
		return printJSON(o.Out, r)
	}
	_, err = io.WriteString(o.Out, vethTable(r))
	return err
}

// vethWhere says where a replicator ran: the switch's worker CPU, or the
// CPU the kernel replicated on (in's RPS CPU, else the generator's).
func vethWhere(r *perf.VethResult, run *perf.VethRun) string {
	switch {
	case run.Replicator == perf.ReplicatorSwitch && r.ReplicatorCPU >= 0:
		return fmt.Sprintf("CPU%d worker", r.ReplicatorCPU)
	case run.Replicator == perf.ReplicatorSwitch:
		return "unpinned"
	case run.RPSCPU >= 0:
		return fmt.Sprintf("CPU%d RPS", run.RPSCPU)
	case r.GeneratorCPU >= 0:
		return fmt.Sprintf("CPU%d", r.GeneratorCPU)
	}
	return "unpinned"
}

// vethTable renders a result for people.
func vethTable(r *perf.VethResult) string {
	var b strings.Builder
	pin := "nothing pinned (one CPU)"
	if r.GeneratorCPU >= 0 {
		pin = fmt.Sprintf("generator (and this process) on CPU %d", r.GeneratorCPU)
	}
	ring := r.RxRing
	if ring == "" {
		ring = "default"
	}
	tx := r.Tx
	if tx == "" {
		tx = "default"
	}
	fmt.Fprintf(&b, "%d outputs, %d-byte frames, %.1f s each, saturating load; %s; switch rx ring %s, tx %s; load average %.2f before\n",
		r.Outputs, r.FrameSize, r.Seconds, pin, ring, tx, r.LoadAvgBefore)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "REPLICATOR\tON\tOFFERED PPS\tINGRESS PPS\tPPS PER OUTPUT\tMIN-MAX\tEGRESS PPS\t")
	for i := range r.CPUs {
		fmt.Fprintf(tw, "CPU%d BUSY (SOFTIRQ)\t", i)
	}
	fmt.Fprint(tw, "SWITCH PROCESS CPU\tREPLICATOR CPU\tCOPIES PER CPU-SECOND\t\n")
	for _, run := range r.Runs() {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f-%.0f\t%.0f\t", run.Replicator, vethWhere(r, run), run.OfferedPPS, run.IngressPPS,
			run.PPSPerOutput, run.MinPPSPerOutput, run.MaxPPSPerOutput, run.EgressPPS)
		for i := range r.CPUs {
			if i < len(run.CPUBusyPct) {
				fmt.Fprintf(tw, "%.0f%% (%.0f%%)\t", run.CPUBusyPct[i], run.CPUSoftirqPct[i])
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		if run.Replicator == perf.ReplicatorSwitch {
			fmt.Fprintf(tw, "%.0f%% (user %.0f%%)\t", run.ProcessCPUPct, run.ProcessUserPct)
		} else {
			fmt.Fprint(tw, "-\t")
		}
		fmt.Fprintf(tw, "%.0f%%\t%.0f\t\n", run.ReplicatorCPUPct, run.EgressPerCPUSecond)
	}
	tw.Flush()
	fmt.Fprintf(&b, "switch / tc:       %.2fx per output (target %.1fx), %.2fx per CPU-second\n", r.RatioVsTC, r.TargetVsTC, r.CPURatioVsTC)
	if r.Smcroute != nil {
		fmt.Fprintf(&b, "switch / smcroute: %.2fx per output (target %.1fx), %.2fx per CPU-second\n", r.RatioVsSmcroute, r.TargetVsSmcroute, r.CPURatioVsSmcroute)
	}
	if r.SmcrouteError != "" {
		fmt.Fprintf(&b, "smcroute not measured: %s\n", r.SmcrouteError)
	}
	fmt.Fprintf(&b, "logs and configuration in %s\n", r.Dir)
	return b.String()
}
