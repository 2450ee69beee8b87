package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/dataplane/endpoint"
	"github.com/sparsecast/sparsecast/headers"
)

// SendOptions are `sparsecast send`'s flags, checked by NewCmdSend before
// runF sees them.
type SendOptions struct {
	Out io.Writer

	Via       string
	Local     string
	To        string
	SubsetsOf string
	Seed      uint64
	SourceID  int
	Session   int
	HopLimit  int
	Count     int
	Size      int
	Rate      float64
	FirstSeq  uint32
	JSON      bool

	// Receivers is the parsed --to or --subsets-of list.
	Receivers []uint16
}

// NewCmdSend builds `sparsecast send`; runF replaces the run function in tests.
func NewCmdSend(runF func(*SendOptions) error) *cobra.Command {
	opts := &SendOptions{}
	cmd := &cobra.Command{
		Use:   "send --via HOST:PORT (--to IDS | --subsets-of IDS [--seed S]) [flags]",
		Short: "Send SMH DATA packets to a switch port",
		Long: `Send a stream of SMH DATA packets over UDP to a switch port (--via, the
port's IP and SMH UDP port, 9471 when omitted).

Every packet goes either to a fixed receiver set (--to 1,5,9) or to a
pseudo-random non-empty subset of a list (--subsets-of 1-4), drawn per
sequence number from --seed so that receivers can be checked exactly
(sparsecast testbed does). The payload carries the sequence number and the
send time. The UDP source port is the stream's hash port (49152-65535).`,
		Example: `  sparsecast send --via 10.77.0.1:9471 --to 1,5,9 --count 1000 --rate 500
  sparsecast send --via [fd00::1] --subsets-of 1-4 --seed 7 --count 10000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Out = cmd.OutOrStdout()
			if err := opts.check(cmd); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runSend(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Via, "via", "", "switch port to send to, HOST:PORT (required)")
	f.StringVar(&opts.Local, "local", "", "local address to bind, IP or IP:PORT (default: any, source port from the stream hash)")
	f.StringVar(&opts.To, "to", "", "fixed receiver set for every packet, e.g. 1,5,9 or 1-4")
	f.StringVar(&opts.SubsetsOf, "subsets-of", "", "send each packet to a pseudo-random non-empty subset of these receivers")
	f.Uint64Var(&opts.Seed, "seed", 1, "seed of the --subsets-of schedule")
	f.IntVar(&opts.SourceID, "source-id", 0, "SMH Source ID, 0-65535")
	f.IntVar(&opts.Session, "session", 0, "SMH Session ID, 0-65535")
	f.IntVar(&opts.HopLimit, "hop-limit", headers.DefaultHopLimit, "SMH Hop Limit, 1-255")
	f.IntVar(&opts.Count, "count", 1000, "packets to send (0: until interrupted)")
	f.IntVar(&opts.Size, "size", 64, fmt.Sprintf("payload bytes after SMH, %d-%d", endpoint.MinPayload, endpoint.MaxPayload))
	f.Float64Var(&opts.Rate, "rate", 1000, "packets per second (0: as fast as possible)")
	f.Uint32Var(&opts.FirstSeq, "first-seq", 0, "sequence number of the first packet")
	f.BoolVar(&opts.JSON, "json", false, "print a JSON summary")
	return cmd
}

func (o *SendOptions) check(cmd *cobra.Command) error {
	if o.Via == "" {
		return fmt.Errorf("--via is required: the switch port's HOST:PORT")
	}
	if _, err := endpoint.ResolveAddr(o.Via, headers.DefaultUDPPort); err != nil {
		return fmt.Errorf("--via: %w", err)
	}
	if o.Local != "" {
		if _, err := endpoint.ResolveAddr(o.Local, 0); err != nil {
			return fmt.Errorf("--local: %w", err)
		}
	}
	switch {
	case o.To != "" && o.SubsetsOf != "":
		return fmt.Errorf("--to and --subsets-of are exclusive")
	case o.To == "" && o.SubsetsOf == "":
		return fmt.Errorf("give the receivers with --to IDS or --subsets-of IDS")
	case o.To != "":
		if cmd.Flags().Changed("seed") {
			return fmt.Errorf("--seed only applies to --subsets-of")
		}
		ids, err := headers.ParseIDSet(o.To)
		if err != nil {
			return fmt.Errorf("--to: %w", err)
		}
		o.Receivers = ids
	default:
		ids, err := headers.ParseIDSet(o.SubsetsOf)
		if err != nil {
			return fmt.Errorf("--subsets-of: %w", err)
		}
		o.Receivers = ids
	}
	if o.SourceID < 0 || o.SourceID > headers.MaxID {
		return fmt.Errorf("--source-id %d: want 0-%d", o.SourceID, headers.MaxID)
	}
	if o.Session < 0 || o.Session > 0xFFFF {
		return fmt.Errorf("--session %d: want 0-65535", o.Session)
	}
	if o.HopLimit < 1 || o.HopLimit > 255 {
		return fmt.Errorf("--hop-limit %d: want 1-255", o.HopLimit)
	}
	if o.Count < 0 {
		return fmt.Errorf("--count %d: want >= 0 (0: until interrupted)", o.Count)
	}
	if o.Size < endpoint.MinPayload || o.Size > endpoint.MaxPayload {
		return fmt.Errorf("--size %d: want %d-%d bytes", o.Size, endpoint.MinPayload, endpoint.MaxPayload)
	}
	if o.Rate < 0 || o.Rate != o.Rate {
		return fmt.Errorf("--rate %v: want >= 0 packets per second (0: unlimited)", o.Rate)
	}
	return nil
}

// SendSummary is `send --json`'s output.
type SendSummary struct {
	Via        string  `json:"via"`
	SourcePort uint16  `json:"source_port"`
	SourceID   int     `json:"source_id"`
	Session    int     `json:"session"`
	Mode       string  `json:"mode"` // "fixed" or "subsets"
	Receivers  string  `json:"receivers"`
	Seed       uint64  `json:"seed,omitempty"`
	Packets    uint64  `json:"packets"`
	Bytes      uint64  `json:"bytes"`
	Retries    uint64  `json:"retries"`
	FirstSeq   uint32  `json:"first_seq"`
	LastSeq    uint32  `json:"last_seq"`
	ElapsedNS  int64   `json:"elapsed_ns"`
	PPS        float64 `json:"pps"`
	Mbps       float64 `json:"mbps"`
}

func runSend(ctx context.Context, o *SendOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum := SendSummary{
		SourceID: o.SourceID, Session: o.Session,
		Receivers: headers.FormatIDSet(o.Receivers),
	}
	cfg := endpoint.SenderConfig{
		Gateway:     o.Via,
		Local:       o.Local,
		SourceID:    uint16(o.SourceID),
		SessionID:   uint16(o.Session),
		HopLimit:    uint8(o.HopLimit),
		PayloadSize: o.Size,
		Rate:        o.Rate,
		FirstSeq:    o.FirstSeq,
	}
	if o.SubsetsOf != "" {
		sched := endpoint.Schedule{Seed: o.Seed, Receivers: o.Receivers}
		if err := sched.Validate(); err != nil {
			return err
		}
		cfg.Receivers = sched.SetFunc()
		sum.Mode, sum.Seed = "subsets", o.Seed
	} else {
		cfg.Receivers = endpoint.Fixed(o.Receivers)
		sum.Mode = "fixed"
	}
	s, err := endpoint.NewSender(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	sum.Via = s.Gateway().String()
	sum.SourcePort = s.LocalAddr().Port()
	count := o.Count
	if count == 0 {
		count = -1
	}
	st, err := s.Run(ctx, count)
	sum.Packets, sum.Bytes, sum.Retries = st.Packets, st.Bytes, st.Retries
	sum.FirstSeq, sum.LastSeq = st.FirstSeq, st.LastSeq
	sum.ElapsedNS, sum.PPS, sum.Mbps = int64(st.Elapsed), st.PPS(), st.Mbps()
	if perr := printSend(o.Out, o.JSON, sum); perr != nil && err == nil {
		err = perr
	}
	return err
}

func printSend(w io.Writer, asJSON bool, s SendSummary) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	seqs := "none"
	if s.Packets > 0 {
		seqs = fmt.Sprintf("%d-%d", s.FirstSeq, s.LastSeq)
	}
	to := "to " + s.Receivers
	if s.Mode == "subsets" {
		to = fmt.Sprintf("to subsets of %s (seed %d)", s.Receivers, s.Seed)
	}
	_, err := fmt.Fprintf(w, "sent %d packets, %d bytes, in %v: %.0f pps, %.2f Mb/s\nstream %d/%d, seq %s, %s, via %s from port %d, %d retries\n",
		s.Packets, s.Bytes, time.Duration(s.ElapsedNS).Round(time.Millisecond), s.PPS, s.Mbps,
		s.SourceID, s.Session, seqs, to, s.Via, s.SourcePort, s.Retries)
	return err
}

// RecvOptions are `sparsecast recv`'s flags.
type RecvOptions struct {
	Out    io.Writer
	ErrOut io.Writer

	ID          int
	Listen      string
	Count       int
	Duration    time.Duration
	IdleTimeout time.Duration
	SetCheck    string
	JSON        bool

	setCheck endpoint.SetCheck
	// ready, if set, is told the bound address before receiving starts.
	ready func(netip.AddrPort)
}

// NewCmdRecv builds `sparsecast recv`; runF replaces the run function in tests.
func NewCmdRecv(runF func(*RecvOptions) error) *cobra.Command {
	opts := &RecvOptions{}
	cmd := &cobra.Command{
		Use:   "recv --id ID [--listen ADDR] [--count N] [--duration D] [--idle-timeout D] [--json]",
		Short: "Receive SMH DATA packets and account for every sequence number",
		Long: `Receive SMH DATA packets on a UDP port and report, per (source, session)
stream: packets received, duplicates, out-of-order arrivals, missing numbers
(holes between the lowest and highest received; with a subset schedule a
receiver is legitimately not sent some), malformed packets, and set
violations: packets whose receiver set is not exactly --id, which is what a
switch must leave on the port towards a host (--set-check member accepts any
set containing --id, for a sender talking to the receiver directly).

It stops after --count DATA packets, after --duration, after --idle-timeout
without a packet (counted from the first packet), or on SIGINT/SIGTERM,
whichever comes first, and then prints its report. With --json the report
includes every received sequence number as ranges ("0-17,20,22-40").`,
		Example: `  sparsecast recv --id 3 --idle-timeout 2s
  sparsecast recv --id 1 --listen 10.77.1.2:9471 --count 5000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Out, opts.ErrOut = cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := opts.check(cmd); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runRecv(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.ID, "id", -1, "this receiver's ID, 0-65535 (required)")
	f.StringVar(&opts.Listen, "listen", fmt.Sprintf(":%d", headers.DefaultUDPPort), "address to listen on, [IP]:PORT")
	f.IntVar(&opts.Count, "count", 0, "stop after this many DATA packets (0: no limit)")
	f.DurationVar(&opts.Duration, "duration", 0, "stop after this long (0: no limit)")
	f.DurationVar(&opts.IdleTimeout, "idle-timeout", 0, "stop when no packet came for this long, after the first (0: never)")
	f.StringVar(&opts.SetCheck, "set-check", "exact", "what each packet's receiver set must be: exact (only --id), member (contains --id), none")
	f.BoolVar(&opts.JSON, "json", false, "print a JSON report")
	return cmd
}

func (o *RecvOptions) check(cmd *cobra.Command) error {
	if !cmd.Flags().Changed("id") {
		return fmt.Errorf("--id is required: this receiver's ID")
	}
	if o.ID < 0 || o.ID > headers.MaxID {
		return fmt.Errorf("--id %d: want 0-%d", o.ID, headers.MaxID)
	}
	if _, err := endpoint.ResolveAddr(o.Listen, headers.DefaultUDPPort); err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if o.Count < 0 {
		return fmt.Errorf("--count %d: want >= 0 (0: no limit)", o.Count)
	}
	if o.Duration < 0 {
		return fmt.Errorf("--duration %v: want >= 0", o.Duration)
	}
	if o.IdleTimeout < 0 {
		return fmt.Errorf("--idle-timeout %v: want >= 0", o.IdleTimeout)
	}
	sc, err := endpoint.ParseSetCheck(o.SetCheck)
	if err != nil {
		return fmt.Errorf("--set-check: %w", err)
	}
	o.setCheck = sc
	return nil
}

func runRecv(ctx context.Context, o *RecvOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := endpoint.NewReceiver(endpoint.ReceiverConfig{
		Listen:      o.Listen,
		ID:          uint16(o.ID),
		SetCheck:    o.setCheck,
		Count:       uint64(o.Count),
		Duration:    o.Duration,
		IdleTimeout: o.IdleTimeout,
	})
	if err != nil {
		return err
	}
	defer r.Close()
	fmt.Fprintf(o.ErrOut, "recv: receiver %d listening on %s\n", o.ID, r.LocalAddr())
	if o.ready != nil {
		o.ready(r.LocalAddr())
	}
	rep, err := r.Run(ctx)
	if rep != nil {
		if perr := printRecv(o.Out, o.JSON, rep); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

func printRecv(w io.Writer, asJSON bool, rep *endpoint.Report) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(w, "receiver %d on %s: %d DATA packets in %v (stopped: %s); set check %s; %d malformed, %d feedback ignored\n",
		rep.ID, rep.Listen, rep.Data, rep.Elapsed.Round(time.Millisecond), rep.StopReason, rep.SetCheck, rep.Malformed, rep.Feedback)
	for _, reason := range endpoint.MalformedReasons {
		if n := rep.MalformedBy[reason]; n > 0 {
			fmt.Fprintf(w, "  malformed %s: %d\n", reason, n)
		}
	}
	if len(rep.Streams) == 0 {
		_, err := fmt.Fprintln(w, "no streams")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SOURCE\tSESSION\tRECEIVED\tUNIQUE\tDUPLICATES\tOUT-OF-ORDER\tMISSING\tSET-VIOLATIONS\tMALFORMED\tSEQ\tLATENCY avg/max\t")
	for _, s := range rep.Streams {
		seq := "-"
		if s.Unique > 0 {
			seq = fmt.Sprintf("%d-%d", s.Lowest, s.Highest)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%v/%v\t\n",
			s.Source, s.Session, s.Received, s.Unique, s.Duplicates, s.OutOfOrder, s.Missing,
			s.SetViolations, s.Malformed, seq,
			s.Latency.Avg.Round(time.Microsecond), s.Latency.Max.Round(time.Microsecond))
	}
	return tw.Flush()
}
