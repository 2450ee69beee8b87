package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/control"
)

func testbedPath(t *testing.T, name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testbeds", name)
}

func TestControlRunFlags(t *testing.T) {
	var got *ControlRunOptions
	cmd := NewCmdControl(func(o *ControlRunOptions) error { got = o; return nil })
	tok := filepath.Join(t.TempDir(), "tok")
	cmd.SetArgs([]string{"run", "--topology", "f.yaml", "--switch", "leaf1,leaf2", "--ring-dir", "/tmp/r",
		"--api", "127.0.0.1:7470", "--token-file", tok, "--metrics-addr", "127.0.0.1:9100"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Store != "local" || got.StateDir != control.DefaultStateDir || got.EtcdPrefix != control.DefaultEtcdPrefix {
		t.Fatalf("store defaults %+v", got)
	}
	if got.Topology != "f.yaml" || !slices.Equal(got.Switches, []string{"leaf1", "leaf2"}) || got.RingDir != "/tmp/r" ||
		got.API != "127.0.0.1:7470" || got.TokenFile != tok || got.MetricsAddr != "127.0.0.1:9100" || got.RingSlots != 4096 {
		t.Fatalf("parsed %+v", got)
	}
	for _, bad := range [][]string{
		{"run"},
		{"run", "--topology", "f", "--api", "0.0.0.0:80", "--token-file", tok},
		{"run", "--topology", "f", "--api", "10.1.2.3:80", "--token-file", tok},
		{"run", "--topology", "f", "--api", "127.0.0.1:80"},
		{"run", "--topology", "f", "--api", "unix:relative"},
		{"run", "--topology", "f", "--ring-slots", "1000"},
		{"run", "--topology", "f", "--switch", ","},
		{"run", "--topology", "f", "extra"},
		{"run", "--topology", "f", "--state-dir", ""},
		{"run", "--topology", "f", "--store", "etcd://"},
		{"run", "--topology", "f", "--store", "zookeeper://h:1"},
		{"run", "--topology", "f", "--store", "etcd://h:1", "--etcd-cert", "c.pem"},
		{"run", "--topology", "f", "--store", "etcd://h:1", "--etcd-user", "u"},
		{"run", "--topology", "f", "--etcd-ca", "ca.pem"},
	} {
		cmd := NewCmdControl(func(*ControlRunOptions) error { return nil })
		cmd.SetArgs(bad)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestCtlFlags(t *testing.T) {
	parse := func(args ...string) (*CtlOptions, error) {
		var got *CtlOptions
		cmd := NewCmdCtl(func(o *CtlOptions) error { got = o; return nil })
		cmd.SetArgs(args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.Execute()
		return got, err
	}
	o, err := parse("group", "add", "7", "--members", "1-4,9", "--api", "unix:/tmp/c.sock", "--json")
	if err != nil || o.Op != "group add" || o.Group != 7 || !slices.Equal(o.Members, []uint16{1, 2, 3, 4, 9}) || !o.JSON || o.API != "unix:/tmp/c.sock" {
		t.Fatalf("group add: %+v %v", o, err)
	}
	if o, err := parse("group", "del", "7"); err != nil || o.Op != "group del" || o.Members != nil {
		t.Fatalf("group del: %+v %v", o, err)
	}
	if o, err := parse("group", "show"); err != nil || o.HasGroup {
		t.Fatalf("group show: %+v %v", o, err)
	}
	if o, err := parse("route", "show", "--switch", "leaf1"); err != nil || o.Switch != "leaf1" {
		t.Fatalf("route show: %+v %v", o, err)
	}
	if o, err := parse("--api", "127.0.0.1:7470", "--token-file", "/t", "status"); err != nil || o.Op != "status" || o.TokenFile != "/t" {
		t.Fatalf("status: %+v %v", o, err)
	}
	for _, bad := range [][]string{
		{"group", "add", "7"},
		{"group", "add", "x", "--members", "1"},
		{"group", "add", "4294967296", "--members", "1"},
		{"group", "add", "7", "--members", "70000"},
		{"group", "add", "7", "--members", "4-1"},
		{"group", "del"},
		{"group", "show", "1", "2"},
		{"route", "show"},
		{"--api", "127.0.0.1:7470", "status"},
		{"--api", "192.168.1.1:7470", "--token-file", "/t", "status"},
		{"status", "extra"},
	} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestControlAndCtl runs `control run` and drives it with `ctl` over a Unix
// socket; no dataplane is attached, so nothing is pushed.
func TestControlAndCtl(t *testing.T) {
	dir := t.TempDir()
	sock := "unix:" + filepath.Join(dir, "control.sock")
	var log bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- controlRun(ctx, &ControlRunOptions{Log: &syncWriter{w: &log}, Topology: testbedPath(t, "failover.yaml"),
			RingDir: dir, RingSlots: 256, API: sock, StateDir: filepath.Join(dir, "state")})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(5 * time.Second):
			t.Error("control run did not stop")
		}
	}()
	ctl := func(o CtlOptions) (string, error) {
		var out bytes.Buffer
		o.Out, o.API = &out, sock
		err := ctlRun(context.Background(), &o)
		return out.String(), err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := ctl(CtlOptions{Op: "status"}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("control never answered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, err := ctl(CtlOptions{Op: "group add", Group: 7, Members: []uint16{1, 2, 3}})
	if err != nil || !strings.Contains(out, "group 7: 3 members: 1-3") {
		t.Fatalf("group add: %q %v", out, err)
	}
	out, err = ctl(CtlOptions{Op: "group del", Group: 7, Members: []uint16{2}})
	if err != nil || !strings.Contains(out, "1,3") {
		t.Fatalf("group del members: %q %v", out, err)
	}
	out, err = ctl(CtlOptions{Op: "group show"})
	if err != nil || !strings.Contains(out, "7      2        1,3") {
		t.Fatalf("group show: %q %v", out, err)
	}
	out, err = ctl(CtlOptions{Op: "group show", Group: 7, HasGroup: true, JSON: true})
	var gs []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &gs) != nil || len(gs) != 1 {
		t.Fatalf("group show --json: %q %v", out, err)
	}
	out, err = ctl(CtlOptions{Op: "route show", Switch: "leaf1"})
	if err != nil || !strings.Contains(out, "1         r1    p1       p2") {
		t.Fatalf("route show: %q %v", out, err)
	}
	out, err = ctl(CtlOptions{Op: "status"})
	if err != nil || !strings.Contains(out, "leaf2") || !strings.Contains(out, "groups: 1") || !strings.Contains(out, "down links: none") {
		t.Fatalf("status: %q %v", out, err)
	}
	out, err = ctl(CtlOptions{Op: "group del", Group: 7})
	if err != nil || !strings.Contains(out, "group 7 deleted") {
		t.Fatalf("group del: %q %v", out, err)
	}
	if _, err := ctl(CtlOptions{Op: "group del", Group: 7}); err == nil || !strings.Contains(err.Error(), "no group 7") {
		t.Fatalf("deleting a missing group: %v", err)
	}
	if _, err := ctl(CtlOptions{Op: "group add", Group: 1, Members: []uint16{99}}); err == nil || !strings.Contains(err.Error(), "not receivers") {
		t.Fatalf("unknown member: %v", err)
	}
	// The ring files were created for the dataplanes to find.
	if _, err := os.Stat(filepath.Join(dir, "sparsecast-leaf1.ring")); err != nil {
		t.Error(err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestBenchControlFlags(t *testing.T) {
	var got *BenchControlOptions
	cmd := NewCmdBenchControl(func(o *BenchControlOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--updates", "500", "--json", "--cpu", "1"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Updates != 500 || !got.JSON || got.CPU != 1 || got.Receivers != 64 {
		t.Fatalf("parsed %+v", got)
	}
	for _, bad := range [][]string{{"--updates", "0"}, {"--receivers", "255"}, {"--cpu", "-2"}, {"x"}} {
		cmd := NewCmdBenchControl(func(*BenchControlOptions) error { return nil })
		cmd.SetArgs(bad)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestBenchControlJSON(t *testing.T) {
	var out bytes.Buffer
	if err := benchControlRun(context.Background(), &BenchControlOptions{Out: &out, Updates: 200, Receivers: 4, CPU: -1, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"update_p50_us", "update_p99_us", "api_p99_us", "updates", "applied"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %s", k)
		}
	}
	if m["applied"].(float64) != 200 {
		t.Errorf("applied %v", m["applied"])
	}
}

// TestControlRunBadInput: a switch name that would leave the ring
// directory, a missing ring directory, a missing API socket directory: each
// fails at start with an error saying what, and nothing is created.
func TestControlRunBadInput(t *testing.T) {
	dir := t.TempDir()
	evil := filepath.Join(dir, "evil.yaml")
	os.WriteFile(evil, []byte(`
switches:
  - {name: "x/../../evil", role: leaf}
  - {name: s1, role: spine}
links:
  - {a: s1:p1, b: "x/../../evil:up"}
hosts:
  - {name: h1, attach: "x/../../evil:h1"}
`), 0o600)
	rings := filepath.Join(dir, "rings")
	os.Mkdir(rings, 0o700)
	good := testbedPath(t, "failover.yaml")
	sock := "unix:" + filepath.Join(dir, "a.sock")
	for _, tc := range []struct {
		name, topo, ringDir, api, want string
	}{
		{"name escapes", evil, rings, sock, "want letters, digits"},
		{"missing ring dir", good, filepath.Join(dir, "nonexistent"), sock, "does not exist"},
		{"missing api dir", good, rings, "unix:" + filepath.Join(dir, "missing", "a.sock"), "no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			err := controlRun(context.Background(), &ControlRunOptions{Log: &log, Topology: tc.topo, RingDir: tc.ringDir, RingSlots: 256, API: tc.api, StateDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			var made []string
			filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if p != dir && p != evil && p != rings {
					made = append(made, p)
				}
				return nil
			})
			if len(made) > 0 {
				t.Fatalf("created %v", made)
			}
		})
	}
}

func TestStartWarnings(t *testing.T) {
	var b bytes.Buffer
	for _, a := range []string{"127.0.0.1:9100", "[::1]:9100", "localhost:9100", ""} {
		warnExposedAddr(&b, "x", a)
	}
	if b.Len() != 0 {
		t.Fatalf("loopback warned: %s", b.String())
	}
	for _, a := range []string{"0.0.0.0:9100", ":9100", "10.1.2.3:9100"} {
		b.Reset()
		if warnExposedAddr(&b, "x", a); !strings.Contains(b.String(), "not loopback only") {
			t.Errorf("%s: no warning", a)
		}
	}
	tok := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(tok, []byte("0123456789abcdef0123"), 0o644)
	b.Reset()
	if warnTokenFileMode(&b, tok); !strings.Contains(b.String(), "other users can read") {
		t.Error("a 0644 token file gave no warning")
	}
	os.Chmod(tok, 0o600)
	b.Reset()
	if warnTokenFileMode(&b, tok); b.Len() != 0 {
		t.Errorf("a 0600 token file warned: %s", b.String())
	}
}
