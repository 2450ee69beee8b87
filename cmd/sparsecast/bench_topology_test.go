package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestBenchTopologyFlags(t *testing.T) {
	var got *BenchTopologyOptions
	cmd := NewCmdBenchTopology(func(o *BenchTopologyOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--fattree", "1024,8192", "--failures", "3", "--markdown"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if len(got.FatTrees) != 2 || got.FatTrees[1] != 8192 || got.Failures != 3 || !got.Markdown {
		t.Fatalf("parsed %+v", got)
	}
	for _, bad := range [][]string{{}, {"--fattree", "1000"}, {"--fattree", "16", "--topology", "x.yaml"}, {"--fattree", "16", "--failures", "0"}, {"--fattree", "16", "--json", "--markdown"}} {
		cmd := NewCmdBenchTopology(func(*BenchTopologyOptions) error { return nil })
		cmd.SetArgs(bad)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestBenchTopologyMarkdown(t *testing.T) {
	var out bytes.Buffer
	if err := benchTopologyRun(context.Background(), &BenchTopologyOptions{Out: &out, FatTrees: []int{16, 128}, Failures: 2, Seed: 1, Markdown: true}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[2], "| fat-tree k4 | 16 | 20 |") || !strings.HasPrefix(lines[3], "| fat-tree k8 | 128 | 80 |") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestTestbedGenFatTree(t *testing.T) {
	var got *TestbedGenFatTreeOptions
	cmd := NewCmdTestbedGenFatTree(func(o *TestbedGenFatTreeOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--hosts", "8192"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.K != 32 {
		t.Errorf("--hosts 8192: k %d", got.K)
	}
	for _, bad := range [][]string{{}, {"--k", "5"}, {"--k", "66"}, {"--hosts", "100"}, {"--k", "4", "--hosts", "16"}} {
		cmd := NewCmdTestbedGenFatTree(func(*TestbedGenFatTreeOptions) error { return nil })
		cmd.SetArgs(bad)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	var out bytes.Buffer
	if err := runTestbedGenFatTree(&TestbedGenFatTreeOptions{Out: &out, K: 4}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "p3-edge1:h1") || strings.Count(out.String(), "role: core") != 4 {
		t.Errorf("k=4 output:\n%s", out.String())
	}
}
