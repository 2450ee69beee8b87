package main

// Exit codes, decided in one place for the whole command tree: 2 when the
// command line is wrong (fix it; running it again as it is will fail
// again), 1 when the run itself failed, 0 on success.
//
// In: the command tree (markUsageErrors wraps its flag errors, argument
// validators and flag-group checks) and the error ExecuteC returns. Out:
// exitCode's number, and the text that --help and the man pages print.

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

const (
	exitOK      = 0
	exitFailure = 1 // the run failed: a port, a file, the network, a peer
	exitUsage   = 2 // the command line is wrong
)

// exitCodesHelp closes every command's --help and man page.
const exitCodesHelp = `Exit status:
  0  success
  1  the run failed (a port, file, peer or check failed)
  2  usage error: unknown command or flag, bad flag value, wrong arguments`

// usageError marks an error as the command line's fault.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return usageError{fmt.Errorf(format, a...)}
}

// markUsageErrors walks the tree and makes every check cobra does on the
// command line return a usageError: flag parsing (the root's flag error
// func, which subcommands inherit), positional-argument validators,
// required and grouped flags, and unknown subcommands of a command that
// only groups others (cobra would print its help and exit 0).
func markUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	// Required and mutually exclusive flags: cobra checks them after the
	// pre-run hooks, with plain errors; checked here first, they are usage
	// errors. (No command in the tree has a PersistentPreRun of its own,
	// which would replace this one.)
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := cmd.ValidateRequiredFlags(); err != nil {
			return usageError{err}
		}
		if err := cmd.ValidateFlagGroups(); err != nil {
			return usageError{err}
		}
		return nil
	}
	// Subcommands inherit the root's usage template, which --help prints.
	root.SetUsageTemplate(root.UsageTemplate() + "\n" + exitCodesHelp + "\n")
	// cobra adds help and completion at Execute; added now, they are walked.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.Runnable() && c.HasSubCommands() {
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
				}
				return cmd.Help()
			}
		} else if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// exitCode maps the error of a run of cmd to the process's exit status.
// Besides usageErrors, an error whose text starts with the name of one of
// cmd's flags ("--size 9000: want at most 1514") is a usage error: every
// command checks its flag values first, in its RunE, with messages of that
// form, before it opens anything.
func exitCode(cmd *cobra.Command, err error) int {
	if err == nil {
		return exitOK
	}
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	if cmd != nil && namesFlagOf(cmd, err.Error()) {
		return exitUsage
	}
	// Root-level lookups fail before any command runs: "unknown command".
	if cmd != nil && !cmd.HasParent() && strings.HasPrefix(err.Error(), "unknown command ") {
		return exitUsage
	}
	return exitFailure
}

// namesFlagOf reports whether msg opens with "--NAME" for a flag of cmd.
func namesFlagOf(cmd *cobra.Command, msg string) bool {
	rest, ok := strings.CutPrefix(msg, "--")
	if !ok {
		return false
	}
	end := strings.IndexFunc(rest, func(r rune) bool {
		return !(r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
	if end >= 0 {
		rest = rest[:end]
	}
	return rest != "" && cmd.Flags().Lookup(rest) != nil
}
