package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// RunCopiesOptions are `testbed run copies`'s flags.
type RunCopiesOptions struct {
	Out, Log io.Writer
	Prefix   string
	Copies   []string // "SENDER:HOST,HOST"
	Size     int
	Timeout  time.Duration
	JSON     bool
	specs    []lab.CopySpec
}

// NewCmdRunCopies builds `testbed run copies`.
func NewCmdRunCopies(runF func(*RunCopiesOptions) error) *cobra.Command {
	o := &RunCopiesOptions{Out: os.Stdout, Log: os.Stderr}
	cmd := &cobra.Command{
		Use:   "copies [--copy SENDER:HOST,HOST ...] [--size BYTES] [--json]",
		Short: "Several checkpoint copies at once, from different hosts to overlapping storage hosts, on the running testbed",
		Long: `Every --copy SENDER:HOST,HOST,... copies its own file of --size random
bytes reliably from SENDER to those hosts, all copies at once, each with a
random session; each storage host receives every file sent to it with one
"sparsecast recv --out". Every copy is checked byte for byte, and against
its own accounting: the sender's summary names exactly its hosts, all
complete, and each host's report has that sender's stream with exactly the
packets the sender addressed to it. By default the first host of leaf 1
and the first of leaf 2 send, to the first three and to the second to
fourth of the other hosts with an ID (two hosts in common).`,
		Example: `  sparsecast testbed run copies
  sparsecast testbed run copies --copy h11:h21,h31,h41 --copy h22:h31,h41,h42 --size 8388608 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Size < 1 || o.Size > 1<<30 {
				return fmt.Errorf("--size %d: want 1 byte to 1 GiB", o.Size)
			}
			for _, c := range o.Copies {
				sender, to, ok := strings.Cut(c, ":")
				if !ok || sender == "" || to == "" {
					return fmt.Errorf("--copy %q: want SENDER:HOST,HOST", c)
				}
				o.specs = append(o.specs, lab.CopySpec{Sender: sender, Receivers: strings.Split(to, ","), Size: o.Size})
			}
			if runF != nil {
				return runF(o)
			}
			return onTestbed(o.Prefix, func(f *lab.Fabric) error {
				specs := o.specs
				if len(specs) == 0 {
					var err error
					if specs, err = defaultCopies(f, o.Size); err != nil {
						return err
					}
				}
				r, err := lab.CopiesOn(cmd.Context(), f, lab.CopiesOptions{Copies: specs, Timeout: o.Timeout,
					Log: func(format string, args ...any) { fmt.Fprintf(o.Log, format+"\n", args...) }})
				if err != nil {
					return err
				}
				if err := printResult(o.Out, o.JSON, r, r.Table()); err != nil {
					return err
				}
				if !r.DeliveredOK {
					return fmt.Errorf("copies: not every copy is complete and its own")
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&o.Prefix, "prefix", lab.DefaultPrefix, "the testbed's namespace prefix")
	cmd.Flags().StringArrayVar(&o.Copies, "copy", nil, "a copy, SENDER:HOST,HOST,... (repeat; default: two overlapping copies)")
	cmd.Flags().IntVar(&o.Size, "size", 4<<20, "file size in bytes, per copy")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", time.Minute, "give up after this long")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

// defaultCopies: the first hosts with an ID of the first two leaves send,
// to the first three and the second to fourth of the others.
func defaultCopies(f *lab.Fabric, size int) ([]lab.CopySpec, error) {
	var senders, rest []string
	leaves := map[int]bool{}
	for _, h := range f.Topo.Hosts {
		switch {
		case !h.Receiver:
		case len(senders) < 2 && !leaves[h.Switch]:
			leaves[h.Switch] = true
			senders = append(senders, h.Name)
		default:
			rest = append(rest, h.Name)
		}
	}
	if len(senders) < 2 || len(rest) < 4 {
		return nil, fmt.Errorf("copies: the testbed needs hosts with IDs on two leaves and four more; give --copy")
	}
	return []lab.CopySpec{
		{Sender: senders[0], Receivers: rest[0:3], Size: size},
		{Sender: senders[1], Receivers: rest[1:4], Size: size},
	}, nil
}
