package trex

// The TRex lab: a real TRex server and a sparsecast switch on one machine.
//
//	namespace PREFIXtrex                      namespace PREFIXsw
//	TRex port 0  PREFIXt0 ────veth──── PREFIXp0  switch p0 (ingress)
//	TRex port 1  PREFIXt1 ────veth──── PREFIXp1  switch p1 (egress)
//	10.199.0.1   PREFIXm0 ────veth──── PREFIXm1  10.199.0.2 (the switch's /metrics)
//
// In: a TRex directory (t-rex-64, trex-console, automation/, external_libs/).
// The switch runs dut-switch.yaml with the lab's interface names, TRex
// trex_cfg_low_end.yaml with its veths (low_end: one core for everything,
// the only mode that runs on 2 cores), started with --no-scapy-server in
// its namespace and stopped by signalling its process group. Then, in
// TRex's namespace: README's console line, one trial through the Python API
// (ndr.py --rate), the NDR search (ndr.py) and the feedback benchmark
// (fbbench.py, with the spoofed-feedback test), each with TRex's and the
// switch's counters side by side. Out: their output, and logs and CSVs in
// Dir. Everything is torn down on return, also when ctx ends (Ctrl-C).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/afpacket"
	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// LabOptions configure RunLab.
type LabOptions struct {
	TRexDir  string // TRex install, or a source tree (its scripts/ is used)
	Prefix   string // namespace and veth prefix
	Dir      string // configs, logs, CSVs (default: a new temporary directory)
	Binary   string // sparsecast binary for the switch (default: this one)
	Python   string // python3 for TRex's client
	Tunables string // smh_stl.py tunables of the console, API and NDR runs
	Rate     string // console and API rate (TRex's -m: 100kpps)
	Duration int    // seconds of the console and API runs
	NDRLo    string
	NDRHi    string
	NDRPrec  float64
	NDRSecs  int
	FBSecs   int
	FBTuning string // fbbench.py tunables
	Steps    []string
	Out      io.Writer
	Log      io.Writer // commands the lab runs (nil: none)
}

// LabSteps are the steps RunLab can run, in order.
var LabSteps = []string{"console", "api", "ndr", "feedback"}

const (
	mgmtTRex   = "10.199.0.1"
	mgmtSwitch = "10.199.0.2"
	rpcPort    = 4501
)

// ResolveTRexDir finds the directory with t-rex-64 in dir or dir/scripts.
func ResolveTRexDir(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("no TRex directory: pass --trex-dir DIR (a TRex install, or a source tree built as testbeds/trex/README.md's TRex lab section says)")
	}
	for _, d := range []string{dir, filepath.Join(dir, "scripts")} {
		if st, err := os.Stat(filepath.Join(d, "t-rex-64")); err == nil && !st.IsDir() {
			for _, need := range []string{"_t-rex-64", "trex-console", "automation/trex_control_plane/interactive", "external_libs/scapy-2.4.3"} {
				if _, err := os.Stat(filepath.Join(d, need)); err != nil {
					return "", fmt.Errorf("TRex directory %s: %s missing (a TRex built with its server, _t-rex-64?)", d, need)
				}
			}
			return filepath.Abs(d)
		}
	}
	return "", fmt.Errorf("TRex directory %s: no t-rex-64 in it or in its scripts/", dir)
}

func (o *LabOptions) check() error {
	if err := lab.CheckPrefix(o.Prefix); err != nil {
		return err
	}
	if len(o.Prefix) > 12 {
		return fmt.Errorf("prefix %q: at most 12 characters (veth names are PREFIX + 3, Linux allows 15)", o.Prefix)
	}
	for _, s := range o.Steps {
		if !contains(LabSteps, s) {
			return fmt.Errorf("step %q: want some of %s", s, strings.Join(LabSteps, ","))
		}
	}
	if o.Duration < 1 || o.NDRSecs < 1 || o.FBSecs < 1 {
		return errors.New("durations must be at least 1 s")
	}
	return nil
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// RunLab builds the lab, runs the steps and tears it down.
func RunLab(ctx context.Context, o LabOptions) (err error) {
	if err := o.check(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the TRex lab needs root (network namespaces, TRex's DPDK): running as uid %d", os.Geteuid())
	}
	trexDir, err := ResolveTRexDir(o.TRexDir)
	if err != nil {
		return err
	}
	if _, err := exec.LookPath(o.Python); err != nil {
		return fmt.Errorf("python %s: %w", o.Python, err)
	}
	if o.Binary == "" {
		if o.Binary, err = os.Executable(); err != nil {
			return err
		}
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "sparsecast-trex-lab-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	out := o.Out
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }

	// The testbed's files, as this binary carries them.
	tb := filepath.Join(o.Dir, "testbed")
	if err := writeFiles(tb); err != nil {
		return err
	}
	p := o.Prefix
	swCfg, trexCfg := filepath.Join(o.Dir, "switch.yaml"), filepath.Join(o.Dir, "trex_cfg.yaml")
	if err := writeConfigs(tb, swCfg, trexCfg, p); err != nil {
		return err
	}

	if err := lab.Teardown(ctx, p, o.Log); err != nil {
		return fmt.Errorf("clearing an earlier lab %s*: %w", p, err)
	}
	l, err := lab.New(p)
	if err != nil {
		return err
	}
	l.Log = o.Log
	defer func() {
		cerr := l.Close()
		left, _ := lab.Namespaces(context.Background(), p)
		if cerr == nil && len(left) > 0 {
			cerr = fmt.Errorf("namespaces left behind: %v", left)
		}
		if cerr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", cerr))
		} else {
			say("lab %s* torn down: no namespace, veth or process left", p)
		}
	}()
	trexNS, err := l.AddNamespace(ctx, "trex")
	if err != nil {
		return err
	}
	swNS, err := l.AddNamespace(ctx, "sw")
	if err != nil {
		return err
	}
	for _, v := range []struct{ a, b lab.Link }{
		{lab.Link{NS: trexNS, Dev: p + "t0", MAC: "02:00:00:00:00:01"}, lab.Link{NS: swNS, Dev: p + "p0", MAC: "02:00:00:00:00:02"}},
		{lab.Link{NS: trexNS, Dev: p + "t1", MAC: "02:00:00:00:00:12"}, lab.Link{NS: swNS, Dev: p + "p1", MAC: "02:00:00:00:00:11"}},
		{lab.Link{NS: trexNS, Dev: p + "m0"}, lab.Link{NS: swNS, Dev: p + "m1"}},
	} {
		if err := l.AddVeth(ctx, v.a, v.b); err != nil {
			return err
		}
		if err := l.Up(ctx, v.a.NS, v.a.Dev); err != nil {
			return err
		}
		if err := l.Up(ctx, v.b.NS, v.b.Dev); err != nil {
			return err
		}
	}
	if err := l.AddAddr(ctx, trexNS, p+"m0", mgmtTRex+"/30"); err != nil {
		return err
	}
	if err := l.AddAddr(ctx, swNS, p+"m1", mgmtSwitch+"/30"); err != nil {
		return err
	}

	swLog, err := os.Create(filepath.Join(o.Dir, "switch.log"))
	if err != nil {
		return err
	}
	defer swLog.Close()
	sw, err := l.Start(swNS, "switch", swLog, swLog, "nice", "-n", "15", o.Binary, "switch", "run", "--config", swCfg)
	if err != nil {
		return err
	}
	if err := lab.WaitPacketSockets(ctx, swNS, 2, sw, 30*time.Second); err != nil {
		return fmt.Errorf("switch: %w (log %s)", err, swLog.Name())
	}
	say("switch up in %s: %s (ports %sp0, %sp1; metrics http://%s:9470/metrics)", swNS, swCfg, p, p, mgmtSwitch)

	tr, err := startTRex(trexNS, trexDir, trexCfg, filepath.Join(o.Dir, "trex.log"), o.Log)
	if err != nil {
		return err
	}
	defer func() {
		if serr := tr.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	if err := tr.waitRPC(ctx, trexNS, 120*time.Second); err != nil {
		return err
	}
	say("TRex up in %s: %s (cfg %s, log %s)", trexNS, trexDir, trexCfg, tr.logPath)

	metrics := fmt.Sprintf("http://%s:9470/metrics", mgmtSwitch)
	py := func(name string, args ...string) error {
		logf, err := os.Create(filepath.Join(o.Dir, name+".log"))
		if err != nil {
			return err
		}
		defer logf.Close()
		argv := append([]string{"netns", "exec", trexNS, "nice", "-n", "15", o.Python}, args...)
		cmd := exec.CommandContext(ctx, "ip", argv...)
		// Ctrl-C reaches Python as SIGINT too; on ctx's end ask it to stop
		// (its finally: stops traffic, releases the ports) before killing.
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 15 * time.Second
		cmd.Dir = o.Dir
		cmd.Stdout = io.MultiWriter(out, logf)
		cmd.Stderr = io.MultiWriter(out, logf)
		if o.Log != nil {
			fmt.Fprintf(o.Log, "+ ip %s\n", strings.Join(argv, " "))
		}
		return cmd.Run()
	}
	common := []string{"--server", "127.0.0.1", "--trex-dir", trexDir, "--switch-metrics", metrics}
	var results []string
	record := func(step string, err error) {
		if err != nil {
			results = append(results, fmt.Sprintf("%-9s FAIL: %v", step, err))
		} else {
			results = append(results, fmt.Sprintf("%-9s ok", step))
		}
	}
	for _, step := range o.Steps {
		if ctx.Err() != nil {
			break
		}
		say("\n==== %s ====", step)
		switch step {
		case "console":
			// README's console line, as a batch file for trex-console.
			line := fmt.Sprintf("start -f %s -m %s --port 0 -d %d -t %s", filepath.Join(tb, "smh_stl.py"), o.Rate, o.Duration, o.Tunables)
			batch := filepath.Join(o.Dir, "console.batch")
			if err := os.WriteFile(batch, []byte(line+"\n"), 0o644); err != nil {
				return err
			}
			say("trex> %s", line)
			err := py("console", append([]string{filepath.Join(tb, "ndr.py")}, append(common, "--console", batch,
				"--console-wait", fmt.Sprint(o.Duration+2), "-t", o.Tunables)...)...)
			record(step, err)
		case "api":
			err := py("api", append([]string{filepath.Join(tb, "ndr.py")}, append(common, "--rate", o.Rate,
				"--duration", fmt.Sprint(o.Duration), "--csv", filepath.Join(o.Dir, "api.csv"), "-t", o.Tunables)...)...)
			record(step, err)
		case "ndr":
			err := py("ndr", append([]string{filepath.Join(tb, "ndr.py")}, append(common, "--rate-lo", o.NDRLo,
				"--rate-hi", o.NDRHi, "--precision", fmt.Sprint(o.NDRPrec), "--duration", fmt.Sprint(o.NDRSecs),
				"--csv", filepath.Join(o.Dir, "ndr.csv"), "-t", o.Tunables)...)...)
			record(step, err)
		case "feedback":
			err := py("feedback", append([]string{filepath.Join(tb, "fbbench.py")}, append(common, "--spoofed",
				"--duration", fmt.Sprint(o.FBSecs), "-t", o.FBTuning)...)...)
			record(step, err)
		}
		if sw.Exited() {
			return fmt.Errorf("the switch exited during %s (log %s)", step, swLog.Name())
		}
		if tr.exited() {
			return fmt.Errorf("TRex exited during %s (log %s)", step, tr.logPath)
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	say("\n==== summary (logs, CSVs and configs in %s) ====", o.Dir)
	failed := 0
	for _, r := range results {
		say("  %s", r)
		if strings.Contains(r, "FAIL") {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d steps failed", failed, len(results))
	}
	return nil
}

func writeFiles(dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return fs.WalkDir(Files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := Files.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, path), b, 0o644)
	})
}

// writeConfigs writes dut-switch.yaml with the lab's interface names and
// metrics address, and trex_cfg_low_end.yaml with the lab's veths.
func writeConfigs(tb, swCfg, trexCfg, p string) error {
	dut, err := os.ReadFile(filepath.Join(tb, "dut-switch.yaml"))
	if err != nil {
		return err
	}
	s := string(dut)
	for _, r := range [][2]string{
		{"iface: enp3s0f0", "iface: " + p + "p0"},
		{"iface: enp3s0f1", "iface: " + p + "p1"},
		{"metrics_addr: 127.0.0.1:9470", "metrics_addr: " + mgmtSwitch + ":9470"},
		// busy polling would take a whole core from TRex's one (low_end)
		{"poll_mode: busy", "poll_mode: adaptive"},
	} {
		if !strings.Contains(s, r[0]) {
			return fmt.Errorf("dut-switch.yaml: %q not found (the lab rewrites it)", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	if err := os.WriteFile(swCfg, []byte(s), 0o644); err != nil {
		return err
	}
	if _, err := dataplane.LoadConfig(swCfg); err != nil {
		return fmt.Errorf("the lab's switch config: %w", err)
	}
	tc, err := os.ReadFile(filepath.Join(tb, "trex_cfg_low_end.yaml"))
	if err != nil {
		return err
	}
	t := string(tc)
	old := `interfaces: ["trex0", "trex1"]`
	if !strings.Contains(t, old) {
		return fmt.Errorf("trex_cfg_low_end.yaml: %q not found (the lab rewrites it)", old)
	}
	t = strings.Replace(t, old, fmt.Sprintf(`interfaces: ["%st0", "%st1"]`, p, p), 1)
	return os.WriteFile(trexCfg, []byte(t), 0o644)
}

// trexProc is a TRex server in its own process group (t-rex-64 is a
// script around _t-rex-64: the group holds both).
type trexProc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
	logf    *os.File
}

func startTRex(ns, dir, cfg, logPath string, log io.Writer) (*trexProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// --iom 0: no screen refresh into the log; nice: the machine is shared
	// and TRex's core spins.
	argv := []string{"netns", "exec", ns, "nice", "-n", "15", "./t-rex-64", "-i", "--no-scapy-server", "--iom", "0", "--cfg", cfg}
	if log != nil {
		fmt.Fprintf(log, "+ (cd %s; ip %s)\n", dir, strings.Join(argv, " "))
	}
	cmd := exec.Command("ip", argv...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start TRex: %w", err)
	}
	t := &trexProc{cmd: cmd, done: make(chan struct{}), logPath: logPath, logf: logf}
	go func() { cmd.Wait(); close(t.done) }()
	return t, nil
}

func (t *trexProc) exited() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// stop signals TRex's process group: SIGINT (what TRex handles to shut its
// ports down), then SIGKILL after 15 s.
func (t *trexProc) stop() error {
	defer t.logf.Close()
	if t.exited() {
		return nil
	}
	pgid := t.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGINT)
	select {
	case <-t.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-t.done
	}
	// Anything of the group still alive (a child that ignored SIGINT).
	if err := syscall.Kill(-pgid, 0); err == nil {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	return nil
}

// waitRPC waits until TRex's RPC port accepts connections in its
// namespace (4-5 s on an idle machine, much longer on a loaded one).
func (t *trexProc) waitRPC(ctx context.Context, ns string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := afpacket.InNetns(ns, func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Connect(fd, &unix.SockaddrInet4{Port: rpcPort, Addr: [4]byte{127, 0, 0, 1}})
		})
		if err == nil {
			return nil
		}
		if t.exited() {
			return fmt.Errorf("TRex exited before its RPC port answered; its log (%s) ends:\n%s", t.logPath, tail(t.logPath, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("TRex's RPC port %d did not answer within %v; its log (%s) ends:\n%s", rpcPort, timeout, t.logPath, tail(t.logPath, 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
