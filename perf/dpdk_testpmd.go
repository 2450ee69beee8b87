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
	t := time.NewTimer(time.Duration((o.Seconds + 1.2) * float64(time.Second)))
	defer t.Stop()
	select {
	case err := <-done:
		return nil, fmt.Errorf("testpmd exited early (%v): %s", err, tail(out.String(), 2000))
	case <-t.C:
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
	return r, nil
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
