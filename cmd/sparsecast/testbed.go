package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// newTestbedCmd groups the lab commands: `testbed run SCENARIO` and
// `testbed down`; `testbed up --topology` will join them.
func newTestbedCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "testbed",
		Short: "Build network-namespace labs and run scenarios in them (needs root)",
		Long: `Build labs out of network namespaces and veth pairs on this machine, run
sparsecast switches and endpoints inside them, and check the deliveries.
Every namespace of a lab is named with a prefix (sc- by default), and
"testbed down" removes them all, also after a crash.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdTestbedUp(nil), NewCmdTestbedStatus(nil), newTestbedRunCmd(), NewCmdTestbedDown(nil), NewCmdTestbedTRex(nil), newTestbedGenCmd())
	return cmd
}

func newTestbedRunCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run SCENARIO",
		Short: "Run a scenario: on the testbed that is up, or (single-switch) in a lab of its own",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("name a scenario: %s", strings.Join(scenarioNames(cmd), ", "))
		},
	}
	cmd.AddCommand(NewCmdSingleSwitch(nil), NewCmdRunCheckpoint(nil), NewCmdRunMoE(nil), NewCmdRunFailover(nil), NewCmdRunCopies(nil))
	return cmd
}

// SingleSwitchOptions are `testbed run single-switch`'s flags.
type SingleSwitchOptions struct {
	Out    io.Writer
	ErrOut io.Writer

	Binary      string
	Packets     int
	Receivers   int
	Rate        float64
	Size        int
	Seed        uint64
	Session     int
	IPv6        bool
	IdleTimeout time.Duration
	Prefix      string
	Dir         string
	Verbose     bool
	JSON        bool
}

// NewCmdSingleSwitch builds `testbed run single-switch`.
func NewCmdSingleSwitch(runF func(*SingleSwitchOptions) error) *cobra.Command {
	opts := &SingleSwitchOptions{}
	cmd := &cobra.Command{
		Use:   "single-switch [--packets N] [--json]",
		Short: "One switch, a sender h0 and receivers h1..hN: check every delivery",
		Long: `Build namespaces sw and h0..hN with a veth from each host to a switch port,
run "sparsecast switch run" in sw, "sparsecast recv" in h1..hN, and send
--packets from h0, each to a pseudo-random subset of the receivers (seeded).
Then check that every receiver got exactly the sequence numbers whose subset
holds it: none missing, none twice, none extra, every set reduced to the
receiver alone. The lab is removed afterwards, on success or failure; the
switch config and logs stay in --dir. Exit status 1 if delivery is wrong.`,
		Example: `  sparsecast testbed run single-switch
  sparsecast testbed run single-switch --packets 50000 --rate 8000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Out, opts.ErrOut = cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := opts.check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runSingleSwitch(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Binary, "binary", "", "sparsecast binary to run in the lab (default: this one)")
	f.IntVar(&opts.Packets, "packets", 10000, "packets to send")
	f.IntVar(&opts.Receivers, "receivers", 4, "receiving hosts, 1-250")
	f.Float64Var(&opts.Rate, "rate", 5000, "send rate, packets per second")
	f.IntVar(&opts.Size, "size", 64, "payload bytes")
	f.Uint64Var(&opts.Seed, "seed", 1, "seed of the subset schedule")
	f.IntVar(&opts.Session, "session", 1, "SMH session ID, 1-65535")
	f.BoolVar(&opts.IPv6, "ipv6", false, "address hosts with IPv6 instead of IPv4")
	f.DurationVar(&opts.IdleTimeout, "idle-timeout", 2*time.Second, "how long receivers wait after their last packet")
	f.StringVar(&opts.Prefix, "prefix", lab.DefaultPrefix, "prefix of the lab's namespace names")
	f.StringVar(&opts.Dir, "dir", "", "directory for switch.yaml, logs and summary.json (default: a new temporary one)")
	f.BoolVarP(&opts.Verbose, "verbose", "v", false, "print the commands the lab runs")
	f.BoolVar(&opts.JSON, "json", false, "print the summary as JSON")
	return cmd
}

func (o *SingleSwitchOptions) check() error {
	switch {
	case o.Packets < 1:
		return fmt.Errorf("--packets %d: want >= 1", o.Packets)
	case o.Receivers < 1 || o.Receivers > 250:
		return fmt.Errorf("--receivers %d: want 1-250", o.Receivers)
	case o.Rate <= 0 || o.Rate != o.Rate:
		return fmt.Errorf("--rate %v: want > 0 packets per second", o.Rate)
	case o.Size < 12 || o.Size > 1400:
		return fmt.Errorf("--size %d: want 12-1400", o.Size)
	case o.Session < 1 || o.Session > 0xFFFF:
		return fmt.Errorf("--session %d: want 1-65535", o.Session)
	case o.IdleTimeout <= 0:
		return fmt.Errorf("--idle-timeout %v: want > 0", o.IdleTimeout)
	}
	if err := lab.CheckPrefix(o.Prefix); err != nil {
		return fmt.Errorf("--prefix: %w", err)
	}
	return defaultBinary(&o.Binary)
}

func runSingleSwitch(ctx context.Context, o *SingleSwitchOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	lo := lab.Options{
		Binary: o.Binary, Packets: o.Packets, Receivers: o.Receivers, Rate: o.Rate, Size: o.Size,
		Seed: o.Seed, Session: uint16(o.Session), IPv6: o.IPv6, IdleTimeout: o.IdleTimeout,
		Prefix: o.Prefix, Dir: o.Dir,
	}
	if o.Verbose {
		lo.Log = o.ErrOut
	}
	sum, err := lab.SingleSwitch(ctx, lo)
	if err != nil {
		return err
	}
	if o.JSON {
		if err := printJSON(o.Out, sum); err != nil {
			return err
		}
	} else {
		fmt.Fprint(o.Out, sum.Table())
	}
	if !sum.DeliveredOK {
		return fmt.Errorf("single-switch: delivery check failed (logs in %s)", sum.Dir)
	}
	return nil
}

// TestbedDownOptions are `testbed down`'s flags.
type TestbedDownOptions struct {
	Out      io.Writer
	Prefix   string
	Verbose  bool
	KeepLogs bool
}

// NewCmdTestbedDown builds `testbed down`.
func NewCmdTestbedDown(runF func(*TestbedDownOptions) error) *cobra.Command {
	opts := &TestbedDownOptions{}
	cmd := &cobra.Command{
		Use:   "down [--prefix P]",
		Short: "Stop a testbed: its processes, namespaces and state",
		Long: `Stop the switches and control process of the testbed brought up with
--prefix, kill every process inside the network namespaces named with the
prefix and delete those namespaces (with their veths), the state file and
the testbed's directory /run/sparsecast/testbed-<prefix>lab (configs, rings
and logs, in RAM); --keep-logs keeps the *.log files there. Safe to run
twice and after a crashed run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Out = cmd.OutOrStdout()
			if err := lab.CheckPrefix(opts.Prefix); err != nil {
				return fmt.Errorf("--prefix: %w", err)
			}
			if runF != nil {
				return runF(opts)
			}
			return runTestbedDown(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Prefix, "prefix", lab.DefaultPrefix, "prefix of the namespace names to remove")
	cmd.Flags().BoolVarP(&opts.Verbose, "verbose", "v", false, "print the commands run")
	cmd.Flags().BoolVar(&opts.KeepLogs, "keep-logs", false, "keep the testbed directory's *.log files (everything else goes)")
	return cmd
}

func runTestbedDown(ctx context.Context, o *TestbedDownOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("testbed down: removing network namespaces needs root")
	}
	before, err := lab.Namespaces(ctx, o.Prefix)
	if err != nil {
		return err
	}
	var log io.Writer
	if o.Verbose {
		log = o.Out
	}
	if err := lab.DownKeeping(ctx, o.Prefix, log, o.KeepLogs); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "removed %d namespaces with prefix %q\n", len(before), o.Prefix)
	if o.KeepLogs {
		fmt.Fprintf(o.Out, "logs kept in %s\n", lab.LabDir(o.Prefix))
	}
	return nil
}
