// dpdk-testpmd as the reference for `sparsecast bench dpdk`: the same kind of
// virtual device, forwarded by DPDK's own test application in io mode on
// one core, in the same run. Parsing its output needs no DPDK, so this file
// is built (and tested) everywhere.
package perf

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// TestpmdOptions say how to run dpdk-testpmd.
type TestpmdOptions struct {
	Binary string // default "dpdk-testpmd"
	// Vdevs are the --vdev arguments (two ports forwarded to each other).
	Vdevs []string
	// EAL arguments besides the vdevs (cores, memory, file prefix).
	EAL     []string
	Seconds float64
	// Ring devices start empty: testpmd sends a first burst (--tx-first)
	// that then circulates.
	Ring bool
	// Mode is the forwarding mode: "io" (the default: mbufs moved, packet
	// bytes never touched) or "mac" (each frame's Ethernet addresses
	// rewritten: the least a forwarder that writes headers does).
	Mode string
}

// TestpmdResult is what one testpmd run forwarded.
type TestpmdResult struct {
	// Mpps is the forwarding core's rate: the sum over its ports of the
	// received packets per second, the median of the periodic reports
	// after the first.
	Mpps    float64   `json:"mpps"`
	Samples []float64 `json:"samples_mpps"`
	Command string    `json:"command"`
	// CPUMpps is packets per CPU-second of the testpmd process between its
	// first rate report and the stop: the reports' mean rate times that
	// wall time, over the CPU time the process used in it (on a shared
	// machine the forwarding core gets a fraction of a CPU, and this rate
	// does not depend on how large).
	CPUMpps float64 `json:"cpu_mpps"`
}

// RunTestpmd runs testpmd --forward-mode=io (or o.Mode) with stats every
// second for o.Seconds, stops it with SIGINT and parses its reports.
func RunTestpmd(ctx context.Context, o TestpmdOptions) (*TestpmdResult, error) {
	mode := cmp.Or(o.Mode, "io")
	if mode != "io" && mode != "mac" {
		return nil, fmt.Errorf("testpmd forward mode %q: want io or mac", mode)
	}
	bin := o.Binary
	if bin == "" {
		bin = "dpdk-testpmd"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%s not found (apt-get install dpdk): %w", bin, err)
	}
	args := slices.Clone(o.EAL)
	for _, v := range o.Vdevs {
		args = append(args, "--vdev", v)
	}
	args = append(args, "--", "--forward-mode="+mode, "--nb-cores=1", "--stats-period", "1")
	if o.Ring {
		args = append(args, "--tx-first")
	}
	cmd := exec.CommandContext(ctx, path, args...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	pw.Close()
	// The measured window starts at the first rate report: EAL start-up
	// (zeroing its memory) takes seconds on a loaded machine.
	var out bytes.Buffer
	first := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		started := false
		for sc.Scan() {
			out.WriteString(sc.Text())
			out.WriteByte('\n')
			if !started && rxPpsRe.MatchString(sc.Text()) {
				started = true
				close(first)
			}
		}
	}()
	done := make(chan error, 1)
	go func() { <-readDone; done <- cmd.Wait() }()
	startup := time.NewTimer(30 * time.Second)
	defer startup.Stop()
	select {
	case <-first:
	case err := <-done:
		return nil, fmt.Errorf("testpmd exited early (%v): %s", err, tail(out.String(), 2000))
	case <-startup.C:
		cmd.Process.Kill()
		<-done
		return nil, fmt.Errorf("testpmd printed no rates in 30 s: %s", tail(out.String(), 2000))
	}
	cpu0, cpuErr := procCPU(cmd.Process.Pid)
	w0 := time.Now()
	t := time.NewTimer(time.Duration((o.Seconds + 1.2) * float64(time.Second)))
	defer t.Stop()
	var cpu, wall time.Duration
	select {
	case err := <-done:
		return nil, fmt.Errorf("testpmd exited early (%v): %s", err, tail(out.String(), 2000))
	case <-t.C:
		cpu1, err := procCPU(cmd.Process.Pid)
		wall = time.Since(w0)
		if cpuErr == nil && err == nil {
			cpu = cpu1 - cpu0
		}
		cmd.Process.Signal(syscall.SIGINT)
		<-done
	}
	s := ParseTestpmdStats(out.String())
	r := &TestpmdResult{Command: path + " " + strings.Join(args, " ")}
	if len(s) < 2 {
		return nil, fmt.Errorf("testpmd printed %d rate reports: %s", len(s), tail(out.String(), 2000))
	}
	r.Samples = s
	r.Mpps = median(s[1:])
	if cpu > 0 {
		var sum float64
		for _, v := range s[1:] {
			sum += v
		}
		r.CPUMpps = sum / float64(len(s)-1) * wall.Seconds() / cpu.Seconds()
	}
	return r, nil
}

// procCPU is the user and system time process pid has used, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcCPU(string(b))
}

func parseProcCPU(stat string) (time.Duration, error) {
	// The command name (field 2) may hold spaces: count from its ')'.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat %q: no command name", tail(stat, 80))
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat %q: %d fields", tail(stat, 80), len(f)+2)
	}
	// After ')': field 3 is f[0], so utime (14) is f[11], stime (15) f[12].
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("proc stat: utime %q stime %q", f[11], f[12])
	}
	return time.Duration(u+st) * 10 * time.Millisecond, nil
}

var (
	nicStatsRe = regexp.MustCompile(`NIC statistics for port (\d+)`)
	rxPpsRe    = regexp.MustCompile(`Rx-pps:\s+(\d+)`)
)

// ParseTestpmdStats turns testpmd's periodic "NIC statistics" blocks into
// one rate per report in Mpps: the sum over ports of Rx-pps. A report is
// complete when a port number repeats.
func ParseTestpmdStats(out string) []float64 {
	var rates []float64
	seen := map[string]bool{}
	var sum float64
	port := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := nicStatsRe.FindStringSubmatch(line); m != nil {
			if seen[m[1]] {
				rates = append(rates, sum/1e6)
				clear(seen)
				sum = 0
			}
			port = m[1]
			continue
		}
		if m := rxPpsRe.FindStringSubmatch(line); m != nil && port != "" && !seen[port] {
			v, _ := strconv.ParseFloat(m[1], 64)
			sum += v
			seen[port] = true
		}
	}
	if len(seen) > 0 {
		rates = append(rates, sum/1e6)
	}
	return rates
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
