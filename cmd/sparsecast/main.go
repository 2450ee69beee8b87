// Command sparsecast is the one binary of the project: the switch, the
// control process, the host endpoints, the benchmarks and the lab.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "sparsecast",
		Short:         "Sparse multicast for AI clusters: switch, control, endpoints, benchmarks",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newHeaderCmd(),
		newSwitchCmd(),
		newBenchCmd(),
		NewCmdSend(nil),
		NewCmdRecv(nil),
		newTestbedCmd(),
		NewCmdControl(nil),
		NewCmdCtl(nil),
		newVersionCmd(),
		newManCmd(nil),
	)
	b := readBuildInfo()
	root.Version = b.Version
	root.SetVersionTemplate(b.String() + "\n")
	markUsageErrors(root)
	return root
}

func main() {
	cmd, err := newRootCmd().ExecuteContextC(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "sparsecast:", err)
	}
	os.Exit(exitCode(cmd, err))
}
