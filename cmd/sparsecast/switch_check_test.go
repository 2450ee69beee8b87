package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsecast/sparsecast/dataplane"
)

const checkConfig = "name: c\nports:\n  - {name: p0, type: mem}\n  - {name: p1, type: mem}\nroutes:\n  - {receivers: \"1-3\", port: p0}\nroutes_file: routes.txt\n"

func writeCheckConfig(t *testing.T, routes string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "switch.yaml")
	if err := os.WriteFile(cfg, []byte(checkConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "routes.txt"), []byte(routes), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSwitchCheck(t *testing.T) {
	cfg := writeCheckConfig(t, "4-9 p1 p0\n10 p0\n")
	var out bytes.Buffer
	if err := switchCheck(&SwitchCheckOptions{Out: &out, ConfigPath: cfg, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var r ConfigCheck
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Name != "c" || r.Ports != 2 || r.RouteEntries != 3 || r.Routed != 10 || r.Groups != 0 || r.LoadSeconds <= 0 {
		t.Errorf("summary %+v", r)
	}
	out.Reset()
	if err := switchCheck(&SwitchCheckOptions{Out: &out, ConfigPath: cfg}); err != nil || !strings.Contains(out.String(), "2 ports, 3 route entries (10 receivers routed)") {
		t.Errorf("summary %q (%v)", out.String(), err)
	}
	bad := writeCheckConfig(t, "4-9 p1\n3 p1\n")
	err := switchCheck(&SwitchCheckOptions{Out: &out, ConfigPath: bad})
	if want := filepath.Join(filepath.Dir(bad), "routes.txt") + ":2: receiver 3 already routed to port p0"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
	cmd := newSwitchCheckCmd(func(*SwitchCheckOptions) error { return nil })
	cmd.SetArgs(nil)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--config is required") {
		t.Errorf("no --config: %v", err)
	}
}

// TestReloadCounts: a reload that loads is published and counted applied;
// one whose routes file is bad keeps the tables, is counted rejected and
// logs the file and line.
func TestReloadCounts(t *testing.T) {
	path := writeCheckConfig(t, "4-9 p1\n")
	cfg, err := dataplane.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := dataplane.TablesFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := dataplane.NewMemPair("p0", "x0", 64, 2048)
	b, _ := dataplane.NewMemPair("p1", "x1", 64, 2048)
	sw, err := dataplane.NewSwitch(cfg, []dataplane.Port{a, b}, tables)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	var rc dataplane.ReloadCounters
	o := &SwitchRunOptions{Log: &log, ConfigPath: path}
	routes := filepath.Join(filepath.Dir(path), "routes.txt")
	os.WriteFile(routes, []byte("4-9 p1\n10 p1\n"), 0o644)
	reload(o, sw, &rc)
	if rc.Applied.Load() != 1 || sw.Tables().Routes.Len() != 10 || sw.Tables().Routes.Lookup(10) != 1 {
		t.Fatalf("applied %d, %d routes: %s", rc.Applied.Load(), sw.Tables().Routes.Len(), log.String())
	}
	os.WriteFile(routes, []byte("4-9 p1\n10 p1 p1\n"), 0o644)
	reload(o, sw, &rc)
	if rc.Rejected.Load() != 1 || rc.Applied.Load() != 1 || sw.Tables().Routes.Len() != 10 {
		t.Fatalf("rejected %d, applied %d, %d routes", rc.Rejected.Load(), rc.Applied.Load(), sw.Tables().Routes.Len())
	}
	if want := routes + `:2: backup "p1" must be another configured port`; !strings.Contains(log.String(), want) {
		t.Errorf("log %q lacks %q", log.String(), want)
	}
}
