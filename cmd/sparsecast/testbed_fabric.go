package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/testbeds/lab"
)

func scenarioNames(cmd *cobra.Command) []string {
	var names []string
	for _, c := range cmd.Commands() {
		names = append(names, c.Name())
	}
	return names
}

func needRoot(what string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s builds network namespaces: run it as root", what)
	}
	return nil
}

// TestbedUpOptions are `testbed up`'s flags.
type TestbedUpOptions struct {
	Out, Log io.Writer
	Topology string
	Prefix   string
	Binary   string
	// Control is "one" (one control for the fabric) or "per-switch";
	// Store "local" or "etcd".
	Control string
	Store   string
	JSON    bool
}

// NewCmdTestbedUp builds `testbed up`.
func NewCmdTestbedUp(runF func(*TestbedUpOptions) error) *cobra.Command {
	o := &TestbedUpOptions{Out: os.Stdout, Log: os.Stderr}
	cmd := &cobra.Command{
		Use:   "up --topology testbeds/leafspine.yaml",
		Short: "Build a fabric from a topology and leave it running (root)",
		Long: `Builds the fabric of --topology out of network namespaces and veth pairs:
one namespace per switch and per host, a sparsecast switch process per switch
(probes between switches), and one control process serving them all through
their control rings. Every host gets its receiver ID and a gateway on its
leaf. The fabric keeps running after the command returns; "testbed run" uses
it and "testbed down" removes it.

With --control per-switch --store etcd it is run as white boxes are: an etcd
(Debian's etcd-server) on a loopback port with its data in the testbed's
directory, and one control process per switch (--switch NAME), each with its
own API (control-NAME.sock in the testbed's directory), sharing groups and
link states through etcd. "testbed status" shows each control's store
revision and whether it has caught up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lab.CheckPrefix(o.Prefix); err != nil {
				return fmt.Errorf("--prefix: %w", err)
			}
			if err := defaultBinary(&o.Binary); err != nil {
				return err
			}
			switch {
			case o.Control != "one" && o.Control != "per-switch":
				return fmt.Errorf("--control %q: want one or per-switch", o.Control)
			case o.Store != "local" && o.Store != "etcd":
				return fmt.Errorf("--store %q: want local or etcd", o.Store)
			case (o.Control == "per-switch") != (o.Store == "etcd"):
				return fmt.Errorf("--control per-switch and --store etcd go together: one control per switch needs the shared store, and one control for the fabric keeps its state locally")
			}
			if runF != nil {
				return runF(o)
			}
			return runTestbedUp(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Topology, "topology", "testbeds/leafspine.yaml", "fabric description")
	cmd.Flags().StringVar(&o.Prefix, "prefix", lab.DefaultPrefix, "prefix of the namespace names")
	cmd.Flags().StringVar(&o.Binary, "binary", "", "sparsecast binary for the fabric's processes (default: this one)")
	cmd.Flags().StringVar(&o.Control, "control", "one", "control processes: one for the fabric, or per-switch")
	cmd.Flags().StringVar(&o.Store, "store", "local", "control state: local (the testbed's directory) or etcd (with --control per-switch)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print the testbed's state as JSON")
	return cmd
}

func runTestbedUp(ctx context.Context, o *TestbedUpOptions) error {
	if err := needRoot("testbed up"); err != nil {
		return err
	}
	st, err := lab.Up(ctx, lab.UpOptions{
		Topology: o.Topology, Binary: o.Binary, Prefix: o.Prefix, PerSwitch: o.Control == "per-switch",
		Log: func(format string, args ...any) { fmt.Fprintf(o.Log, format+"\n", args...) },
	})
	if err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	if st.EtcdEndpoint != "" {
		fmt.Fprintf(o.Out, "testbed %q up in %.1f s: %d switches, %d hosts, a control per switch on etcd %s (APIs unix:%s/control-SWITCH.sock); logs in %s\n",
			st.Prefix, st.UpSeconds, len(st.SwitchNS), len(st.Hosts), st.EtcdEndpoint, st.Dir, st.Dir)
		return nil
	}
	fmt.Fprintf(o.Out, "testbed %q up in %.1f s: %d switches, %d hosts, control API unix:%s; logs in %s\n",
		st.Prefix, st.UpSeconds, len(st.SwitchNS), len(st.Hosts), st.ControlAPI, st.Dir)
	return nil
}

// TestbedStatusOptions are `testbed status`'s flags.
type TestbedStatusOptions struct {
	Out    io.Writer
	Prefix string
	JSON   bool
}

// NewCmdTestbedStatus builds `testbed status`.
func NewCmdTestbedStatus(runF func(*TestbedStatusOptions) error) *cobra.Command {
	o := &TestbedStatusOptions{Out: os.Stdout}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running testbed: switches, control, hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(o)
			}
			s, err := lab.Status(o.Prefix)
			if err != nil {
				return err
			}
			if o.JSON {
				enc := json.NewEncoder(o.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			fmt.Fprintf(o.Out, "testbed %q (%s), up since %s, logs in %s\n", s.Prefix, s.Topology, s.Up, s.Dir)
			tw := tabwriter.NewWriter(o.Out, 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "SWITCH\tPID\tRUNNING\tGENERATION\tLINKS DOWN")
			for _, sw := range s.Switches {
				fmt.Fprintf(tw, "%s\t%d\t%v\t%d\t%d\n", sw.Name, sw.PID, sw.Running, sw.Generation, sw.LinksDown)
			}
			if s.Etcd == nil {
				fmt.Fprintf(tw, "control\t%d\t%v\t\t\n", s.Control.PID, s.Control.Running)
			}
			tw.Flush()
			if s.Etcd != nil {
				fmt.Fprintf(o.Out, "etcd: pid %d, running %v\n", s.Etcd.PID, s.Etcd.Running)
				tw = tabwriter.NewWriter(o.Out, 2, 8, 2, ' ', 0)
				fmt.Fprintln(tw, "CONTROL\tPID\tRUNNING\tREVISION\tCAUGHT UP\tCONNECTED\tGROUPS\tERROR")
				for _, c := range s.Controls {
					fmt.Fprintf(tw, "%s\t%d\t%v\t%d\t%v\t%v\t%d\t%s\n", c.Switch, c.PID, c.Running, c.Revision, c.CaughtUp, c.Connected, c.Groups, c.Error)
				}
				tw.Flush()
			}
			tw = tabwriter.NewWriter(o.Out, 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tID\tIP\tGATEWAY")
			for _, h := range s.Hosts {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", h.Name, h.ID, h.IP, h.Gateway)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&o.Prefix, "prefix", lab.DefaultPrefix, "the testbed's namespace prefix")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

// RunFailoverOptions are `testbed run failover`'s flags.
type RunFailoverOptions struct {
	Out, Log io.Writer
	Prefix   string
	Link     string
	Sender   string
	Rate     float64
	Duration time.Duration
	Plot     string
	JSON     bool
}

// NewCmdRunFailover builds `testbed run failover`.
func NewCmdRunFailover(runF func(*RunFailoverOptions) error) *cobra.Command {
	o := &RunFailoverOptions{Out: os.Stdout, Log: os.Stderr}
	cmd := &cobra.Command{
		Use:   "failover [--link SWITCH:PORT] [--json]",
		Short: "Fail a spine link mid-stream on the running testbed; show repair time and who noticed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Rate <= 0 || o.Duration <= 0 {
				return fmt.Errorf("want --rate > 0 and --duration > 0")
			}
			if runF != nil {
				return runF(o)
			}
			return onTestbed(o.Prefix, func(f *lab.Fabric) error {
				r, err := lab.FailoverOn(cmd.Context(), f, lab.FailoverOptions{
					Link: o.Link, Sender: o.Sender, Rate: o.Rate, Duration: o.Duration,
					Log: func(format string, args ...any) { fmt.Fprintf(o.Log, format+"\n", args...) },
				})
				if err != nil {
					return err
				}
				ok := r.DeliveredUnaffected
				if o.Plot != "" {
					aff := map[uint16]bool{}
					for _, id := range r.AffectedReceivers {
						aff[id] = true
					}
					if err := lab.PlotStream(o.Plot, "failover of "+r.Link, r.Stream, o.Rate, r.FailAt, aff); err != nil {
						return err
					}
					fmt.Fprintf(o.Log, "plot written to %s\n", o.Plot)
				}
				if err := printResult(o.Out, o.JSON, struct {
					DeliveredOK bool `json:"delivered_ok"`
					*lab.FailoverResult
				}{ok, r}, r.Table()); err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("receivers behind working links lost packets")
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&o.Prefix, "prefix", lab.DefaultPrefix, "the testbed's namespace prefix")
	cmd.Flags().StringVar(&o.Link, "link", "", "switch:port of the link to fail (default: the first spine link on a receiver's path)")
	cmd.Flags().StringVar(&o.Sender, "sender", "", "sending host (default: the first host)")
	cmd.Flags().Float64Var(&o.Rate, "rate", 3000, "packets per second")
	cmd.Flags().StringVar(&o.Plot, "plot", "", "draw per-receiver throughput over time, failure marked, to this PNG")
	cmd.Flags().DurationVar(&o.Duration, "duration", 3*time.Second, "stream length; the link fails half way")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

// RunCheckpointOptions are `testbed run checkpoint`'s flags.
type RunCheckpointOptions struct {
	Out, Log io.Writer
	Prefix   string
	Sender   string
	To       []string
	Size     int
	Session  int
	Timeout  time.Duration
	Plot     string
	JSON     bool
}

// NewCmdRunCheckpoint builds `testbed run checkpoint`.
func NewCmdRunCheckpoint(runF func(*RunCheckpointOptions) error) *cobra.Command {
	o := &RunCheckpointOptions{Out: os.Stdout, Log: os.Stderr}
	cmd := &cobra.Command{
		Use:   "checkpoint [--to HOST,HOST,HOST] [--size BYTES] [--plot out.png] [--json]",
		Short: "Copy a file reliably from one host to three storage hosts on the running testbed",
		Long: `Writes a file of --size random bytes, sends it with "sparsecast send FILE"
(reliable sparse multicast: NACK repair, ACKs aggregated in the switches)
from --sender to the --to hosts, each receiving with "sparsecast recv --out",
and checks every copy byte for byte. By default the sender is the first host
of the topology and the storage hosts the first host of each other leaf.

Each run uses a fresh random SMH session (printed; --session pins one),
reserved on the testbed while it runs so that concurrent runs pick others.
The run ends by --timeout: a transfer that has not finished by then is
stopped, sender and receivers, and each storage host's line says how far
it got; the exit status is 1 whenever a copy is missing or wrong.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Size < 1 || o.Size > 1<<30 {
				return fmt.Errorf("--size %d: want 1 byte to 1 GiB", o.Size)
			}
			if o.Session < 0 || o.Session > 0xFFFF {
				return fmt.Errorf("--session %d: want 1-65535 (0: a fresh random one)", o.Session)
			}
			if o.Timeout <= 0 {
				return fmt.Errorf("--timeout %v: want > 0", o.Timeout)
			}
			if runF != nil {
				return runF(o)
			}
			return onTestbed(o.Prefix, func(f *lab.Fabric) error {
				sender, to := o.Sender, o.To
				if sender == "" || len(to) == 0 {
					s, t := lab.StorageHosts(f, 3)
					if sender == "" {
						sender = s
					}
					if len(to) == 0 {
						to = t
					}
				}
				r, err := lab.TransferOn(cmd.Context(), f, lab.TransferOptions{
					Sender: sender, Receivers: to, Size: o.Size, Timeout: o.Timeout, Session: uint16(o.Session),
					Log: func(format string, args ...any) { fmt.Fprintf(o.Log, format+"\n", args...) },
				})
				if err != nil {
					return err
				}
				if o.Plot != "" {
					title := fmt.Sprintf("checkpoint: %d bytes from %s", r.Size, sender)
					if err := plotProgress(o.Log, o.Plot, title, r.Progress, r.FailAt, "link "+r.FailedLink+" down"); err != nil {
						return err
					}
				}
				if err := printResult(o.Out, o.JSON, r, r.Table()); err != nil {
					return err
				}
				return checkpointVerdict(r, o.Timeout)
			})
		},
	}
	cmd.Flags().StringVar(&o.Prefix, "prefix", lab.DefaultPrefix, "the testbed's namespace prefix")
	cmd.Flags().StringVar(&o.Sender, "sender", "", "sending host (default: the topology's first host)")
	cmd.Flags().StringSliceVar(&o.To, "to", nil, "storage hosts (default: the first host of three other leaves)")
	cmd.Flags().IntVar(&o.Size, "size", 4<<20, "file size in bytes")
	cmd.Flags().IntVar(&o.Session, "session", 0, "SMH session of the transfer (0: a fresh random one)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", time.Minute, "stop the transfer and fail if it has not finished by then")
	cmd.Flags().StringVar(&o.Plot, "plot", "", "draw per-receiver throughput over time to this PNG")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

// checkpointVerdict is the command's error for a result: nil when every
// copy is right, else which storage hosts lack it and why.
func checkpointVerdict(r *lab.TransferResult, timeout time.Duration) error {
	if r.DeliveredOK {
		return nil
	}
	var bad []string
	for _, rc := range r.Receivers {
		if !rc.OK {
			bad = append(bad, fmt.Sprintf("%s (id %d): %s", rc.Host, rc.ID, rc.Error))
		}
	}
	what := "checkpoint: not every storage host has the file"
	if r.TimedOut {
		what = fmt.Sprintf("checkpoint: the transfer did not finish within --timeout %v and was stopped", timeout)
	}
	if len(bad) == 0 {
		return fmt.Errorf("%s (the sender failed; see %s/send.log)", what, r.Dir)
	}
	return fmt.Errorf("%s: %s", what, strings.Join(bad, "; "))
}

// NewCmdRunMoE builds `testbed run moe`.
func NewCmdRunMoE(runF func(*lab.MoEOptions) error) *cobra.Command {
	o := &lab.MoEOptions{}
	var prefix, plotPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "moe [--tokens N] [--topk K] [--plot out.png] [--json]",
		Short: "MoE dispatch on the running testbed: one dispatcher per leaf, tokens to fresh top-k sets of experts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Tokens < 1 || o.TopK < 1 || o.TokenSize < 16 {
				return fmt.Errorf("want --tokens >= 1, --topk >= 1 and --token-size >= 16")
			}
			if runF != nil {
				return runF(o)
			}
			return onTestbed(prefix, func(f *lab.Fabric) error {
				o.Log = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
				r, err := lab.MoEOn(cmd.Context(), f, *o)
				if err != nil {
					return err
				}
				if plotPath != "" {
					title := fmt.Sprintf("MoE dispatch, top-%d of %d experts", r.TopK, len(r.Experts))
					if err := plotProgress(os.Stderr, plotPath, title, r.Progress, 0, ""); err != nil {
						return err
					}
				}
				if err := printResult(os.Stdout, asJSON, r, r.Table()); err != nil {
					return err
				}
				if !r.DeliveredOK {
					return fmt.Errorf("moe: not every token reached its experts")
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", lab.DefaultPrefix, "the testbed's namespace prefix")
	cmd.Flags().IntVar(&o.Tokens, "tokens", 2000, "tokens per dispatcher")
	cmd.Flags().IntVar(&o.TopK, "topk", 2, "experts per token")
	cmd.Flags().IntVar(&o.TokenSize, "token-size", 256, "bytes per token")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", time.Minute, "give up after this long")
	cmd.Flags().StringVar(&plotPath, "plot", "", "draw per-expert throughput over time to this PNG")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// plotProgress draws a scenario's per-receiver throughput to path and says
// so on log; failAt 0 draws no failure mark.
func plotProgress(log io.Writer, path, title string, rs []lab.ReceiverProgress, failAt time.Duration, failLabel string) error {
	if err := lab.PlotProgress(path, title, rs, failAt, failLabel); err != nil {
		return err
	}
	fmt.Fprintf(log, "plot written to %s\n", path)
	return nil
}

// onTestbed runs fn on the testbed that is up under prefix.
func onTestbed(prefix string, fn func(f *lab.Fabric) error) error {
	if err := needRoot("testbed run"); err != nil {
		return err
	}
	st, err := lab.LoadState(prefix)
	if err != nil {
		return err
	}
	f, err := st.Attach()
	if err != nil {
		return err
	}
	defer f.Close()
	return fn(f)
}

// printResult writes a scenario's result as indented JSON or as its table.
func printResult(out io.Writer, asJSON bool, v any, table string) error {
	if asJSON {
		return printJSON(out, v)
	}
	_, err := io.WriteString(out, table)
	return err
}

// defaultBinary makes an empty --binary this executable: the lab runs the
// same sparsecast that was asked to build it.
func defaultBinary(bin *string) error {
	if *bin != "" {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find this binary to run in the lab (give --binary): %w", err)
	}
	*bin = exe
	return nil
}
