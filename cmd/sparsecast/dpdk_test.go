package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestBenchDPDKFlags(t *testing.T) {
	t.Setenv(hugeDirEnv, "/from/env")
	var got *BenchDPDKOptions
	cmd := NewCmdBenchDPDK(func(o *BenchDPDKOptions) error { got = o; return nil })
	// The env default is not checked when --huge-dir overrides it.
	cmd.SetArgs([]string{"--vdev", "net_ring", "--fanout", "9", "--size", "128", "--seconds", "2", "--cpu", "0", "--vs-testpmd", "--json", "--huge-dir", ""})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Vdev != "net_ring" || got.Fanout != 9 || got.Size != 128 || got.Seconds != 2 || got.CPU != 0 || !got.VsTestpmd || !got.JSON || got.HugeDir != "" {
		t.Fatalf("parsed %+v", got)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--vdev", "net_tap"}, "want net_null or net_ring"},
		{[]string{"--fanout", "0"}, "want 1-64"},
		{[]string{"--fanout", "65"}, "want 1-64"},
		{[]string{"--seconds", "0"}, "--seconds"},
		{[]string{"--seconds", "21"}, "--seconds"},
		{[]string{"--cpu", "-1"}, "--cpu"},
		{[]string{}, `--huge-dir "/from/env"`}, // the environment's default is checked
		{[]string{"--huge-dir", t.TempDir()}, "not a hugetlbfs mount"},
	} {
		cmd := NewCmdBenchDPDK(func(*BenchDPDKOptions) error { return nil })
		cmd.SetArgs(c.args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one with %q", c.args, err, c.want)
		}
	}
}
