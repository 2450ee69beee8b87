package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// BenchFailoverOptions are the flags of `bench failover`.
type BenchFailoverOptions struct {
	Out      io.Writer
	Log      io.Writer
	Topology string
	Link     string
	Rate     float64
	Duration time.Duration
	FailAt   time.Duration
	Binary   string
	Dir      string
	JSON     bool
}

func newBenchFailoverCmd(runF func(*BenchFailoverOptions) error) *cobra.Command {
	o := &BenchFailoverOptions{Out: os.Stdout, Log: os.Stderr}
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Fail a link mid-stream in a veth lab fabric and measure detection, repair and loss (root)",
		Long: `Builds the fabric of --topology in network namespaces (a switch process per
switch, probes between switches), streams SMH at --rate from the sender to
every receiver, takes --link down with 'ip link set down' at --fail-at, and
reports detect_us (link down to the first switch's detection), reroute_us
(link down to the rerouted table being published on the switch upstream of
the link), repair_us (link down to the first packet for an affected
receiver arriving over the backup path, kernel receive timestamp at the
switch in front of it), lost_affected (packets lost by receivers whose
primary path used the link) and lost_unaffected (by all others), and
losses: every receiver's losses by cause. Stall losses are those a starved
process explains: drops counted on the receiver's path (switch ring drops,
switch queue_full and no_buffer drops, veth tx_dropped, the host's UDP
RcvbufErrors and NoPorts; while probes had a healthy link down, the
switches' no_route, hop_limit and ingress_port drops) and losses every
receiver shared near a run of packets the sender sent late (its pacing
lag). The rest are the reroute's at affected receivers (at most
reroute_bound each) and unexplained otherwise: a correct reroute has none
unexplained.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Rate <= 0 || o.Duration <= 0 || o.FailAt < 0 || o.FailAt >= o.Duration {
				return fmt.Errorf("want --rate > 0, --duration > 0 and --fail-at inside the stream")
			}
			if err := defaultBinary(&o.Binary); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return benchFailoverRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Topology, "topology", "testbeds/failover.yaml", "fabric description")
	cmd.Flags().StringVar(&o.Link, "link", "", "switch:port of the link to fail (default: the first link on a receiver's path)")
	cmd.Flags().Float64Var(&o.Rate, "rate", 5000, "packets per second")
	cmd.Flags().DurationVar(&o.Duration, "duration", 4*time.Second, "stream length")
	cmd.Flags().DurationVar(&o.FailAt, "fail-at", 2*time.Second, "when to take the link down")
	cmd.Flags().StringVar(&o.Binary, "binary", "", "sparsecast binary for the lab processes (default: this one)")
	cmd.Flags().StringVar(&o.Dir, "dir", "", "directory for configs and logs (default: a temporary one)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

func benchFailoverRun(ctx context.Context, o *BenchFailoverOptions) error {
	if err := needRoot("bench failover"); err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(o.Log, format+"\n", args...) }
	r, err := lab.Failover(ctx, lab.FailoverOptions{
		Topology: o.Topology, Binary: o.Binary, Link: o.Link, Rate: o.Rate,
		Duration: o.Duration, FailAt: o.FailAt, Dir: o.Dir, Log: logf,
	})
	if err != nil {
		return err
	}
	if o.JSON {
		return printJSON(o.Out, r)
	}
	_, err = io.WriteString(o.Out, r.Table())
	return err
}
