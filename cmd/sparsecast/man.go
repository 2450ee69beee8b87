package main

// `sparsecast man --dir DIR`: one man page per command of the tree, made
// from the same cobra commands --help prints (github.com/spf13/cobra/doc),
// with an EXIT STATUS section. `make man` writes them to man/; `make
// install` puts them in PREFIX/share/man/man1.
//
// In: the command tree. Out: DIR/sparsecast.1, DIR/sparsecast-switch-run.1 ...

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// ManOptions are the flags of `man`.
type ManOptions struct {
	Out io.Writer
	Dir string
}

func newManCmd(runF func(*ManOptions) error) *cobra.Command {
	o := &ManOptions{}
	cmd := &cobra.Command{
		Use:   "man --dir DIR",
		Short: "Write a man page for every command into DIR",
		Long: `Writes one roff man page (section 1) per command, named after the command's
path (sparsecast-switch-run.1 for "sparsecast switch run"), from the same
text --help prints. The date is that of SOURCE_DATE_EPOCH when set, else
today. make man writes them to man/ and make install installs them.`,
		Example: `  sparsecast man --dir man && man -l man/sparsecast-switch-run.1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			if o.Dir == "" {
				return usageErrorf("--dir is required")
			}
			if runF != nil {
				return runF(o)
			}
			n, err := writeManPages(cmd.Root(), o.Dir)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(o.Out, "%d man pages in %s\n", n, o.Dir)
			return err
		},
	}
	cmd.Flags().StringVar(&o.Dir, "dir", "", "directory to write the pages to (created if missing)")
	return cmd
}

// writeManPages writes the page of root and of every available command
// below it, and returns how many it wrote.
func writeManPages(root *cobra.Command, dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	b := readBuildInfo()
	n := 0
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		// The same selection as doc.GenManTree, whose pages these are.
		if c.HasParent() && (!c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand()) {
			return nil
		}
		c.DisableAutoGenTag = true
		header := &doc.GenManHeader{Section: "1", Source: "sparsecast " + b.Version, Manual: "sparsecast manual"}
		var page bytes.Buffer
		if err := doc.GenMan(c, header, &page); err != nil {
			return fmt.Errorf("man page of %q: %w", c.CommandPath(), err)
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		if err := writeFile(filepath.Join(dir, name), withExitStatus(page.Bytes())); err != nil {
			return err
		}
		n++
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	return n, walk(root)
}

// withExitStatus adds the EXIT STATUS section (exitcode.go) to a page,
// before SEE ALSO where there is one, as man-pages(7) orders them.
func withExitStatus(page []byte) []byte {
	var sec bytes.Buffer
	sec.WriteString(".SH EXIT STATUS\n")
	for _, line := range strings.Split(exitCodesHelp, "\n")[1:] {
		code, what, _ := strings.Cut(strings.TrimSpace(line), "  ")
		fmt.Fprintf(&sec, ".TP\n\\fB%s\\fP\n%s\n", code, strings.TrimSpace(what))
	}
	if i := bytes.Index(page, []byte("\n.SH SEE ALSO")); i >= 0 {
		return append(append(append([]byte{}, page[:i+1]...), sec.Bytes()...), page[i+1:]...)
	}
	if len(page) > 0 && page[len(page)-1] != '\n' {
		page = append(page, '\n')
	}
	return append(page, sec.Bytes()...)
}
