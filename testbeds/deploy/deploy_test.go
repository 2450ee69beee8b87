package deploy

// Checks of the deployment files: the sample 32-port config loads with the
// switch's own loader, the Grafana dashboard only queries metrics the
// switch's collector describes, and install.sh installs units that
// reference the installed binary (and pass systemd-analyze verify where
// systemd is installed).

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/sparsecast/sparsecast/control"
	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/metrics"
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
	// The tables build (no receiver routed to two ports), with the 28
	// host routes (host i on port swp<i+1>) and the uplinks' ranges.
	tables, err := dataplane.TablesFromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	rt := tables.Routes
	if n := rt.Len(); n != 28+65536-64 {
		t.Errorf("%d receivers routed, want %d", n, 28+65536-64)
	}
	for id := range 28 {
		if p := rt.Lookup(uint16(id)); int(p) != id {
			t.Errorf("receiver %d on port index %d, want %d (swp%d)", id, p, id, id+1)
		}
	}
	if p, b := rt.Lookup(64), rt.Backup(64); c.Ports[p].Name != "swp29" || c.Ports[b].Name != "swp30" {
		t.Errorf("receiver 64: port %d backup %d, want swp29 and swp30", p, b)
	}
	if c.Feedback.Aggregating() != true || c.ControlRing == "" || c.SwitchID == nil {
		t.Errorf("sample should show feedback, control_ring and switch_id: %+v", c)
	}
}

// collectorNames lists the metric names the switch and control collectors
// describe, with a histogram's _bucket, _sum and _count series.
func collectorNames(t *testing.T) map[string]bool {
	t.Helper()
	topo, err := control.LoadTopology("../failover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := control.NewServer(topo, control.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc, 128)
	metrics.NewSwitchCollector("t", []string{"p0"}, []*dataplane.CoreCounters{}, metrics.WithRing(&dataplane.RingCounters{})).Describe(ch)
	srv.Collector().Describe(ch)
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
	// The histograms (dataplane/metrics/switch.go, control/metrics.go).
	for _, h := range []string{"sparsecast_switch_replication_fanout", "sparsecast_control_update_latency_seconds"} {
		if !names[h] {
			t.Fatalf("collectors do not describe %s any more: update the dashboard", h)
		}
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			names[h+s] = true
		}
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
		ID          int    `json:"id"`
		Title       string `json:"title"`
		Type        string `json:"type"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
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
	// A rate of a _seconds_total counter is a share of time (percentunit);
	// a quantile of a _seconds histogram, or a difference of times, is in
	// seconds; nothing else on such a panel.
	timeShare := regexp.MustCompile(`rate\(\w+_seconds_total\b`)
	seconds := regexp.MustCompile(`_seconds_bucket\b|_seconds_sum\b|time\(\) - `)
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d repeated", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			want := ""
			switch {
			case timeShare.MatchString(tg.Expr):
				want = "percentunit"
			case seconds.MatchString(tg.Expr):
				want = "s"
			}
			if unit := p.FieldConfig.Defaults.Unit; want != "" && unit != want || want == "" && (unit == "percentunit" || unit == "s") {
				t.Errorf("panel %q: unit %q for %q", p.Title, unit, tg.Expr)
			}
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
				t.Errorf("expression %q uses %s, which neither the switch nor the control collector exports", e, n)
			}
			used[n] = true
		}
	}
	// What the dashboard must show (the list).
	for _, must := range []string{
		"sparsecast_switch_port_receive_packets_total", "sparsecast_switch_port_transmit_packets_total",
		"sparsecast_switch_drops_total", "sparsecast_switch_replication_fanout_bucket",
		"sparsecast_switch_worker_sleeps_total", "sparsecast_switch_feedback_total",
		"sparsecast_switch_feedback_streams_evicted_total", "sparsecast_switch_ring_applier_stall_seconds_total",
		"sparsecast_control_update_latency_seconds_bucket", "sparsecast_control_reroute_events_total",
		"sparsecast_control_rejected_batches_total", "sparsecast_control_pushes_total",
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
	// A reload checks the config before it signals the switch.
	if r := sw["ExecReload"]; len(r) != 2 || r[0] != prefix+"/bin/sparsecast switch check --config /etc/sparsecast/%i.yaml" || !strings.Contains(r[1], "kill -HUP") {
		t.Errorf("switch ExecReload = %q, want switch check, then kill -HUP", r)
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

// TestPromtool runs Prometheus's own checker, where it is installed (apt:
// prometheus): the alerting rules, every dashboard query as a rule (with
// Grafana's variables filled in), and the exposition of both collectors.
func TestPromtool(t *testing.T) {
	pt, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	if out, err := exec.Command(pt, "check", "rules", "sparsecast-alerts.yml").CombinedOutput(); err != nil {
		t.Errorf("promtool check rules sparsecast-alerts.yml: %v\n%s", err, out)
	}

	raw, err := os.ReadFile("grafana-sparsecast.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$instance", ".*", "$control", ".*", "$port", ".*")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			expr, _ := json.Marshal(vars.Replace(tg.Expr))
			fmt.Fprintf(&rules, "      - record: dashboard:panel%d:%s\n        expr: %s\n", p.ID, strings.ToLower(tg.RefID), expr)
			n++
		}
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(pt, "check", "rules", file).CombinedOutput(); err != nil || !strings.Contains(string(out), fmt.Sprintf("%d rules found", n)) {
		t.Errorf("promtool check rules on the dashboard's %d queries: %v\n%s\n%s", n, err, out, rules.String())
	}

	topo, err := control.LoadTopology("../failover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := control.NewServer(topo, control.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]prometheus.Collector{
		"switch":  metrics.NewSwitchCollector("t", []string{"p0", "p1"}, []*dataplane.CoreCounters{dataplane.NewCoreCounters(2)}, metrics.WithRing(&dataplane.RingCounters{})),
		"control": srv.Collector(),
	} {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
		var expo strings.Builder
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(&expo, mf); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(pt, "check", "metrics")
		cmd.Stdin = strings.NewReader(expo.String())
		if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("promtool check metrics (%s): %v\n%s", name, err, out)
		}
	}
}
