package main

// `sparsecast testbed trex`: the TRex lab (testbeds/trex/lab.go). In: a TRex
// directory and the runs' tunables. Out: both sides' counters per run on
// standard output, logs and CSVs in --dir; nothing left behind.

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/testbeds/trex"
)

// TestbedTRexOptions are `testbed trex`'s flags.
type TestbedTRexOptions struct {
	Out, ErrOut io.Writer
	trex.LabOptions
	Steps   string
	Verbose bool
}

// NewCmdTestbedTRex builds `testbed trex`.
func NewCmdTestbedTRex(runF func(*TestbedTRexOptions) error) *cobra.Command {
	o := &TestbedTRexOptions{}
	cmd := &cobra.Command{
		Use:   "trex --trex-dir DIR",
		Short: "A real TRex server against a switch in namespaces: console line, API run, NDR, feedback aggregation",
		Long: `Build two namespaces, PREFIXtrex and PREFIXsw, joined by two veth pairs
(TRex ports 0 and 1 to switch ports p0 and p1) and a management pair for the
switch's /metrics. Run "sparsecast switch run" on testbeds/trex/dut-switch.yaml
with the lab's interface names, and TRex's server (t-rex-64 -i
--no-scapy-server, low_end: one core) on trex_cfg_low_end.yaml with the lab's
veths, in its namespace. Then run, from TRex's namespace, README's console
line (trex-console --batch), one trial through the Python API (ndr.py
--rate), the NDR search (ndr.py) and the feedback benchmark (fbbench.py:
ACK, NACK and CNP aggregation, and the spoofed-feedback test), each printing
TRex's counters beside the switch's. Everything is torn down afterwards,
also on Ctrl-C; "testbed down --prefix PREFIX" clears a lab a killed run
left. Needs root and a TRex directory (testbeds/trex/README.md says how to
build one from source); the figures on a 2-core machine are functional, not line rate.`,
		Example: `  sparsecast testbed trex --trex-dir /tmp/trex/scripts
  sparsecast testbed trex --trex-dir /opt/trex/v3.08 --steps api,feedback --prefix h3tl-`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out, o.ErrOut = cmd.OutOrStdout(), cmd.ErrOrStderr()
			o.LabOptions.Out = o.Out
			if o.Verbose {
				o.LabOptions.Log = o.ErrOut
			}
			o.LabOptions.Steps = nil
			for _, s := range strings.Split(o.Steps, ",") {
				if s = strings.TrimSpace(s); s != "" {
					o.LabOptions.Steps = append(o.LabOptions.Steps, s)
				}
			}
			if runF != nil {
				return runF(o)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return trex.RunLab(ctx, o.LabOptions)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.TRexDir, "trex-dir", os.Getenv("TREX_DIR"), "TRex directory: t-rex-64 and automation/ in it or in its scripts/ (default $TREX_DIR)")
	f.StringVar(&o.Prefix, "prefix", "sctrex-", "prefix of the lab's namespaces and veths (at most 12 characters)")
	f.StringVar(&o.Dir, "dir", "", "directory for configs, logs and CSVs (default: a new temporary one)")
	f.StringVar(&o.Binary, "binary", "", "sparsecast binary for the switch (default: this one)")
	f.StringVar(&o.Python, "python", "/usr/bin/python3", "python3 for TRex's client (TRex's own scapy is used)")
	f.StringVar(&o.Tunables, "tunables", "receivers=9,domain=256,sessions=4,latency_pps=100", "smh_stl.py tunables of the console, API and NDR runs")
	f.StringVar(&o.Rate, "rate", "100kpps", "rate of the console line and the API run (TRex's -m)")
	f.IntVar(&o.Duration, "duration", 10, "seconds of the console line and the API run")
	f.StringVar(&o.NDRLo, "ndr-lo", "20kpps", "NDR search: lowest rate")
	f.StringVar(&o.NDRHi, "ndr-hi", "400kpps", "NDR search: highest rate")
	f.Float64Var(&o.NDRPrec, "ndr-precision", 0.1, "NDR search: stop when (hi-lo)/hi is at most this")
	f.IntVar(&o.NDRSecs, "ndr-duration", 5, "NDR search: seconds per trial")
	f.IntVar(&o.FBSecs, "feedback-duration", 10, "feedback benchmark: seconds per run")
	f.StringVar(&o.FBTuning, "feedback-tunables", "receivers=9,sessions=4,pps=4000,ack_every=16", "fbbench.py tunables (the DATA's; the feedback adds type and reply)")
	f.StringVar(&o.Steps, "steps", strings.Join(trex.LabSteps, ","), "steps to run, in this order: "+strings.Join(trex.LabSteps, ","))
	f.BoolVarP(&o.Verbose, "verbose", "v", false, "print the commands the lab runs")
	return cmd
}
