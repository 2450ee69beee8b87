package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/dataplane/endpoint"
	"github.com/sparsecast/sparsecast/headers"
	"github.com/sparsecast/sparsecast/perf"
	"github.com/sparsecast/sparsecast/testbeds/lab"
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

	// Reliable transfers (a FILE argument) and MoE dispatch (--moe).
	ErrOut    io.Writer
	File      string
	Group     int64
	Members   string
	Listen    string
	GiveUp    time.Duration
	MaxRate   float64
	Window    int
	MoE       bool
	Experts   int
	TopK      int
	Tokens    int
	TokenSize int

	// Receivers is the parsed --to or --subsets-of list (for a group, its
	// --members).
	Receivers []uint16
	mode      string // "plain", "file" or "moe"
}

// NewCmdSend builds `sparsecast send`; runF replaces the run function in tests.
func NewCmdSend(runF func(*SendOptions) error) *cobra.Command {
	opts := &SendOptions{}
	cmd := &cobra.Command{
		Use:   "send --via HOST:PORT (--to IDS | --subsets-of IDS [--seed S] | --group G --members IDS) [FILE] [flags]",
		Short: "Send SMH DATA packets, a file reliably, or MoE tokens to a switch port",
		Long: `Send a stream of SMH DATA packets over UDP to a switch port (--via, the
port's IP and SMH UDP port, 9471 when omitted).

Every packet goes either to a fixed receiver set (--to 1,5,9) or to a
pseudo-random non-empty subset of a list (--subsets-of 1-4), drawn per
sequence number from --seed so that receivers can be checked exactly
(sparsecast testbed does). The payload carries the sequence number and the
send time. The UDP source port is the stream's hash port (49152-65535).

With a FILE argument the file goes reliably (docs/feedback.md): a manifest
(name, size, SHA-256) first, then the data, to --to IDS or to --group G
(whose --members the sender needs to account for acknowledgements). The
host listens on the SMH port (--listen) for feedback. Receivers acknowledge
only what they have stored; receivers that report they cannot store the
file (ABORT: read-only, no space, permission, exists, checksum) and
receivers that do not acknowledge everything within --give-up of their last
progress are named with the reason, and the exit status is 1. A progress
bar goes to stderr.

With --moe, --tokens tokens of --token-size bytes each go reliably to a
fresh random --topk set of the first --experts IDs of --to (default IDs
0..experts-1), using the per-receiver chain.`,
		Example: `  sparsecast send --via 10.77.0.1:9471 --to 1,5,9 --count 1000 --rate 500
  sparsecast send --via [fd00::1] --subsets-of 1-4 --seed 7 --count 10000 --json
  sparsecast send --via 10.78.0.1 --to 1,2,3 --source-id 100 checkpoint.bin
  sparsecast send --via 10.78.0.1 --moe --experts 256 --topk 9 --tokens 10000 --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Out, opts.ErrOut = cmd.OutOrStdout(), cmd.ErrOrStderr()
			if len(args) == 1 {
				opts.File = args[0]
			}
			if err := opts.check(cmd); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			switch opts.mode {
			case "file":
				return runSendFile(cmd.Context(), opts)
			case "moe":
				return runSendMoE(cmd.Context(), opts)
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
	f.Int64Var(&opts.Group, "group", -1, "reliable file: address DATA to this SMH group (0-4294967295); needs --members")
	f.StringVar(&opts.Members, "members", "", "the --group's receivers, e.g. 1-8")
	f.StringVar(&opts.Listen, "listen", fmt.Sprintf(":%d", headers.DefaultUDPPort), "reliable modes: address receiving feedback, [IP]:PORT")
	f.DurationVar(&opts.GiveUp, "give-up", 10*time.Second, "reliable modes: declare a receiver failed after this long without progress")
	f.Float64Var(&opts.MaxRate, "max-rate", 0, "reliable modes: congestion control's ceiling in packets per second (0: 1,000,000)")
	f.IntVar(&opts.Window, "window", defaultReliableWindow, "reliable modes: packets kept unacknowledged, a power of two 2-65536 (receivers need a --window at least as large)")
	f.BoolVar(&opts.MoE, "moe", false, "send MoE tokens, each to a fresh random top-k set of experts")
	f.IntVar(&opts.Experts, "experts", 256, "--moe: number of experts (receiver IDs)")
	f.IntVar(&opts.TopK, "topk", 9, "--moe: experts per token")
	f.IntVar(&opts.Tokens, "tokens", 1000, "--moe: tokens to send")
	f.IntVar(&opts.TokenSize, "token-size", 64, "--moe: bytes per token")
	return cmd
}

func (o *SendOptions) check(cmd *cobra.Command) error {
	switch {
	case o.MoE && o.File != "":
		return fmt.Errorf("--moe sends tokens, not a FILE")
	case o.MoE:
		o.mode = "moe"
	case o.File != "":
		o.mode = "file"
	default:
		o.mode = "plain"
	}
	if o.mode != "plain" {
		return o.checkReliable(cmd)
	}
	for _, name := range []string{"group", "members", "give-up", "max-rate", "window", "experts", "topk", "tokens", "token-size", "listen"} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s applies to a reliable FILE transfer or --moe only", name)
		}
	}
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

// checkReliable checks the flags of the file and MoE modes.
func (o *SendOptions) checkReliable(cmd *cobra.Command) error {
	if o.Via == "" {
		return fmt.Errorf("--via is required: the switch port's HOST:PORT")
	}
	if _, err := endpoint.ResolveAddr(o.Via, headers.DefaultUDPPort); err != nil {
		return fmt.Errorf("--via: %w", err)
	}
	if _, err := endpoint.ResolveAddr(o.Listen, headers.DefaultUDPPort); err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	for _, name := range []string{"subsets-of", "seed", "count", "rate", "first-seq", "size"} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s applies to plain packet mode, not to a reliable transfer", name)
		}
	}
	if o.SourceID < 0 || o.SourceID > headers.MaxID {
		return fmt.Errorf("--source-id %d: want 0-%d", o.SourceID, headers.MaxID)
	}
	if o.Session < 0 || o.Session > 0xFFFF {
		return fmt.Errorf("--session %d: want 0-65535", o.Session)
	}
	if !cmd.Flags().Changed("session") {
		// A fresh session per transfer, so receivers never mistake it for
		// an earlier one from the same source.
		o.Session = 1 + int(time.Now().UnixNano()%0xFFFE)
	}
	if o.HopLimit < 1 || o.HopLimit > 255 {
		return fmt.Errorf("--hop-limit %d: want 1-255", o.HopLimit)
	}
	if o.GiveUp <= 0 {
		return fmt.Errorf("--give-up %v: want > 0", o.GiveUp)
	}
	if err := checkWindow(o.Window); err != nil {
		return err
	}
	if o.MaxRate < 0 || o.MaxRate != o.MaxRate || (o.MaxRate > 0 && o.MaxRate < 500) {
		return fmt.Errorf("--max-rate %v: want 0 (default) or at least 500 packets per second", o.MaxRate)
	}
	if o.To != "" {
		ids, err := headers.ParseIDSet(o.To)
		if err != nil {
			return fmt.Errorf("--to: %w", err)
		}
		o.Receivers = ids
	}
	if o.mode == "moe" {
		if o.Group >= 0 || o.Members != "" {
			return fmt.Errorf("--moe draws a set per token: no --group")
		}
		if o.Experts < 1 || o.Experts > headers.MaxID+1 {
			return fmt.Errorf("--experts %d: want 1-%d", o.Experts, headers.MaxID+1)
		}
		if o.TopK < 1 || o.TopK > o.Experts || o.TopK > 1024 {
			return fmt.Errorf("--topk %d: want 1-min(--experts, 1024)", o.TopK)
		}
		if o.Tokens < 1 {
			return fmt.Errorf("--tokens %d: want >= 1", o.Tokens)
		}
		if o.TokenSize < 0 || o.TokenSize > 1024 {
			return fmt.Errorf("--token-size %d: want 0-1024 bytes", o.TokenSize)
		}
		if o.To == "" {
			o.Receivers = make([]uint16, o.Experts)
			for i := range o.Receivers {
				o.Receivers[i] = uint16(i)
			}
		} else if len(o.Receivers) < o.Experts {
			return fmt.Errorf("--to lists %d IDs for %d experts", len(o.Receivers), o.Experts)
		}
		o.Receivers = o.Receivers[:o.Experts]
		return nil
	}
	switch {
	case o.To != "" && o.Group >= 0:
		return fmt.Errorf("--to and --group are exclusive")
	case o.Group >= 0:
		if o.Group > 0xFFFFFFFF {
			return fmt.Errorf("--group %d: want 0-4294967295", o.Group)
		}
		if o.Members == "" {
			return fmt.Errorf("--group needs --members: the sender accounts for every member's acknowledgements")
		}
		ids, err := headers.ParseIDSet(o.Members)
		if err != nil {
			return fmt.Errorf("--members: %w", err)
		}
		o.Receivers = ids
	case o.To == "":
		return fmt.Errorf("give the receivers with --to IDS or --group G --members IDS")
	case o.Members != "":
		return fmt.Errorf("--members goes with --group")
	}
	st, err := os.Stat(o.File)
	if err != nil {
		return fmt.Errorf("FILE: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("FILE %s is not a regular file", o.File)
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
	// How far the pacing fell behind its schedule (endpoint.SendStats).
	LatePackets uint64                `json:"late_packets"`
	MaxLagNS    int64                 `json:"max_lag_ns"`
	SkippedNS   int64                 `json:"skipped_ns"`
	Lag         []endpoint.LagEpisode `json:"lag,omitempty"`
	LagOmitted  uint64                `json:"lag_omitted,omitempty"`
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
	sum.LatePackets, sum.MaxLagNS, sum.SkippedNS = st.LatePackets, st.MaxLagNs, st.SkippedNs
	sum.Lag, sum.LagOmitted = st.Lag, st.LagOmitted
	if perr := printSend(o.Out, o.JSON, sum); perr != nil && err == nil {
		err = perr
	}
	return err
}

func printSend(w io.Writer, asJSON bool, s SendSummary) error {
	if asJSON {
		return printJSON(w, s)
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
	if err == nil && s.LatePackets > 0 {
		_, err = fmt.Fprintf(w, "behind schedule: %d packets more than %v late (at most %v; %v of the schedule given up after stalls) in %d runs, %d more late in runs not listed\n",
			s.LatePackets, endpoint.LagThreshold, time.Duration(s.MaxLagNS).Round(time.Microsecond),
			time.Duration(s.SkippedNS).Round(time.Microsecond), len(s.Lag), s.LagOmitted)
	}
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

	// Reliable mode (--out or --reliable).
	OutDir   string
	Reliable bool
	Via      string
	Files    int
	Linger   time.Duration
	Window   int
	// Overwrite lets a received file replace one of its name in OutDir.
	Overwrite bool

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
includes every received sequence number as ranges ("0-17,20,22-40").

With --out DIR (or --reliable, which keeps no files) it receives reliable
streams instead: it acknowledges and NACKs towards its gateway (--via, by
default the default route's gateway), writes each file a sender announces
into DIR once its size and SHA-256 match the manifest, and counts MoE
tokens. It acknowledges data only once it has written it, and a file's last
packet only once the file is synced and renamed into place. A file that
cannot be stored (read-only or full file system, no permission, a file of
that name without --overwrite, a size or SHA-256 mismatch) is reported to
the sender with an ABORT naming this receiver and the reason. With --files
N it stops --linger after the N-th file (answering a sender whose last ACK
was lost meanwhile). Exit status 1 if a file failed.`,
		Example: `  sparsecast recv --id 3 --idle-timeout 2s
  sparsecast recv --id 1 --listen 10.77.1.2:9471 --count 5000 --json
  sparsecast recv --id 5 --out /tmp/in --files 1 --json
  sparsecast recv --id 5 --out /data/ckpt --overwrite --files 1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Out, opts.ErrOut = cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := opts.check(cmd); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			if opts.Reliable {
				return runRecvReliable(cmd.Context(), opts)
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
	f.StringVar(&opts.OutDir, "out", "", "reliable mode: write received files into this directory")
	f.BoolVar(&opts.Overwrite, "overwrite", false, "reliable mode: a received file replaces one of the same name in --out (without it the file fails and the sender is told: exists)")
	f.BoolVar(&opts.Reliable, "reliable", false, "reliable mode without --out: check files and count tokens, keep nothing")
	f.StringVar(&opts.Via, "via", "", "reliable mode: gateway for feedback, HOST[:PORT] (default: the default route's gateway)")
	f.IntVar(&opts.Files, "files", 0, "reliable mode: stop --linger after this many files (0: no limit)")
	f.DurationVar(&opts.Linger, "linger", time.Second, "reliable mode: how long to keep answering after the last file")
	f.IntVar(&opts.Window, "window", defaultReliableWindow, "reliable mode: reorder window per stream in packets, a power of two 2-65536 (at least the sender's --window)")
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
	if o.Overwrite && o.OutDir == "" {
		return fmt.Errorf("--overwrite applies to --out DIR only")
	}
	if o.OutDir != "" {
		o.Reliable = true
		if st, err := os.Stat(o.OutDir); err != nil || !st.IsDir() {
			return fmt.Errorf("--out %s: not a directory", o.OutDir)
		}
	}
	if !o.Reliable {
		for _, name := range []string{"via", "files", "linger", "window"} {
			if cmd.Flags().Changed(name) {
				return fmt.Errorf("--%s applies to reliable mode (--out or --reliable) only", name)
			}
		}
		return nil
	}
	for _, name := range []string{"count", "set-check"} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s applies to plain packet mode, not to reliable mode", name)
		}
	}
	if o.Files < 0 || o.Linger < 0 {
		return fmt.Errorf("--files %d, --linger %v: want >= 0", o.Files, o.Linger)
	}
	if err := checkWindow(o.Window); err != nil {
		return err
	}
	if o.Via == "" {
		gw, err := defaultGateway("/proc/net/route")
		if err != nil {
			return fmt.Errorf("--via not given and %w", err)
		}
		o.Via = gw
	}
	if _, err := endpoint.ResolveAddr(o.Via, headers.DefaultUDPPort); err != nil {
		return fmt.Errorf("--via: %w", err)
	}
	return nil
}

// defaultGateway reads the IPv4 default route's gateway from a
// /proc/net/route table.
func defaultGateway(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no default gateway: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "00000000" {
			continue
		}
		var v uint32
		if _, err := fmt.Sscanf(f[2], "%08X", &v); err != nil || v == 0 {
			continue
		}
		// The kernel prints the address in host (little-endian) order.
		return netip.AddrFrom4([4]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}).String(), nil
	}
	return "", fmt.Errorf("no IPv4 default route with a gateway in %s", path)
}

// RecvReliableSummary is `recv --out/--reliable --json`'s output.
type RecvReliableSummary struct {
	ID     uint16                  `json:"id"`
	Via    string                  `json:"via"`
	OK     bool                    `json:"ok"`
	Files  []endpoint.FileResult   `json:"files"`
	Tokens map[uint16]uint64       `json:"tokens_by_source,omitempty"`
	Report *endpoint.SessionReport `json:"report"`
}

func runRecvReliable(ctx context.Context, o *RecvOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	tr, err := endpoint.NewUDPTransport(endpoint.UDPConfig{Listen: o.Listen, Gateway: o.Via})
	if err != nil {
		return err
	}
	defer tr.Close()
	var r *endpoint.ReliableReceiver
	files := 0
	sink := &endpoint.FileSink{Dir: o.OutDir, Overwrite: o.Overwrite, OnFile: func(res endpoint.FileResult) {
		files++
		status := "ok: stored"
		if !res.OK {
			status = fmt.Sprintf("FAILED (%s, the sender is told): %s", res.Reason, res.Error)
		}
		fmt.Fprintf(o.ErrOut, "recv: file %q from %d/%d, %d bytes, sha256 %s: %s\n", res.Name, res.Source, res.Session, res.Size, res.SHA256, status)
		if o.Files > 0 && files >= o.Files {
			r.SetIdleTimeout(max(o.Linger, time.Millisecond))
		}
	}}
	r, err = endpoint.NewReliableReceiver(tr, endpoint.SessionReceiverConfig{ID: uint16(o.ID), IdleTimeout: o.IdleTimeout, Sink: sink, Window: o.Window})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.ErrOut, "recv: reliable receiver %d listening on %s, feedback via %s\n", o.ID, tr.LocalAddr(), tr.Gateway())
	if o.ready != nil {
		o.ready(tr.LocalAddr())
	}
	rep, err := r.Run(ctx)
	sum := RecvReliableSummary{ID: uint16(o.ID), Via: tr.Gateway().String(), OK: true, Files: sink.Results(), Tokens: sink.Tokens(), Report: rep}
	if sum.Files == nil {
		sum.Files = []endpoint.FileResult{}
	}
	for _, f := range sum.Files {
		if !f.OK {
			sum.OK = false
		}
	}
	if o.Files > 0 && len(sum.Files) < o.Files {
		sum.OK = false
	}
	if o.JSON {
		if perr := printJSON(o.Out, sum); perr != nil && err == nil {
			err = perr
		}
	} else {
		fmt.Fprintf(o.Out, "receiver %d: %d files, stopped: %s\n", sum.ID, len(sum.Files), rep.StopReason)
		for _, f := range sum.Files {
			fmt.Fprintf(o.Out, "  %s  %d bytes  sha256 %s  ok=%v %s\n", f.Name, f.Size, f.SHA256, f.OK, f.Error)
		}
		for src, n := range sum.Tokens {
			fmt.Fprintf(o.Out, "  %d tokens from source %d\n", n, src)
		}
	}
	if err == nil && !sum.OK {
		err = fmt.Errorf("receiver %d: %d of %d files arrived intact", o.ID, countOK(sum.Files), max(o.Files, len(sum.Files)))
	}
	return err
}

func countOK(fs []endpoint.FileResult) int {
	n := 0
	for _, f := range fs {
		if f.OK {
			n++
		}
	}
	return n
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
	// Close before printing: datagrams still arriving (a stream that
	// stalled past the idle timeout and went on) then count as the host's
	// UDP NoPorts instead of vanishing with an unread socket buffer.
	r.Close()
	if rep != nil {
		if perr := printRecv(o.Out, o.JSON, rep); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

func printRecv(w io.Writer, asJSON bool, rep *endpoint.Report) error {
	if asJSON {
		return printJSON(w, rep)
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

// TransferSummary is the JSON summary of a reliable transfer (file or MoE).
type TransferSummary struct {
	Mode             string  `json:"mode"`
	Via              string  `json:"via"`
	SourceID         int     `json:"source_id"`
	Session          int     `json:"session"`
	File             string  `json:"file,omitempty"`
	Bytes            int64   `json:"bytes"`
	SHA256           string  `json:"sha256,omitempty"`
	Tokens           int     `json:"tokens,omitempty"`
	TokensPerSec     float64 `json:"tokens_per_s,omitempty"`
	ElapsedNS        int64   `json:"elapsed_ns"`
	GoodputMbps      float64 `json:"goodput_mbps"`
	Packets          uint64  `json:"packets"`
	Retransmissions  uint64  `json:"retransmissions"`
	RetransmitCopies uint64  `json:"retransmit_copies"`
	endpoint.RepairCounts
	FeedbackPackets uint64                        `json:"feedback_packets"`
	ACKs            uint64                        `json:"acks"`
	AggregatedACKs  uint64                        `json:"aggregated_acks"`
	AmbiguousACKs   uint64                        `json:"ambiguous_acks"`
	NACKs           uint64                        `json:"nacks"`
	CNPs            uint64                        `json:"cnps"`
	ABORTs          uint64                        `json:"aborts"`
	RateDecreases   uint64                        `json:"rate_decreases"`
	FinalRatePPS    float64                       `json:"final_rate_pps"`
	SRTTNS          int64                         `json:"srtt_ns"`
	Backpressure    uint64                        `json:"backpressure"`
	Complete        bool                          `json:"complete"`
	Failed          []uint16                      `json:"failed_receivers"`
	Receivers       []endpoint.ReceiverCompletion `json:"receivers"`
}

// defaultReliableWindow is the window of `send` and `recv` in reliable
// modes (the endpoint library's default is 1024). On the 2-core lab a
// transfer's packets wait for switches that wait for a core, and 1,024 in
// flight filled one switch's queue and no more: 250-400 ms round trips and
// about 4,000 packets/s, where 8,192 in flight got 11-12 MB/s (three of
// three runs against 4.7-7.5 with 1,024, same machine, same hour). A
// window costs the sender and each receiver stream about 12 MB at 8,192.
const defaultReliableWindow = 8192

// checkWindow checks a --window value as the endpoint library will.
func checkWindow(w int) error {
	if w < 2 || w > 1<<16 || w&(w-1) != 0 {
		return fmt.Errorf("--window %d: want a power of two, 2-65536", w)
	}
	return nil
}

// reliableSender opens the UDP transport and the session of a reliable mode.
func reliableSender(o *SendOptions, chain bool, progress func(endpoint.Progress)) (*endpoint.UDPTransport, *endpoint.ReliableSender, error) {
	tr, err := endpoint.NewUDPTransport(endpoint.UDPConfig{
		Listen: o.Listen, Gateway: o.Via, Data: true, Local: o.Local,
		SourceID: uint16(o.SourceID), SessionID: uint16(o.Session),
	})
	if err != nil {
		return nil, nil, err
	}
	cfg := endpoint.SessionConfig{
		SourceID: uint16(o.SourceID), SessionID: uint16(o.Session), HopLimit: uint8(o.HopLimit),
		Receivers: o.Receivers, Chain: chain, GiveUp: o.GiveUp, Progress: progress,
		CC: endpoint.CCConfig{MaxRate: o.MaxRate}, Window: o.Window,
	}
	if chain {
		cfg.Receivers, cfg.MaxSet = nil, o.TopK
	}
	if o.Group >= 0 {
		cfg.UseGroup, cfg.Group = true, uint32(o.Group)
	}
	if o.MaxRate > 0 {
		cfg.CC.InitialRate = min(20000, o.MaxRate)
	}
	s, err := endpoint.NewReliableSender(tr, cfg)
	if err != nil {
		tr.Close()
		return nil, nil, err
	}
	return tr, s, nil
}

// progressBar draws a transfer's progress on a terminal, or prints a plain
// line a second elsewhere.
type progressBar struct {
	w     io.Writer
	tty   bool
	total int64
	last  time.Time
}

func newProgressBar(w io.Writer, total int64) *progressBar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progressBar{w: w, tty: tty, total: total}
}

func (p *progressBar) update(pr endpoint.Progress) {
	if !p.tty && time.Since(p.last) < time.Second {
		return
	}
	p.last = time.Now()
	done := int64(pr.AppBytesAcked)
	frac := 0.0
	if p.total > 0 {
		frac = min(float64(done)/float64(p.total), 1)
	}
	rate := 0.0
	if s := pr.Elapsed.Seconds(); s > 0 {
		rate = float64(done) * 8 / s / 1e6
	}
	eta := "?"
	if rate > 0 && p.total > done {
		eta = (time.Duration(float64(p.total-done)*8/(rate*1e6)) * time.Second / time.Second).Round(time.Second).String()
	} else if p.total <= done {
		eta = "0s"
	}
	if p.tty {
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r[%s%s] %5.1f%% %8.2f Mb/s ETA %-6s retx %d   ",
			strings.Repeat("=", n), strings.Repeat(" ", width-n), frac*100, rate, eta, pr.Retransmissions)
		return
	}
	fmt.Fprintf(p.w, "send: %.1f%% acknowledged (%d of %d bytes), %.2f Mb/s, ETA %s, %d retransmissions\n",
		frac*100, done, p.total, rate, eta, pr.Retransmissions)
}

func (p *progressBar) finish() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func fillTransfer(sum *TransferSummary, rep *endpoint.SenderReport, tr endpoint.Transport) {
	sum.ElapsedNS = int64(rep.Elapsed)
	sum.Packets, sum.Retransmissions, sum.RetransmitCopies = rep.Packets, rep.Retransmissions, rep.RetransmitCopies
	sum.RepairCounts = rep.RepairCounts
	sum.FeedbackPackets = tr.Stats().RecvFeedback
	sum.ACKs, sum.AggregatedACKs, sum.AmbiguousACKs = rep.ACKs, rep.AggregatedACKs, rep.AmbiguousACKs
	sum.NACKs, sum.CNPs, sum.RateDecreases, sum.FinalRatePPS = rep.NACKs, rep.CNPs, rep.RateDecreases, rep.FinalRatePPS
	sum.ABORTs = rep.ABORTs
	sum.SRTTNS, sum.Backpressure = int64(rep.SRTT), rep.Backpressure
	sum.Complete, sum.Failed, sum.Receivers = rep.Complete, rep.Failed(), rep.Receivers
	if sum.Failed == nil {
		sum.Failed = []uint16{}
	}
}

func runSendFile(ctx context.Context, o *SendOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	f, err := os.Open(o.File)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", o.File, err)
	}
	var digest [32]byte
	copy(digest[:], h.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	bar := newProgressBar(o.ErrOut, size)
	tr, s, err := reliableSender(o, false, bar.update)
	if err != nil {
		return err
	}
	defer tr.Close()
	sum := TransferSummary{
		Mode: "file", Via: tr.Gateway().String(), SourceID: o.SourceID, Session: o.Session,
		File: filepath.Base(o.File), Bytes: size, SHA256: hex.EncodeToString(digest[:]),
	}
	err = endpoint.SendFile(ctx, s, filepath.Base(o.File), bufio.NewReaderSize(f, 1<<20), size, digest)
	var rep *endpoint.SenderReport
	if err == nil {
		rep, err = s.Flush(ctx)
	} else {
		rep = s.Report()
	}
	if errors.Is(err, endpoint.ErrGaveUp) {
		err = nil // every receiver failed: said below, receiver by receiver
	}
	if rep.Complete {
		bar.update(endpoint.Progress{AppBytesAcked: uint64(size), Elapsed: rep.Elapsed, Retransmissions: rep.Retransmissions})
	}
	bar.finish()
	fillTransfer(&sum, rep, tr)
	if sum.Complete && rep.Elapsed > 0 {
		sum.GoodputMbps = float64(size) * 8 / rep.Elapsed.Seconds() / 1e6
	}
	if perr := printTransfer(o.Out, o.JSON, sum); perr != nil && err == nil {
		err = perr
	}
	if err == nil && !sum.Complete {
		err = fmt.Errorf("%s was not stored by %d of %d receivers: %s", sum.File, len(sum.Failed), len(sum.Receivers), failures(sum.Receivers))
	}
	return err
}

// failures says, for each receiver that is not complete, why: "2 (read_only:
// the receiver's output directory is on a read-only file system), 5 (no
// acknowledgement progress for 10s)".
func failures(rcv []endpoint.ReceiverCompletion) string {
	var parts []string
	for _, c := range rcv {
		if !c.Complete {
			parts = append(parts, fmt.Sprintf("%d (%s)", c.ID, failure(c)))
		}
	}
	return strings.Join(parts, ", ")
}

// failure is why one receiver is not complete.
func failure(c endpoint.ReceiverCompletion) string {
	switch {
	case c.AbortReason != "":
		return c.AbortReason + ": " + c.Error
	case c.Error != "":
		return c.Error
	case c.HasAck:
		return fmt.Sprintf("acknowledged up to sequence %d of %d when the transfer ended", c.Acked, c.Last)
	}
	return "acknowledged nothing before the transfer ended"
}

func runSendMoE(ctx context.Context, o *SendOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	tr, s, err := reliableSender(o, true, nil)
	if err != nil {
		return err
	}
	defer tr.Close()
	sum := TransferSummary{Mode: "moe", Via: tr.Gateway().String(), SourceID: o.SourceID, Session: o.Session, Tokens: o.Tokens}
	rng := rand.New(rand.NewPCG(uint64(o.Session), uint64(time.Now().UnixNano())))
	token := make([]byte, 1+o.TokenSize)
	token[0] = endpoint.KindToken
	set := make([]uint16, o.TopK)
	perm := make([]int, o.Experts)
	for i := range perm {
		perm[i] = i
	}
	for t := 0; t < o.Tokens && err == nil; t++ {
		// A partial Fisher-Yates shuffle picks TopK distinct experts.
		for i := 0; i < o.TopK; i++ {
			j := i + rng.IntN(o.Experts-i)
			perm[i], perm[j] = perm[j], perm[i]
			set[i] = o.Receivers[perm[i]]
		}
		slices.Sort(set)
		binary.BigEndian.PutUint32(token[1:min(5, len(token))], uint32(t))
		err = s.SendMessage(ctx, set, token)
		sum.Bytes += int64(o.TokenSize)
	}
	var rep *endpoint.SenderReport
	if err == nil {
		rep, err = s.Flush(ctx)
	} else {
		rep = s.Report()
	}
	if errors.Is(err, endpoint.ErrGaveUp) {
		err = nil // said below, expert by expert
	}
	fillTransfer(&sum, rep, tr)
	if rep.Elapsed > 0 {
		sum.TokensPerSec = float64(rep.Messages) / rep.Elapsed.Seconds()
		if sum.Complete {
			sum.GoodputMbps = float64(sum.Bytes) * 8 / rep.Elapsed.Seconds() / 1e6
		}
	}
	if perr := printTransfer(o.Out, o.JSON, sum); perr != nil && err == nil {
		err = perr
	}
	if err == nil && !sum.Complete {
		err = fmt.Errorf("%d of %d experts did not acknowledge all their tokens: %s", len(sum.Failed), len(sum.Receivers), failures(sum.Receivers))
	}
	return err
}

func printTransfer(w io.Writer, asJSON bool, s TransferSummary) error {
	if asJSON {
		return printJSON(w, s)
	}
	what := fmt.Sprintf("%s (%d bytes, sha256 %s)", s.File, s.Bytes, s.SHA256)
	if s.Mode == "moe" {
		what = fmt.Sprintf("%d tokens (%.0f tokens/s)", s.Tokens, s.TokensPerSec)
	}
	// "complete" only when every receiver acknowledged everything, which
	// it does only once it has stored it.
	status := fmt.Sprintf("complete: every receiver stored it (%d)", len(s.Receivers))
	if s.Mode == "moe" {
		status = fmt.Sprintf("complete: every expert acknowledged its tokens (%d)", len(s.Receivers))
	}
	if !s.Complete {
		status = fmt.Sprintf("FAILED for %d of %d receivers (%s)", len(s.Failed), len(s.Receivers), headers.FormatIDSet(s.Failed))
	}
	_, err := fmt.Fprintf(w, "sent %s via %s in %v: %.2f Mb/s, %s\n  %d packets, %d retransmissions (%d copies), %d feedback packets (%d ACKs, %d aggregated, %d NACKs, %d CNPs, %d ABORTs)\n",
		what, s.Via, time.Duration(s.ElapsedNS).Round(time.Millisecond), s.GoodputMbps, status,
		s.Packets, s.Retransmissions, s.RetransmitCopies, s.FeedbackPackets, s.ACKs, s.AggregatedACKs, s.NACKs, s.CNPs, s.ABORTs)
	for _, c := range s.Receivers {
		if !c.Complete && err == nil {
			_, err = fmt.Fprintf(w, "  receiver %d FAILED: %s\n", c.ID, failure(c))
		}
	}
	return err
}

// BenchFeedbackOptions are the flags of `bench feedback`.
type BenchFeedbackOptions struct {
	Out       io.Writer
	Receivers int
	Loss      float64
	Aggregate bool
	Size      int
	Spines    int
	PerLeaf   int
	Seed      uint64
	Timeout   time.Duration
	JSON      bool
	// Veth runs the fabric as the veth lab (root); Binary is the
	// sparsecast binary its processes run.
	Veth   bool
	Binary string
	Prefix string
	Window int // the sender's and receivers' window (packets)
	// FECBlock and RepairWindow tune the sender (in-memory fabric only).
	FECBlock     int
	RepairWindow time.Duration
	// CPUProfile, if set, is a file the run's CPU profile (pprof) is
	// written to: where the simulation's time goes.
	CPUProfile string
}

// NewCmdBenchFeedback builds `bench feedback`; runF replaces the run
// function in tests.
func NewCmdBenchFeedback(runF func(*BenchFeedbackOptions) error) *cobra.Command {
	o := &BenchFeedbackOptions{}
	cmd := &cobra.Command{
		Use:   "feedback [--receivers N] [--loss L] [--aggregate=true|false] [--size BYTES] [--json]",
		Short: "Send a file reliably over an in-process leaf-spine fabric and count the feedback",
		Long: `Builds a leaf-spine fabric of real switches over in-memory ports in this
process (--spines spines, leaves of --hosts-per-leaf hosts), injects --loss on
every host-facing egress port, and sends a --size file reliably from one host
to --receivers others. Reports delivered_ok (every receiver's SHA-256 matches),
feedback packets reaching the sender per DATA packet it sent, NACKs the
switches suppressed, goodput and the run's counts. --aggregate=false sets
feedback.aggregate: false on every switch: the baseline.

With --veth (as root) the same fabric is the veth lab instead: a network
namespace and a process per switch and host, AF_PACKET ports on veth pairs,
sparsecast send and recv as the endpoints (at most 254 receivers; 16 is a
size this 2-core class of machine runs in about a minute).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			switch {
			case o.Receivers < 1 || o.Receivers > 4096:
				return fmt.Errorf("--receivers %d: want 1-4096", o.Receivers)
			case o.Loss < 0 || o.Loss >= 1 || o.Loss != o.Loss:
				return fmt.Errorf("--loss %v: want 0 <= loss < 1", o.Loss)
			case o.Size < 0 || o.Size > 1<<30:
				return fmt.Errorf("--size %d: want 0-1 GiB", o.Size)
			case o.Timeout < 0:
				return fmt.Errorf("--timeout %v: want > 0 (0: the default)", o.Timeout)
			case o.Veth && o.Receivers > perf.FeedbackVethMaxReceivers:
				return fmt.Errorf("--receivers %d: --veth runs at most %d", o.Receivers, perf.FeedbackVethMaxReceivers)
			}
			if o.Veth {
				if err := defaultBinary(&o.Binary); err != nil {
					return err
				}
				if err := lab.CheckPrefix(o.Prefix); err != nil {
					return fmt.Errorf("--prefix: %w", err)
				}
			} else if cmd.Flags().Changed("prefix") {
				return fmt.Errorf("--prefix applies to the veth lab: it needs --veth")
			}
			if err := checkWindow(o.Window); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return benchFeedbackRun(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Receivers, "receivers", 64, "receiving hosts")
	f.Float64Var(&o.Loss, "loss", 0.05, "fault-injected loss on host-facing egress ports, 0-1")
	f.BoolVar(&o.Aggregate, "aggregate", true, "feedback aggregation on every switch")
	f.IntVar(&o.Size, "size", 4<<20, "file size in bytes")
	f.IntVar(&o.Spines, "spines", 2, "spine switches")
	f.IntVar(&o.PerLeaf, "hosts-per-leaf", 8, "hosts per leaf switch")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the file contents and loss patterns")
	f.DurationVar(&o.Timeout, "timeout", 0, "give up on the transfer after this long (0: 45s per 256 receivers, at least 45s)")
	f.BoolVar(&o.JSON, "json", false, "print JSON")
	f.BoolVar(&o.Veth, "veth", false, "run the fabric as the veth lab (root): a process and a namespace per switch and host")
	f.StringVar(&o.Binary, "binary", "", "sparsecast binary for the lab processes with --veth (default: this one)")
	f.StringVar(&o.Prefix, "prefix", perf.FeedbackVethPrefix, "namespace prefix of the --veth lab (two runs at once need two prefixes)")
	f.IntVar(&o.Window, "window", perf.FeedbackVethWindow, "the sender's and receivers' window in packets (send's own default is 8192)")
	f.IntVar(&o.FECBlock, "fec-block", 0, "packets per parity block at the sender (0: default 32; -1: no parity repairs; in-memory fabric only)")
	f.DurationVar(&o.RepairWindow, "repair-window", 0, "bound of the sender's repair hold (0: default 20ms; negative: no merging; in-memory fabric only)")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile (pprof) of the run to this file")
	return cmd
}

func benchFeedbackRun(ctx context.Context, o *BenchFeedbackOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	po := perf.FeedbackOptions{
		Receivers: o.Receivers, Loss: o.Loss, Aggregate: o.Aggregate, Size: o.Size,
		Spines: o.Spines, HostsPerLeaf: o.PerLeaf, Seed: o.Seed, Timeout: o.Timeout,
		FECBlock: o.FECBlock, RepairWindow: o.RepairWindow, Prefix: o.Prefix, Window: o.Window,
	}
	var r *perf.FeedbackResult
	var err error
	if o.CPUProfile != "" {
		pf, err := os.Create(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if o.Veth {
		r, err = perf.BenchFeedbackVeth(ctx, po, o.Binary, func(format string, args ...any) {
			if !o.JSON {
				fmt.Fprintf(o.Out, strings.TrimRight(format, "\n")+"\n", args...)
			}
		})
	} else {
		r, err = perf.BenchFeedback(ctx, po)
	}
	if err != nil {
		return err
	}
	if o.JSON {
		err = printJSON(o.Out, r)
	} else {
		fmt.Fprintf(o.Out, "%d receivers on %d leaves x %d spines (%s ports), loss %.3f, aggregation %v, %d-byte file\n",
			r.Receivers, r.Leaves, r.Spines, r.Ports, r.Loss, r.Aggregate, r.Size)
		fmt.Fprintf(o.Out, "  delivered_ok %v in %.2f s, goodput %.2f Mb/s\n", r.DeliveredOK, r.ElapsedS, r.GoodputMbps)
		fmt.Fprintf(o.Out, "  feedback at sender %.4f per DATA datagram, %.4f per original packet (%d feedback, %d DATA datagrams), %d NACKs suppressed by switches\n",
			r.FeedbackPerD, r.FeedbackPerOriginal, r.FeedbackPkts, r.DataDatagrams, r.NACKsSuppressed)
		fmt.Fprintf(o.Out, "  %d packets, %d retransmissions (%d copies), %d fault drops\n", r.DataPkts, r.Retransmissions, r.RetransmitCopies, r.FaultDrops)
		fmt.Fprintf(o.Out, "  retransmissions_per_original %.3f, feedback_per_original %.3f\n", r.RetransmissionsPerOriginal, r.FeedbackPerOrig)
	}
	if err == nil && !r.DeliveredOK {
		err = fmt.Errorf("bench feedback: delivery incomplete (receivers %s; %s)", headers.FormatIDSet(r.FailedReceiver), strings.Join(r.Errors, "; "))
	}
	return err
}
