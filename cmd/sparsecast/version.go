package main

// The build a binary came from: `sparsecast version [--json]`,
// `sparsecast --version`, and the "build" object every --json benchmark
// result and report starts with (printJSON), so a number in a report names
// the code that produced it.
//
// In: the Go toolchain's build info (debug.ReadBuildInfo: module version,
// vcs.revision, vcs.time, vcs.modified, -tags) and, for builds without VCS
// stamping (GOFLAGS=-buildvcs=false, a source tarball), what `make build`
// passes with -ldflags -X. Out: BuildInfo.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strconv"

	"github.com/spf13/cobra"
)

// Set by `make build` with -ldflags "-X main.buildCommit=... ..."; the
// toolchain's VCS stamp, when there is one, wins over them.
var (
	buildVersion  string // git describe --tags --always --dirty
	buildCommit   string // git rev-parse HEAD
	buildTime     string // RFC 3339, UTC (SOURCE_DATE_EPOCH when set)
	buildModified string // "true" when the work tree had uncommitted changes
)

// BuildInfo names a build. Commit is "unknown" when neither the toolchain
// nor the build passed one.
type BuildInfo struct {
	Version    string `json:"version"`
	Commit     string `json:"commit"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified"`
	BuildTime  string `json:"build_time,omitempty"`
	GoVersion  string `json:"go_version"`
	Platform   string `json:"platform"`
	Tags       string `json:"tags,omitempty"`
}

// readBuildInfo merges the toolchain's build info with the -ldflags values.
func readBuildInfo() BuildInfo {
	b := BuildInfo{
		Version: buildVersion, Commit: buildCommit, BuildTime: buildTime,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
	}
	b.Modified, _ = strconv.ParseBool(buildModified)
	if bi, ok := debug.ReadBuildInfo(); ok {
		// A module version ("v0.3.0", or the pseudo-version Go 1.24+
		// derives from the commit) beats git describe; "(devel)" does not.
		if v := bi.Main.Version; v != "" && (v != "(devel)" || b.Version == "") {
			b.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.CommitTime = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			case "-tags":
				b.Tags = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// String is the one-line form of `sparsecast version` and --version.
func (b BuildInfo) String() string {
	s := "sparsecast " + b.Version + " commit " + b.Commit
	if b.Modified {
		s += " (modified)"
	}
	if b.CommitTime != "" {
		s += " of " + b.CommitTime
	}
	if b.BuildTime != "" {
		s += ", built " + b.BuildTime
	}
	s += " with " + b.GoVersion + " for " + b.Platform
	if b.Tags != "" {
		s += " (tags " + b.Tags + ")"
	}
	return s
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print the version, commit and build time of this binary",
		Long: `Prints the module version, the commit the binary was built from (with
"(modified)" when the work tree had uncommitted changes), the commit and
build times, the Go version and the build tags. Every --json benchmark
result and report carries the same object under "build".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b := readBuildInfo()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(b)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), b.String())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printJSON writes a benchmark result or report as indented JSON. A JSON
// object gets the build first, as "build", so no result type has to carry
// it; anything else is written as it is.
func printJSON(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(body) > 0 && body[0] == '{' {
		build, err := json.Marshal(readBuildInfo())
		if err != nil {
			return err
		}
		var withBuild bytes.Buffer
		withBuild.WriteString(`{"build":`)
		withBuild.Write(build)
		if string(body) != "{}" {
			withBuild.WriteByte(',')
		}
		withBuild.Write(body[1:])
		body = withBuild.Bytes()
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}
