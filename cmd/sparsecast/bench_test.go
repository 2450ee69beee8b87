package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

func TestBenchReplicateFlags(t *testing.T) {
	var got *BenchReplicateOptions
	cmd := newBenchReplicateCmd(func(o *BenchReplicateOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--fanout", "64", "--size", "4096", "--seconds", "1.5", "--json", "--cpu", "-1"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Fanout != 64 || got.Size != 4096 || got.Seconds != 1.5 || !got.JSON || got.CPU != -1 {
		t.Fatalf("parsed %+v", got)
	}
	for _, bad := range [][]string{{"--seconds", "0"}, {"--cpu", "-2"}, {"extra"}} {
		cmd := newBenchReplicateCmd(func(*BenchReplicateOptions) error { return nil })
		cmd.SetArgs(bad)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestBenchReplicateJSON(t *testing.T) {
	var out bytes.Buffer
	o := &BenchReplicateOptions{Out: &out, Fanout: 2, Size: 256, Seconds: 0.2, CPU: -1, JSON: true}
	if err := benchReplicateRun(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ingress_mpps", "egress_mpps", "ns_per_packet", "allocs_per_packet"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %s", k)
		}
	}
	if m["allocs_per_packet"].(float64) != 0 {
		t.Errorf("allocs_per_packet %v", m["allocs_per_packet"])
	}
}

func TestBenchFeedbackFlags(t *testing.T) {
	var got *BenchFeedbackOptions
	cmd := NewCmdBenchFeedback(func(o *BenchFeedbackOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--veth", "--receivers", "16", "--aggregate=false", "--binary", "/opt/sc", "--json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !got.Veth || got.Receivers != 16 || got.Aggregate || got.Binary != "/opt/sc" || !got.JSON || got.Loss != 0.05 {
		t.Fatalf("parsed %+v", got)
	}
	for _, bad := range [][]string{{"--veth", "--receivers", "300"}, {"--receivers", "0"}, {"--loss", "1"}, {"--timeout", "-1s"}, {"extra"}} {
		cmd := NewCmdBenchFeedback(func(*BenchFeedbackOptions) error { return nil })
		cmd.SetArgs(bad)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestBenchTransferFlags(t *testing.T) {
	var got *BenchTransferOptions
	cmd := NewCmdBenchTransfer(func(o *BenchTransferOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--testbed", "sc-", "--size", "1048576", "--step", "500ms", "--max-loss", "0.01", "--binary", "/opt/sc", "--json", "--window", "16384"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Testbed != "sc-" || got.Size != 1<<20 || got.StepDuration.Milliseconds() != 500 || got.MaxLoss != 0.01 ||
		got.Binary != "/opt/sc" || !got.JSON || got.StartRate != 10000 || got.Bisections != 3 || got.Window != 16384 {
		t.Fatalf("parsed %+v", got)
	}
	for _, bad := range [][]string{
		{"--testbed", "sc-", "--topology", "x.yaml"}, {"--testbed", "Bad"}, {"--size", "0"}, {"--step", "1ms"},
		{"--max-loss", "0"}, {"--max-loss", "1"}, {"--start-rate", "1"}, {"--bisections", "11"}, {"--window", "1000"}, {"extra"},
	} {
		cmd := NewCmdBenchTransfer(func(*BenchTransferOptions) error { return nil })
		cmd.SetArgs(bad)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
