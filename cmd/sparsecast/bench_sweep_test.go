package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchSweepFlags(t *testing.T) {
	var got *BenchSweepOptions
	cmd := NewCmdBenchSweep(func(o *BenchSweepOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--seconds-per-point", "0.25", "--cpu", "-1", "--fanouts", "1,9", "--sizes", "256,4096",
		"--csv", "a.csv", "--png", "a.png", "--md", "a.md", "--json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Backend != "mem" || got.SecondsPerPoint != 0.25 || got.CPU != -1 || !got.JSON ||
		len(got.Fanouts) != 2 || got.Fanouts[1] != 9 || len(got.Sizes) != 2 || got.Sizes[1] != 4096 ||
		got.CSV != "a.csv" || got.PNG != "a.png" || got.MD != "a.md" {
		t.Fatalf("parsed %+v", got)
	}
	noMarkers := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(noMarkers, []byte("# no markers\n"), 0o644)
	for _, bad := range [][]string{
		{"--backend", "xdp"}, {"--seconds-per-point", "0"}, {"--seconds-per-point", "-1"},
		{"--cpu", "-2"}, {"--cpu", "100000"}, {"--fanouts", "0"}, {"--fanouts", "x"}, {"--sizes", "10"},
		{"--png", "plot.txt"}, {"--readme", noMarkers}, {"--readme", "/nonexistent/README.md"}, {"extra"},
		{"--huge-dir", t.TempDir()}, {"--huge-dir", "/nonexistent"},
	} {
		cmd := NewCmdBenchSweep(func(*BenchSweepOptions) error { return nil })
		cmd.SetArgs(bad)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestSpliceSweep(t *testing.T) {
	doc := "# x\n\n" + sweepBegin + "\nold table\n" + sweepEnd + "\n\nafter\n"
	out, err := spliceSweep([]byte(doc), []byte("| new |\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "# x\n\n" + sweepBegin + "\n| new |\n" + sweepEnd + "\n\nafter\n"
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	// Splicing again gives the same document.
	if again, _ := spliceSweep(out, []byte("| new |\n")); string(again) != want {
		t.Fatalf("second splice:\n%s", again)
	}
	for _, bad := range []string{
		"no markers",
		sweepBegin + "\n" + sweepBegin + "\n" + sweepEnd,
		sweepEnd + "\n" + sweepBegin,
		sweepBegin + " only",
	} {
		if _, err := spliceSweep([]byte(bad), nil); err == nil {
			t.Errorf("%q spliced", bad)
		}
	}
}

// TestBenchSweepRun runs a two-point sweep and checks every output file.
func TestBenchSweepRun(t *testing.T) {
	dir := t.TempDir()
	readme := filepath.Join(dir, "README.md")
	os.WriteFile(readme, []byte("## Performance\n"+sweepBegin+"\n"+sweepEnd+"\n"), 0o644)
	var out, log bytes.Buffer
	o := &BenchSweepOptions{Out: &out, Log: &log, Backend: "mem", SecondsPerPoint: 0.1, CPU: -1,
		Fanouts: []int{9}, Sizes: []int{64, 4096},
		CSV: filepath.Join(dir, "r", "sweep.csv"), PNG: filepath.Join(dir, "r", "sweep.png"), MD: filepath.Join(dir, "r", "sweep.md"), Readme: readme}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	if err := benchSweepRun(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(o.CSV)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) != 2 || rows[1][1] != "9" || rows[1][2] != "4096" {
		t.Errorf("csv %v, %v: want the header and fan-out 9 at 4096 bytes (64 bytes cannot hold 9 receivers)", rows, err)
	}
	if b, err := os.ReadFile(o.PNG); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("png: %v", err)
	}
	md, err := os.ReadFile(o.MD)
	if err != nil || !strings.Contains(string(md), "cores**") {
		t.Errorf("md %v:\n%s", err, md)
	}
	rd, _ := os.ReadFile(readme)
	if !strings.Contains(string(rd), strings.TrimSpace(string(md))) || !strings.HasPrefix(string(rd), "## Performance\n"+sweepBegin+"\n") {
		t.Errorf("README not spliced:\n%s", rd)
	}
	if !strings.Contains(out.String(), "| 9 | - |") || !strings.Contains(log.String(), "skipped") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out.String(), log.String())
	}
}
