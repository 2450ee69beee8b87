package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/perf"
	"github.com/sparsecast/sparsecast/testbeds/gen"
)

// BenchTopologyOptions are the flags of `bench topology`.
type BenchTopologyOptions struct {
	Out            io.Writer
	Topologies     []string
	FatTrees       []int // host counts
	Failures       int
	Seed           uint64
	ResyncSwitches int
	JSON           bool
	Markdown       bool
}

// NewCmdBenchTopology builds `sparsecast bench topology`.
func NewCmdBenchTopology(runF func(*BenchTopologyOptions) error) *cobra.Command {
	o := &BenchTopologyOptions{}
	cmd := &cobra.Command{
		Use:   "topology (--topology FILE | --fattree HOSTS,...) [--json | --markdown]",
		Short: "Measure control at cluster scale: route computation, table sizes, full resync and link failures",
		Long: `For each fabric (--topology files, or generated k-ary fat-trees with
--fattree 1024,8192,65536 hosts, as "testbed gen fattree" writes them),
measures in one run: loading it; computing every switch's primaries and
backups (wall and CPU time, and the memory kept); every switch's table
per role (entries, the ring bytes of a full resync, the dataplane's table);
a full resync of every switch, one after another, through a real
shared-memory ring to a real ring applier (a ring file in a fresh 0700
directory under /dev/shm, removed afterwards); and --failures random link
failures, each recomputed incrementally and pushed to every changed switch
as a delta batch through the same ring, then repaired. --markdown prints
the README's table, one row per fabric.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			if (len(o.Topologies) == 0) == (len(o.FatTrees) == 0) {
				return fmt.Errorf("give --topology or --fattree")
			}
			for _, h := range o.FatTrees {
				if _, err := gen.FatTreeKForHosts(h); err != nil {
					return fmt.Errorf("--fattree: %w", err)
				}
			}
			if o.Failures < 1 || o.Failures > 1000 {
				return fmt.Errorf("--failures %d: want 1-1000", o.Failures)
			}
			if o.ResyncSwitches < 0 {
				return fmt.Errorf("--resync-switches %d: want 0 (all) or more", o.ResyncSwitches)
			}
			if o.JSON && o.Markdown {
				return fmt.Errorf("--json and --markdown: give one")
			}
			if runF != nil {
				return runF(o)
			}
			return benchTopologyRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringSliceVar(&o.Topologies, "topology", nil, "fabric description(s) to measure")
	cmd.Flags().IntSliceVar(&o.FatTrees, "fattree", nil, "generate k-ary fat-trees of these host counts (k^3/4: 1024, 8192, 65536) and measure them")
	cmd.Flags().IntVar(&o.Failures, "failures", 8, "random link failures to recompute and push, one at a time")
	cmd.Flags().Uint64Var(&o.Seed, "seed", 1, "seed for the failed links")
	cmd.Flags().IntVar(&o.ResyncSwitches, "resync-switches", 0, "full-resync only this many switches per role and extrapolate (0: all)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&o.Markdown, "markdown", false, "print a Markdown table, one row per fabric")
	return cmd
}

func benchTopologyRun(ctx context.Context, o *BenchTopologyOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	paths := o.Topologies
	if len(o.FatTrees) > 0 {
		dir, err := os.MkdirTemp("", "sparsecast-fattree-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		for _, h := range o.FatTrees {
			k, _ := gen.FatTreeKForHosts(h)
			p := filepath.Join(dir, "fattree-k"+strconv.Itoa(k)+".yaml")
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			err = gen.FatTree(f, k)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			paths = append(paths, p)
		}
	}
	var results []*perf.TopologyResult
	for _, p := range paths {
		r, err := perf.BenchTopology(ctx, perf.TopologyOptions{Path: p, Failures: o.Failures, Seed: o.Seed, ResyncSwitches: o.ResyncSwitches})
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if len(o.FatTrees) > 0 {
			r.Topology = "fat-tree " + strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "fattree-"), ".yaml")
		}
		results = append(results, r)
		if !o.JSON && !o.Markdown {
			printTopologyResult(o.Out, r)
		}
		runtime.GC()
	}
	switch {
	case o.JSON:
		if len(results) == 1 {
			return printJSON(o.Out, results[0])
		}
		return printJSON(o.Out, results)
	case o.Markdown:
		printTopologyMarkdown(o.Out, results)
	}
	return nil
}

func printTopologyResult(w io.Writer, r *perf.TopologyResult) {
	fmt.Fprintf(w, "%s: %d hosts (%d receivers), %d switches, %d links; %d CPUs\n", r.Topology, r.Hosts, r.Receivers, r.Switches, r.Links, r.CPUs)
	fmt.Fprintf(w, "  load %.2f s; routes and backups %.3f s (%.3f s CPU); state %.1f MB, heap %.1f MB\n", r.LoadSeconds, r.ComputeSeconds, r.ComputeCPUSeconds, r.StateMB, r.HeapMB)
	for _, t := range r.Roles {
		fmt.Fprintf(w, "  %-5s x%-5d entries %d/%d/%d  ring %s/%s/%s  dataplane %s  resync p50 %.0f us max %.0f us\n", t.Role, t.Switches,
			t.Entries[0], t.Entries[1], t.Entries[2], kb(t.RingBytes[0]), kb(t.RingBytes[1]), kb(t.RingBytes[2]), kb(t.DataplaneBytes), t.ResyncUs[0], t.ResyncUs[1])
	}
	ex := ""
	if r.ResyncExtrapolated {
		ex = fmt.Sprintf(" (extrapolated from %d switches)", r.ResyncSwitches)
	}
	fmt.Fprintf(w, "  full resync of every switch through a ring: %.2f s%s, control %.2f s, apply p50 %.0f us max %.0f us\n", r.ResyncSeconds, ex, r.ResyncControlSec, r.ResyncApplyP50Us, r.ResyncApplyMaxUs)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  %-28s down: recompute %6.2f ms (%.2f CPU) + push %6.2f ms = %6.2f ms; %d entries on %d switches; apply max %.0f us; repair %.2f ms\n",
			f.Link, f.RecomputeMs, f.RecomputeCPUMs, f.PushMs, f.ControlMs, f.ChangedEntries, f.ChangedSwitches, f.ApplyMaxUs, f.RepairMs)
	}
	fmt.Fprintf(w, "  link failure, control time: p50 %.2f ms, max %.2f ms\n", r.FailureControlP50Ms, r.FailureControlMaxMs)
}

func kb(b int) string {
	if b >= 1<<20 {
		return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(b)/1024)
}

func printTopologyMarkdown(w io.Writer, rs []*perf.TopologyResult) {
	fmt.Fprintln(w, "| fabric | hosts | switches | routes + backups: wall (CPU) | control memory: routes (heap) | a leaf's table: ring / dataplane | a core's table: ring | full resync, all switches, one ring | link failure, recompute + push: p50 / max (recompute CPU p50 / max) | entries changed, max (on switches) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		var leaf, core perf.RoleTables
		for _, t := range r.Roles {
			switch t.Role {
			case "leaf":
				leaf = t
			case "core", "spine":
				core = t
			}
		}
		maxCh, maxSw := 0, 0
		var cpus []float64
		for _, f := range r.Failures {
			if f.ChangedEntries > maxCh {
				maxCh, maxSw = f.ChangedEntries, f.ChangedSwitches
			}
			cpus = append(cpus, f.RecomputeCPUMs)
		}
		slices.Sort(cpus)
		ex := ""
		if r.ResyncExtrapolated {
			ex = fmt.Sprintf(" (from %d)", r.ResyncSwitches)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %.2f s (%.2f s) | %.0f MB (%.0f MB) | %s / %s | %s | %.1f s%s | %.1f / %.1f ms (%.1f / %.1f ms) | %d (%d) |\n",
			r.Topology, r.Hosts, r.Switches, r.ComputeSeconds, r.ComputeCPUSeconds, r.StateMB, r.HeapMB,
			kb(leaf.RingBytes[1]), kb(leaf.DataplaneBytes), kb(core.RingBytes[1]), r.ResyncSeconds, ex,
			r.FailureControlP50Ms, r.FailureControlMaxMs, cpus[(len(cpus)-1)/2], cpus[len(cpus)-1], maxCh, maxSw)
	}
}
