package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runRoot runs the whole tree as main does and returns stdout, stderr and
// the exit code main would use.
func runRoot(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err != nil {
		out.WriteString("error: " + err.Error())
	}
	return out.String(), exitCode(cmd, err)
}

func TestVersion(t *testing.T) {
	saved := []string{buildVersion, buildCommit, buildTime, buildModified}
	defer func() { buildVersion, buildCommit, buildTime, buildModified = saved[0], saved[1], saved[2], saved[3] }()
	buildVersion, buildCommit, buildTime, buildModified = "v0.9.0-3-gabc1234-dirty", "abc1234def", "2026-12-07T16:00:00Z", "true"

	out, code := runRoot(t, "version", "--json")
	if code != exitOK {
		t.Fatalf("version --json: exit %d: %s", code, out)
	}
	var b BuildInfo
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	// A test binary carries no VCS stamp (go test), so the -ldflags
	// values show through; the toolchain's module version is "(devel)".
	if b.Commit != "abc1234def" || b.Version != "v0.9.0-3-gabc1234-dirty" || !b.Modified || b.BuildTime != "2026-12-07T16:00:00Z" {
		t.Errorf("build info %+v, want the -ldflags values", b)
	}
	if !strings.HasPrefix(b.GoVersion, "go") || !strings.Contains(b.Platform, "/") {
		t.Errorf("go version %q, platform %q", b.GoVersion, b.Platform)
	}

	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, code := runRoot(t, args...)
		if code != exitOK || !strings.Contains(out, "sparsecast v0.9.0-3-gabc1234-dirty commit abc1234def (modified)") {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}

	buildVersion, buildCommit = "", ""
	if b := readBuildInfo(); b.Commit != "unknown" || b.Version == "" {
		t.Errorf("without a stamp: %+v, want commit unknown and some version", b)
	}
}

func TestPrintJSONCarriesBuild(t *testing.T) {
	var buf bytes.Buffer
	if err := printJSON(&buf, struct {
		Mpps float64 `json:"mpps"`
	}{1.5}); err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%v in %s", err, buf.String())
	}
	var b BuildInfo
	if err := json.Unmarshal(m["build"], &b); err != nil || b.Commit == "" || b.Version == "" {
		t.Errorf("build %s: %v", m["build"], err)
	}
	if string(m["mpps"]) != "1.5" {
		t.Errorf("result lost: %s", buf.String())
	}
	if !strings.HasPrefix(buf.String(), "{\n  \"build\": {") {
		t.Errorf("build should come first, indented: %s", buf.String())
	}
	// An empty object and a non-object.
	buf.Reset()
	if err := printJSON(&buf, struct{}{}); err != nil || !json.Valid(buf.Bytes()) {
		t.Errorf("empty object: %v %s", err, buf.String())
	}
	buf.Reset()
	if err := printJSON(&buf, []int{1, 2}); err != nil || strings.Join(strings.Fields(buf.String()), "") != "[1,2]" {
		t.Errorf("array: %v %s", err, buf.String())
	}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"unknown command", []string{"nosuch"}, exitUsage},
		{"unknown subcommand", []string{"switch", "nosuch"}, exitUsage},
		{"unknown flag", []string{"header", "size", "--nosuch"}, exitUsage},
		{"bad flag value", []string{"header", "size", "-k", "nine", "-n", "256"}, exitUsage},
		{"stray argument", []string{"header", "size", "-k", "9", "-n", "256", "extra"}, exitUsage},
		{"missing flags", []string{"header", "size", "-k", "9"}, exitUsage},
		{"exclusive flags", []string{"header", "size", "--table", "-k", "9"}, exitUsage},
		{"flag value out of range", []string{"header", "size", "-k", "9", "-n", "0"}, exitUsage},
		{"required flag", []string{"switch", "run"}, exitUsage},
		{"extra argument", []string{"version", "x"}, exitUsage},
		{"runtime failure", []string{"switch", "run", "--config", filepath.Join(dir, "missing.yaml")}, exitFailure},
		{"ok", []string{"header", "size", "-k", "9", "-n", "256"}, exitOK},
		{"table json", []string{"header", "size", "--table", "--json"}, exitOK},
		{"group without a command", []string{"switch"}, exitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runRoot(t, tc.args...)
			if code != tc.want {
				t.Errorf("%v: exit %d, want %d: %s", tc.args, code, tc.want, out)
			}
		})
	}
	// Every command's --help names the exit codes.
	out, _ := runRoot(t, "switch", "run", "--help")
	if !strings.Contains(out, exitCodesHelp) {
		t.Errorf("switch run --help lacks the exit codes:\n%s", out)
	}
	// An error that merely starts with "--" but names no flag of the
	// command is a runtime failure.
	cmd := &cobra.Command{Use: "x"}
	cmd.Flags().Int("size", 0, "")
	if exitCode(cmd, usageErrorf("whatever")) != exitUsage || exitCode(cmd, os.ErrNotExist) != exitFailure {
		t.Error("usageError / plain error")
	}
	if exitCode(cmd, errorString("--size 0: want 1-9")) != exitUsage || exitCode(cmd, errorString("--sizes: x")) != exitFailure {
		t.Error("flag-named errors")
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestHeaderSizeTableJSON(t *testing.T) {
	out, code := runRoot(t, "header", "size", "--table", "--json", "--seed", "3")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	var table struct {
		Seed  uint64       `json:"seed"`
		Cases []sizeResult `json:"cases"`
	}
	if err := json.Unmarshal([]byte(out), &table); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if table.Seed != 3 || len(table.Cases) != len(sizeCases) {
		t.Fatalf("seed %d, %d cases, want 3 and %d", table.Seed, len(table.Cases), len(sizeCases))
	}
	for i, c := range sizeCases {
		want, err := headerSize(c.k, c.n, c.clustered, 3)
		if err != nil {
			t.Fatal(err)
		}
		if got := table.Cases[i]; got.SMHBytes != want.SMHBytes || got.IDs != want.IDs || got.BIERBytesTotal != want.BIERBytesTotal {
			t.Errorf("case %d: %+v, want %+v", i, got, want)
		}
	}
}

func TestManPages(t *testing.T) {
	dir := t.TempDir()
	out, code := runRoot(t, "man", "--dir", dir)
	if code != exitOK {
		t.Fatalf("man: exit %d: %s", code, out)
	}
	// One page per available command of the tree.
	want := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasParent() && (!c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand()) {
			return
		}
		want[strings.ReplaceAll(c.CommandPath(), " ", "-")+".1"] = true
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	root := newRootCmd()
	walk(root)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range entries {
		got[e.Name()] = true
	}
	for name := range want {
		if !got[name] {
			t.Errorf("no page %s", name)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d pages, want %d", len(got), len(want))
	}
	for _, name := range []string{"sparsecast.1", "sparsecast-switch-run.1", "sparsecast-header-size.1", "sparsecast-version.1"} {
		if !want[name] {
			t.Errorf("the tree has no command for %s", name)
		}
	}
	page, err := os.ReadFile(filepath.Join(dir, "sparsecast-switch-run.1"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	for _, must := range []string{".TH \"SPARSECAST-SWITCH-RUN\" \"1\"", ".SH NAME", ".SH SYNOPSIS", "\\fB--config\\fP", ".SH EXIT STATUS", "usage error", ".SH SEE ALSO"} {
		if !strings.Contains(s, must) {
			t.Errorf("sparsecast-switch-run.1 lacks %q:\n%s", must, s)
		}
	}
	if strings.Index(s, ".SH EXIT STATUS") > strings.Index(s, ".SH SEE ALSO") {
		t.Error("EXIT STATUS should come before SEE ALSO")
	}
	if _, code := runRoot(t, "man"); code != exitUsage {
		t.Errorf("man without --dir: exit %d, want %d", code, exitUsage)
	}
}
