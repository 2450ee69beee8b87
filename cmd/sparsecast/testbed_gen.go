package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/testbeds/gen"
)

// newTestbedGenCmd groups the fabric generators.
func newTestbedGenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Write fabric descriptions too big to write by hand",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdTestbedGenFatTree(nil))
	return cmd
}

// TestbedGenFatTreeOptions are `testbed gen fattree`'s flags.
type TestbedGenFatTreeOptions struct {
	Out   io.Writer
	K     int
	Hosts int
	File  string
}

// NewCmdTestbedGenFatTree builds `testbed gen fattree`.
func NewCmdTestbedGenFatTree(runF func(*TestbedGenFatTreeOptions) error) *cobra.Command {
	o := &TestbedGenFatTreeOptions{}
	cmd := &cobra.Command{
		Use:   "fattree (--k K | --hosts N) [-o FILE]",
		Short: "Write a k-ary 3-tier fat-tree as a topology file (control run --topology)",
		Long: `Write the standard k-ary 3-tier fat-tree: k pods of k/2 edge (leaf) and
k/2 agg switches, (k/2)^2 core switches and k/2 hosts per edge, k^3/4 hosts
in all (--hosts 1024 is k=16, 8192 k=32, 65536 k=64, the most that 16-bit
receiver IDs address). Names, ports, IPs and receiver IDs follow
testbeds/fattree.yaml (k=4), except that receiver IDs are packed, each edge's
hosts right after the previous edge's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			switch {
			case o.K != 0 && o.Hosts != 0:
				return fmt.Errorf("--k and --hosts: give one")
			case o.Hosts != 0:
				k, err := gen.FatTreeKForHosts(o.Hosts)
				if err != nil {
					return err
				}
				o.K = k
			case o.K == 0:
				return fmt.Errorf("give --k or --hosts")
			}
			if _, err := gen.FatTreeSize(o.K); err != nil {
				return fmt.Errorf("--k: %w", err)
			}
			if runF != nil {
				return runF(o)
			}
			return runTestbedGenFatTree(o)
		},
	}
	cmd.Flags().IntVar(&o.K, "k", 0, "switch radix: even, 2-64")
	cmd.Flags().IntVar(&o.Hosts, "hosts", 0, "host count instead of --k (k^3/4: 1024, 8192, 65536, ...)")
	cmd.Flags().StringVarP(&o.File, "out", "o", "", "file to write (default: standard output)")
	return cmd
}

func runTestbedGenFatTree(o *TestbedGenFatTreeOptions) error {
	if o.File == "" {
		return gen.FatTree(o.Out, o.K)
	}
	f, err := os.Create(o.File)
	if err != nil {
		return err
	}
	if err := gen.FatTree(f, o.K); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	c, _ := gen.FatTreeSize(o.K)
	fmt.Fprintf(o.Out, "wrote %s: k=%d fat-tree, %d switches (%d edge, %d agg, %d core), %d links, %d hosts\n",
		o.File, o.K, c.Switches, c.Edges, c.Aggs, c.Cores, c.Links, c.Hosts)
	return nil
}
