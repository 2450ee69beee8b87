package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sparsecast/sparsecast/control"
	"github.com/sparsecast/sparsecast/headers"
)

// CtlOptions are `sparsecast ctl`'s flags and arguments, checked before
// runF sees them.
type CtlOptions struct {
	Out io.Writer

	API       string
	TokenFile string
	JSON      bool

	// Op is one of "group add", "group del", "group show", "route show",
	// "status".
	Op string
	// Group is the group argument (HasGroup false: none given).
	Group    uint32
	HasGroup bool
	// MembersFlag is --members as given; Members is it parsed.
	MembersFlag string
	Members     []uint16
	Switch      string
}

// NewCmdCtl builds `sparsecast ctl`; runF replaces the run function in
// tests.
func NewCmdCtl(runF func(*CtlOptions) error) *cobra.Command {
	o := &CtlOptions{}
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Talk to a running control process: groups, routes, status",
		Long: `Sends requests to the control process's API (sparsecast control run) and
prints the answers as tables, or as JSON with --json.`,
		Example: `  sparsecast ctl group add 7 --members 1-4,9
  sparsecast ctl group del 7 --members 9
  sparsecast ctl group show
  sparsecast ctl route show --switch leaf1
  sparsecast ctl --api 127.0.0.1:7470 --token-file /etc/sparsecast/token status --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.API, "api", control.DefaultAPI, "API address: unix:/path or a loopback HOST:PORT")
	pf.StringVar(&o.TokenFile, "token-file", "", "file holding the API's bearer token (needed over TCP)")
	pf.BoolVar(&o.JSON, "json", false, "print JSON")

	run := func(cmd *cobra.Command, op string) error {
		o.Op = op
		o.Out = cmd.OutOrStdout()
		network, _, err := control.ParseAPIAddr(o.API)
		if err != nil {
			return err
		}
		if network == "tcp" && o.TokenFile == "" {
			return fmt.Errorf("--api %s is TCP: it needs --token-file", o.API)
		}
		if o.MembersFlag != "" {
			if o.Members, err = headers.ParseIDSet(o.MembersFlag); err != nil {
				return fmt.Errorf("--members: %w", err)
			}
		}
		if runF != nil {
			return runF(o)
		}
		return ctlRun(cmd.Context(), o)
	}
	groupArg := func(args []string) error {
		if len(args) == 0 {
			return nil
		}
		v, err := strconv.ParseUint(args[0], 10, 32)
		if err != nil {
			return fmt.Errorf("group %q: want a decimal group ID 0-%d", args[0], uint32(1<<32-1))
		}
		o.Group, o.HasGroup = uint32(v), true
		return nil
	}

	group := &cobra.Command{Use: "group", Short: "Create, change, delete and list groups", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() }}
	add := &cobra.Command{
		Use:   "add GROUP --members IDS",
		Short: "Add members to a group, creating it if needed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := groupArg(args); err != nil {
				return err
			}
			if o.MembersFlag == "" {
				return errors.New("--members is required, e.g. --members 1-4,7")
			}
			return run(cmd, "group add")
		},
	}
	add.Flags().StringVar(&o.MembersFlag, "members", "", "receiver IDs, e.g. 1-4,7")
	del := &cobra.Command{
		Use:   "del GROUP [--members IDS]",
		Short: "Delete a group, or with --members remove only those members",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := groupArg(args); err != nil {
				return err
			}
			return run(cmd, "group del")
		},
	}
	del.Flags().StringVar(&o.MembersFlag, "members", "", "remove only these receiver IDs")
	show := &cobra.Command{
		Use:   "show [GROUP]",
		Short: "List every group, or show one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := groupArg(args); err != nil {
				return err
			}
			return run(cmd, "group show")
		},
	}
	group.AddCommand(add, del, show)

	route := &cobra.Command{Use: "route", Short: "Show computed routes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() }}
	routeShow := &cobra.Command{
		Use:   "show --switch NAME",
		Short: "Show a switch's routes: primary and backup port per receiver",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Switch == "" {
				return errors.New("--switch is required")
			}
			return run(cmd, "route show")
		},
	}
	routeShow.Flags().StringVar(&o.Switch, "switch", "", "switch name")
	route.AddCommand(routeShow)

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the served switches: generations, dataplane boot IDs, links",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return run(cmd, "status") },
	}
	cmd.AddCommand(group, route, status)
	return cmd
}

func ctlRun(ctx context.Context, o *CtlOptions) error {
	token := ""
	if o.TokenFile != "" {
		var err error
		if token, err = control.ReadToken(o.TokenFile); err != nil {
			return err
		}
	}
	c, err := control.NewClient(o.API, token)
	if err != nil {
		return err
	}
	defer c.Close()
	var v any
	switch o.Op {
	case "group add":
		v, err = c.AddMembers(ctx, o.Group, o.Members)
	case "group del":
		if o.Members != nil {
			v, err = c.RemoveMembers(ctx, o.Group, o.Members)
		} else if err = c.DeleteGroup(ctx, o.Group); err == nil {
			v = map[string]any{"deleted": o.Group}
		}
	case "group show":
		if o.HasGroup {
			var g *control.Group
			if g, err = c.Group(ctx, o.Group); err == nil {
				v = []control.Group{*g}
			}
		} else {
			v, err = c.Groups(ctx)
		}
	case "route show":
		v, err = c.Routes(ctx, o.Switch)
	case "status":
		v, err = c.Status(ctx)
	default:
		return fmt.Errorf("unknown operation %q", o.Op)
	}
	if err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return printCtl(o.Out, v)
}

// printCtl prints an API answer as a table.
func printCtl(out io.Writer, v any) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	switch v := v.(type) {
	case *control.Group:
		fmt.Fprintf(tw, "group %d: %d members: %s\n", v.ID, len(v.Members), headers.FormatIDSet(v.Members))
	case map[string]any:
		fmt.Fprintf(tw, "group %v deleted\n", v["deleted"])
	case []control.Group:
		fmt.Fprintln(tw, "GROUP\tMEMBERS\tIDS")
		for _, g := range v {
			fmt.Fprintf(tw, "%d\t%d\t%s\n", g.ID, len(g.Members), headers.FormatIDSet(g.Members))
		}
	case *control.RoutesView:
		served := ""
		if !v.Served {
			served = " (not served by this control process)"
		}
		fmt.Fprintf(tw, "switch %s%s\n", v.Switch, served)
		if len(v.DownLinks) > 0 {
			fmt.Fprintf(tw, "computed without down links: %v\n", v.DownLinks)
		}
		fmt.Fprintln(tw, "RECEIVER\tHOST\tPRIMARY\tBACKUP")
		for _, r := range v.Routes {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Receiver, r.Host, dash(r.Primary), dash(r.Backup))
		}
	case *control.Status:
		fmt.Fprintln(tw, "SWITCH\tRING\tDATAPLANE\tGENERATION\tAPPLIED\tIN SYNC\tPUSHES full/routes/groups\tREROUTES\tREJECTED")
		for _, s := range v.Switches {
			ring := "open"
			if !s.Connected {
				ring = "waiting"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%v\t%d/%d/%d\t%d\t%d\n", s.Name, ring, dash(s.BootID), s.Generation, s.Applied, s.InSync,
				s.Pushes["full"], s.Pushes["routes"], s.Pushes["groups"], s.Reroutes, s.Rejected)
		}
		tw.Flush()
		fmt.Fprintf(out, "\ngroups: %d (kept in %s)\n", v.Groups, v.State)
		if h := v.Store; h != nil {
			fmt.Fprintf(out, "store: revision %d of %d, caught up %v, connected %v\n", h.Revision, h.Head, h.CaughtUp, h.Connected)
			if h.Error != "" {
				fmt.Fprintf(out, "store error: %s\n", h.Error)
			}
		}
		if len(v.DownLinks) == 0 {
			fmt.Fprintln(out, "down links: none")
		} else {
			fmt.Fprintf(out, "down links: %v\n", v.DownLinks)
		}
		for _, s := range v.Switches {
			for _, l := range s.Links {
				if l.State != "up" {
					fmt.Fprintf(out, "  %s:%s (to %s) %s, loss %d ppm\n", s.Name, l.Port, l.Peer, l.State, l.LossPPM)
				}
			}
			if s.RingError != "" {
				fmt.Fprintf(out, "  %s: ring: %s\n", s.Name, s.RingError)
			}
		}
		return nil
	default:
		return fmt.Errorf("cannot print %T", v)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
