package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/headers"
)

// newHeaderCmd is `sparsecast header`: tools around the SMH wire format.
func newHeaderCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "header",
		Short: "SMH wire-format tools",
	}
	cmd.AddCommand(newCmdHeaderSize(nil))
	return cmd
}

// headerSizeOptions are the inputs of `sparsecast header size`.
type headerSizeOptions struct {
	Out io.Writer

	Receivers int    // k
	Domain    int    // N: IDs are drawn from [0, N)
	Clustered bool   // k consecutive IDs from a 64-aligned start
	Seed      uint64 // for the random draw and the clustered start
	JSON      bool
	Table     bool // the standard cases as a markdown table
}

func newCmdHeaderSize(runF func(*headerSizeOptions) error) *cobra.Command {
	opts := &headerSizeOptions{}
	cmd := &cobra.Command{
		Use:   "size --receivers K --domain N [--clustered] [--seed S] [--json] | size --table [--json]",
		Short: "Compare SMH header size with BIER's for K receivers out of N",
		Long: `Pick K distinct receiver IDs out of [0, N), at random or, with --clustered,
consecutive from a 64-aligned block (hosts under one leaf), and print the size
of the SMH DATA header that addresses them (in the smaller set encoding) next
to BIER's (RFC 8296): the total header bytes of all the packet copies BIER
needs at its best BitString length. The draw is seeded, so output is
reproducible. --table prints the standard cases of docs/smh.md as markdown,
or with --json as {"seed": S, "cases": [...]}, one object per case as
--json prints it for one comparison.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Out = cmd.OutOrStdout()
			if !opts.Table && (!cmd.Flags().Changed("receivers") || !cmd.Flags().Changed("domain")) {
				return fmt.Errorf("--receivers and --domain are required (or use --table)")
			}
			if runF != nil {
				return runF(opts)
			}
			return runHeaderSize(opts)
		},
	}
	f := cmd.Flags()
	f.IntVarP(&opts.Receivers, "receivers", "k", 0, "number of receivers K (1..N)")
	f.IntVarP(&opts.Domain, "domain", "n", 0, "size N of the ID space (1..65536)")
	f.BoolVar(&opts.Clustered, "clustered", false, "consecutive IDs from a 64-aligned block instead of random ones")
	f.Uint64Var(&opts.Seed, "seed", 1, "random seed")
	f.BoolVar(&opts.JSON, "json", false, "print JSON")
	f.BoolVar(&opts.Table, "table", false, "print the standard cases as a markdown table")
	cmd.MarkFlagsMutuallyExclusive("table", "receivers")
	cmd.MarkFlagsMutuallyExclusive("table", "domain")
	cmd.MarkFlagsMutuallyExclusive("table", "clustered")
	return cmd
}

// sizeResult is one comparison; its JSON is `header size --json`.
type sizeResult struct {
	Receivers     int    `json:"receivers"`
	Domain        int    `json:"domain"`
	Clustered     bool   `json:"clustered"`
	Seed          uint64 `json:"seed"`
	IDs           string `json:"ids"`
	SMHBytes      int    `json:"smh_bytes"`
	SMHEncoding   string `json:"smh_encoding"`
	SMHSetEntries int    `json:"smh_set_entries"`
	// BIER as the domain carries it: the domain's BSL (headers.BIERDomainBSL).
	BIERBytesTotal int `json:"bier_bytes_total"`
	BIERPackets    int `json:"bier_packets"`
	BIERBSL        int `json:"bier_bsl"`
	// The BSL that would suit this one set best, were a domain free to pick
	// it per packet (it is not): a lower bound on BIER's cost.
	BIERBestBytesTotal int                `json:"bier_best_bytes_total"`
	BIERBestPackets    int                `json:"bier_best_packets"`
	BIERBestBSL        int                `json:"bier_best_bsl"`
	BIERPerBSL         []headers.BIERCost `json:"bier_per_bsl"`
}

func runHeaderSize(o *headerSizeOptions) error {
	if o.Table && o.JSON {
		return writeSizeTableJSON(o.Out, o.Seed)
	}
	if o.Table {
		return writeSizeTable(o.Out, o.Seed)
	}
	r, err := headerSize(o.Receivers, o.Domain, o.Clustered, o.Seed)
	if err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	how := "random"
	if r.Clustered {
		how = "clustered"
	}
	set := fmt.Sprintf("%d IDs", r.SMHSetEntries)
	if r.SMHEncoding == headers.EncBlocks.String() {
		set = fmt.Sprintf("%d block bitmap(s)", r.SMHSetEntries)
	}
	fmt.Fprintf(o.Out, "receivers  %d of %d, %s (seed %d): %s\n", r.Receivers, r.Domain, how, r.Seed, r.IDs)
	fmt.Fprintf(o.Out, "SMH        %d bytes: DATA header, %d fixed + %d set (%s, %s)\n",
		r.SMHBytes, headers.FixedLen, r.SMHBytes-headers.FixedLen, r.SMHEncoding, set)
	fmt.Fprintf(o.Out, "BIER       %d bytes total: %d packet(s) x %d bytes (BSL %d, the domain's)\n",
		r.BIERBytesTotal, r.BIERPackets, r.BIERBytesTotal/max(r.BIERPackets, 1), r.BIERBSL)
	if r.BIERBestBSL != r.BIERBSL {
		fmt.Fprintf(o.Out, "BIER       (a BSL picked for this set alone: %d bytes total, %d packet(s), BSL %d)\n",
			r.BIERBestBytesTotal, r.BIERBestPackets, r.BIERBestBSL)
	}
	return nil
}

// headerSize draws the receivers and sizes both headers. The SMH size is
// that of a header actually written by headers.PutHeader and validated.
func headerSize(k, n int, clustered bool, seed uint64) (sizeResult, error) {
	if n < 1 || n > headers.MaxID+1 {
		return sizeResult{}, fmt.Errorf("--domain %d: must be 1..%d", n, headers.MaxID+1)
	}
	if k < 1 || k > n {
		return sizeResult{}, fmt.Errorf("--receivers %d: must be 1..%d (the domain)", k, n)
	}
	ids := pickIDs(k, n, clustered, seed)
	buf := make([]byte, headers.HeaderLenFor(headers.TypeData, ids))
	hl := headers.PutHeader(buf, headers.Fields{Type: headers.TypeData, HopLimit: headers.DefaultHopLimit}, ids)
	h := headers.SMH(buf[:hl])
	if hl == 0 || h.Validate() != nil {
		return sizeResult{}, fmt.Errorf("internal error: cannot encode %d receivers", k)
	}
	best, per := headers.BIERSize(ids)
	dom := per[len(per)-1]
	for _, c := range per {
		if c.BSL == headers.BIERDomainBSL(n) {
			dom = c
		}
	}
	return sizeResult{
		Receivers: k, Domain: n, Clustered: clustered, Seed: seed,
		IDs:      headers.FormatIDSet(ids),
		SMHBytes: hl, SMHEncoding: h.Encoding().String(), SMHSetEntries: int(h.SetCount()),
		BIERBytesTotal: dom.TotalBytes, BIERPackets: dom.Packets, BIERBSL: dom.BSL,
		BIERBestBytesTotal: best.TotalBytes, BIERBestPackets: best.Packets, BIERBestBSL: best.BSL,
		BIERPerBSL: per[:],
	}, nil
}

// pickIDs returns k distinct ascending IDs in [0, n): a seeded random draw,
// or k consecutive IDs starting at a random 64-aligned ID that leaves room
// for all k. 1 <= k <= n <= 65536.
func pickIDs(k, n int, clustered bool, seed uint64) []uint16 {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	ids := make([]uint16, 0, k)
	if clustered {
		start := 64 * rng.IntN((n-k)/64+1)
		for i := range k {
			ids = append(ids, uint16(start+i))
		}
		return ids
	}
	// A partial Fisher-Yates shuffle of [0, n).
	all := make([]uint16, n)
	for i := range all {
		all[i] = uint16(i)
	}
	for i := range k {
		j := i + rng.IntN(n-i)
		all[i], all[j] = all[j], all[i]
	}
	ids = append(ids, all[:k]...)
	slices.Sort(ids)
	return ids
}

// sizeCases are the standard comparisons of docs/smh.md and the README.
var sizeCases = []struct {
	k, n      int
	clustered bool
}{
	{9, 256, false},
	{9, 256, true},
	{64, 8192, false},
	{64, 8192, true},
	{9, 65536, false},
	{256, 65536, false},
}

func writeSizeTable(w io.Writer, seed uint64) error {
	if _, err := fmt.Fprintf(w, "| receivers k, domain N | SMH | BIER at the domain's BSL (RFC 8296: 12 + BSL/8 per copy) |\n|---|---|---|\n"); err != nil {
		return err
	}
	for _, c := range sizeCases {
		r, err := headerSize(c.k, c.n, c.clustered, seed)
		if err != nil {
			return err
		}
		how := "random"
		if c.clustered {
			how = "under one leaf"
		}
		if c.clustered && c.k > 64 {
			how = "consecutive"
		}
		_, err = fmt.Fprintf(w, "| %d of %d, %s | %d + %d = %d B (%s) | %d B: %d packet(s) x %d B (BSL %d) |\n",
			c.k, c.n, how, headers.FixedLen, r.SMHBytes-headers.FixedLen, r.SMHBytes, r.SMHEncoding,
			r.BIERBytesTotal, r.BIERPackets, r.BIERBytesTotal/max(r.BIERPackets, 1), r.BIERBSL)
		if err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\nRandom IDs drawn with seed %d (`sparsecast header size --table --seed %d`).\n", seed, seed)
	return err
}

// writeSizeTableJSON is `size --table --json`: the table's cases as the
// objects `size --json` prints.
func writeSizeTableJSON(w io.Writer, seed uint64) error {
	table := struct {
		Seed  uint64       `json:"seed"`
		Cases []sizeResult `json:"cases"`
	}{Seed: seed}
	for _, c := range sizeCases {
		r, err := headerSize(c.k, c.n, c.clustered, seed)
		if err != nil {
			return err
		}
		table.Cases = append(table.Cases, r)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(table)
}
