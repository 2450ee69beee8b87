package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/metrics"
)

func TestSwitchFaultFlags(t *testing.T) {
	for _, bad := range [][]string{
		{"--for", "1s"},                  // no port
		{"--port", "p1"},                 // no duration
		{"--port", "p1", "--for", "25h"}, // too long
		{"--port", "p1", "--for", "1s", "--loss", "1.5"},
		{"--port", "p1", "--for", "1s", "--burst", "0"},
		{"--port", "p1", "--loss", "0", "--for", "1s"},
		{"--port", "p1", "--for", "1s", "--metrics-addr", "10.0.0.1:9470"},
		{"--port", "p1", "--for", "1s", "--metrics-addr", "nonsense"},
	} {
		cmd := newSwitchFaultCmd(func(*SwitchFaultOptions) error { return nil })
		cmd.SetArgs(bad)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

// `switch fault` against a switch's metrics server: the fault is set, a
// refusal is reported with the switch's reason.
func TestSwitchFaultCommand(t *testing.T) {
	cfg := &dataplane.Config{Name: "f", Ports: []dataplane.PortConfig{{Name: "p1", Type: "mem"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, _ := dataplane.NewMemPair("p1", "peer", 64, cfg.BufferSize)
	tb, err := dataplane.TablesFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := dataplane.NewSwitch(cfg, []dataplane.Port{p}, tb)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := metrics.ServeWith(ctx, "127.0.0.1:0", map[string]http.Handler{metrics.FaultPath: metrics.FaultHandler(sw, nil)})
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		cmd := newSwitchFaultCmd(nil)
		cmd.SetArgs(append([]string{"--metrics-addr", addr.String()}, args...))
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run("--port", "p1", "--for", "1h")
	if err != nil || !strings.Contains(out, "port p1: loss 1, burst 1") {
		t.Fatalf("fault: %q %v", out, err)
	}
	if f := sw.Faults(); len(f) != 1 || f[0].Port != "p1" || time.Duration(f[0].UntilNs-dataplane.MonotonicNs()) < 59*time.Minute {
		t.Fatalf("faults in force %+v", f)
	}
	if _, err := run("--port", "p7", "--for", "1s"); err == nil || !strings.Contains(err.Error(), `no port "p7"`) {
		t.Fatalf("unknown port: %v", err)
	}
	if out, err := run("--port", "p1", "--loss", "0"); err != nil || !strings.Contains(out, "no faults in force") {
		t.Fatalf("clear: %q %v", out, err)
	}
}

func TestRunCopiesFlags(t *testing.T) {
	var got *RunCopiesOptions
	cmd := NewCmdRunCopies(func(o *RunCopiesOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--copy", "h11:h21,h31", "--copy", "h22:h31,h41", "--size", "1000"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if len(got.specs) != 2 || got.specs[1].Sender != "h22" || strings.Join(got.specs[1].Receivers, ",") != "h31,h41" || got.specs[0].Size != 1000 {
		t.Fatalf("parsed %+v", got.specs)
	}
	for _, bad := range [][]string{{"--copy", "h11"}, {"--copy", ":h21"}, {"--copy", "h11:"}, {"--size", "0"}} {
		cmd := NewCmdRunCopies(func(*RunCopiesOptions) error { return nil })
		cmd.SetArgs(bad)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}
