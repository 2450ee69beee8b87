package deploy

// Checks of the deployment files: the sample 32-port config loads with the
// switch's own loader, the Grafana dashboard only queries metrics the
// switch's collector describes, and install.sh installs units that
// reference the installed binary (and pass systemd-analyze verify where
// systemd is installed).

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/metrics"
	"github.com/sparsecast/sparsecast/headers"
)

func TestSampleConfigLoads(t *testing.T) {
	c, err := dataplane.LoadConfig("switch-32port.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Ports) != 32 {
		t.Fatalf("%d ports, want 32", len(c.Ports))
	}
	for i, p := range c.Ports {
		if p.Type != "afpacket" {
			t.Errorf("port %s: type %q, want afpacket", p.Name, p.Type)
		}
		if want := "swp" + strconv.Itoa(i+1); p.Name != want || p.Iface != want {
			t.Errorf("port %d: name %q iface %q, want %s", i, p.Name, p.Iface, want)
		}
	}
	// Every receiver ID has exactly one route.
	owner := make(map[uint16]string)
	for _, r := range c.Routes {
		ids, err := headers.ParseIDSet(r.Receivers)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if prev, dup := owner[id]; dup {
				t.Errorf("receiver %d routed to %s and %s", id, prev, r.Port)
			}
			owner[id] = r.Port
		}
	}
	if c.Feedback.Aggregating() != true || c.ControlRing == "" || c.SwitchID == nil {
		t.Errorf("sample should show feedback, control_ring and switch_id: %+v", c)
	}
}

// collectorNames lists the metric names the switch collector describes,
// with a histogram's _bucket, _sum and _count series.
func collectorNames(t *testing.T) map[string]bool {
	t.Helper()
	c := metrics.NewSwitchCollector("t", []string{"p0"}, []*dataplane.CoreCounters{})
	ch := make(chan *prometheus.Desc, 64)
	c.Describe(ch)
	close(ch)
	re := regexp.MustCompile(`fqName: "([a-z_:]+)"`)
	names := map[string]bool{}
	for d := range ch {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		names[m[1]] = true
	}
	// The one histogram (dataplane/metrics/switch.go).
	h := "sparsecast_switch_replication_fanout"
	if !names[h] {
		t.Fatalf("collector does not describe %s any more: update the dashboard", h)
	}
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		names[h+s] = true
	}
	return names
}

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana-sparsecast.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("grafana-sparsecast.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard lacks title, uid or panels")
	}
	known := collectorNames(t)
	metricRE := regexp.MustCompile(`\bsparsecast_[a-z_]+`)
	used := map[string]bool{}
	ids := map[int]bool{}
	var exprs []string
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d repeated", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q: unbalanced expression %q", p.Title, tg.Expr)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	for _, e := range exprs {
		names := metricRE.FindAllString(e, -1)
		for _, n := range names {
			if !known[n] {
				t.Errorf("expression %q uses %s, which the switch collector does not export", e, n)
			}
			used[n] = true
		}
	}
	// What the dashboard must show (the list).
	for _, must := range []string{
		"sparsecast_switch_port_receive_packets_total", "sparsecast_switch_port_transmit_packets_total",
		"sparsecast_switch_drops_total", "sparsecast_switch_replication_fanout_bucket",
		"sparsecast_switch_worker_sleeps_total",
	} {
		if !used[must] {
			t.Errorf("no panel queries %s", must)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, must := range []string{"histogram_quantile(0.99,", "sum by (reason)", "by (instance, port)", "by (instance, worker)"} {
		if !strings.Contains(all, must) {
			t.Errorf("no expression contains %q", must)
		}
	}
}

func TestInstall(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not found")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "fake-sparsecast")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(tmp, "prefix")
	units := filepath.Join(tmp, "units")
	etc := filepath.Join(tmp, "etc")
	man := filepath.Join(tmp, "man")
	if err := os.MkdirAll(man, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, page := range []string{"sparsecast.1", "sparsecast-switch-run.1"} {
		if err := os.WriteFile(filepath.Join(man, page), []byte(".TH TEST 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", "install.sh", prefix)
	cmd.Env = append(os.Environ(), "BINARY="+bin, "SYSTEMD_DIR="+units, "SYSCONFDIR="+etc, "MANPAGES="+man,
		"SPARSECAST_NO_USER=1", "SPARSECAST_NO_RELOAD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	for _, f := range []string{
		prefix + "/bin/sparsecast", units + "/sparsecast-switch@.service", units + "/sparsecast-control@.service",
		etc + "/sparsecast/switch-32port.yaml.example", prefix + "/share/sparsecast/grafana-sparsecast.json",
		prefix + "/share/man/man1/sparsecast.1", prefix + "/share/man/man1/sparsecast-switch-run.1",
	} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	sw := readUnit(t, units+"/sparsecast-switch@.service")
	ctl := readUnit(t, units+"/sparsecast-control@.service")
	if !strings.HasPrefix(sw["ExecStart"][0], prefix+"/bin/sparsecast switch run --config /etc/sparsecast/%i.yaml") {
		t.Errorf("switch ExecStart = %q", sw["ExecStart"])
	}
	caps := []string{"CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_SYS_NICE", "CAP_IPC_LOCK"}
	for _, key := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		got := strings.Fields(strings.Join(sw[key], " "))
		slices.Sort(got)
		want := slices.Clone(caps)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("switch %s = %v, want %v", key, got, want)
		}
	}
	for _, unit := range []map[string][]string{sw, ctl} {
		if strings.Join(unit["Type"], "") != "notify" || len(unit["WatchdogSec"]) == 0 {
			t.Errorf("units are Type=notify with a WatchdogSec (sdnotify.go): %v %v", unit["Type"], unit["WatchdogSec"])
		}
	}
	for _, key := range []string{"NoNewPrivileges", "ProtectSystem", "ProtectHome", "RestrictAddressFamilies", "ExecReload", "SystemCallFilter"} {
		if len(sw[key]) == 0 {
			t.Errorf("switch unit lacks %s", key)
		}
	}
	if !strings.Contains(strings.Join(sw["RestrictAddressFamilies"], " "), "AF_PACKET") {
		t.Errorf("switch unit must allow AF_PACKET: %v", sw["RestrictAddressFamilies"])
	}
	if !strings.HasPrefix(ctl["ExecStart"][0], prefix+"/bin/sparsecast control run --topology /etc/sparsecast/%i.fabric.yaml") {
		t.Errorf("control ExecStart = %q", ctl["ExecStart"])
	}
	if strings.TrimSpace(strings.Join(ctl["CapabilityBoundingSet"], "")) != "" {
		t.Errorf("control needs no capabilities, has %v", ctl["CapabilityBoundingSet"])
	}

	// Refuses a relative prefix and a missing binary, with a message.
	out, err := exec.Command("bash", "install.sh", "relative").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "must be an absolute path") {
		t.Errorf("relative prefix: %v %s", err, out)
	}
	cmd = exec.Command("bash", "install.sh", prefix)
	cmd.Env = append(os.Environ(), "BINARY="+filepath.Join(tmp, "missing"))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "run make build first") {
		t.Errorf("missing binary: %v %s", err, out)
	}
	cmd = exec.Command("bash", "install.sh", prefix)
	cmd.Env = append(os.Environ(), "BINARY="+bin, "MANPAGES="+filepath.Join(tmp, "no-man"))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "run make man first") {
		t.Errorf("missing man pages: %v %s", err, out)
	}

	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify needs instances; the %i config need not exist (Condition).
		for _, u := range []string{"sparsecast-switch@.service", "sparsecast-control@.service"} {
			inst := filepath.Join(tmp, "verify", strings.Replace(u, "@", "@test", 1))
			if err := os.MkdirAll(filepath.Dir(inst), 0o755); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(units, u))
			if err := os.WriteFile(filepath.Join(filepath.Dir(inst), u), b, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(sa, "verify", "--man=no", filepath.Join(filepath.Dir(inst), u)+":"+filepath.Base(inst)).CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
			}
			// The bar: exposure at most 2.5 for both units.
			out, err = exec.Command(sa, "security", "--offline=true", "--no-pager", filepath.Join(units, u)).CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze security %s: %v\n%s", u, err, out)
				continue
			}
			m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
			if m == nil {
				t.Errorf("systemd-analyze security %s: no overall exposure in\n%s", u, out)
				continue
			}
			if x, _ := strconv.ParseFloat(string(m[1]), 64); x > 2.5 {
				t.Errorf("%s: exposure %s, want at most 2.5:\n%s", u, m[1], out)
			}
		}
	}
}

// readUnit parses KEY=VALUE lines of a unit file (all sections).
func readUnit(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "@PREFIX@") {
		t.Errorf("%s: @PREFIX@ not substituted", path)
	}
	kv := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: not KEY=VALUE: %q", path, line)
			continue
		}
		kv[k] = append(kv[k], v)
	}
	return kv
}

func TestShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck not installed")
	}
	if out, err := exec.Command(sc, "install.sh").CombinedOutput(); err != nil {
		t.Errorf("shellcheck install.sh: %v\n%s", err, out)
	}
}
