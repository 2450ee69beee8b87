package lab

// Per-receiver progress over a run, for plots of throughput over time (the
// checkpoint and MoE scenarios; failover has every sequence number instead).
// In: the receivers' processes. Out: each receiver's bytes received since the
// start, sampled every interval.
//
// A sample is the receive byte counter of the host's eth0, read from
// /proc/PID/net/dev where PID is the receiver's process: /proc/PID/net shows
// the network namespace of PID, so sampling starts no process and needs no
// setns. The counter is what reached the host's interface (first copies and
// repairs alike), not what the application has written so far.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ProgressSample is one receiver's count at one moment of a run.
type ProgressSample struct {
	// At is the time since the recording started.
	At time.Duration `json:"at_ns"`
	// Bytes is what the host's interface received since the recording
	// started.
	Bytes uint64 `json:"bytes"`
}

// ReceiverProgress is one receiver's samples, in time order.
type ReceiverProgress struct {
	Host    string           `json:"host"`
	ID      uint16           `json:"id"`
	Samples []ProgressSample `json:"samples"`
}

// progressInterval is how often a recorder samples: fine enough to show a
// failure's dip, coarse enough to cost nothing on a busy 2-core machine.
const progressInterval = 100 * time.Millisecond

// progressTarget is one receiver to sample: a process in its namespace and
// the interface to read.
type progressTarget struct {
	host string
	id   uint16
	pid  int
	dev  string
}

// progressRecorder samples its targets from one goroutine until Stop.
type progressRecorder struct {
	start   time.Time
	targets []progressTarget
	base    []uint64
	haveB   []bool

	mu  sync.Mutex
	out []ReceiverProgress

	stop chan struct{}
	done chan struct{}
}

// startProgress takes a first sample of every target (the baseline, at 0)
// and then one every interval until Stop.
func startProgress(targets []progressTarget, interval time.Duration) *progressRecorder {
	r := &progressRecorder{
		start: time.Now(), targets: targets,
		base: make([]uint64, len(targets)), haveB: make([]bool, len(targets)),
		out:  make([]ReceiverProgress, len(targets)),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	for i, t := range targets {
		r.out[i] = ReceiverProgress{Host: t.host, ID: t.id}
	}
	r.sample()
	go func() {
		defer close(r.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-r.stop:
				r.sample()
				return
			case <-tick.C:
				r.sample()
			}
		}
	}()
	return r
}

// Elapsed is the time since the recording started, the clock of its samples.
func (r *progressRecorder) Elapsed() time.Duration { return time.Since(r.start) }

// sample reads every target once. A receiver whose process has exited (its
// /proc entry is gone) gets no sample.
func (r *progressRecorder) sample() {
	at := time.Since(r.start)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, t := range r.targets {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", t.pid))
		if err != nil {
			continue
		}
		n, err := rxBytes(data, t.dev)
		if err != nil {
			continue
		}
		if !r.haveB[i] {
			r.base[i], r.haveB[i] = n, true
		}
		r.out[i].Samples = append(r.out[i].Samples, ProgressSample{At: at, Bytes: n - min(n, r.base[i])})
	}
}

// Stop takes a last sample, ends the recording and returns the samples.
func (r *progressRecorder) Stop() []ReceiverProgress {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out
}

// rxBytes finds dev's receive byte counter in the text of /proc/net/dev:
//
//	Inter-|   Receive                            ...|  Transmit
//	 face |bytes    packets errs drop fifo frame ...|bytes ...
//	  eth0:  123456     789    0    0    0     0 ...
func rxBytes(netdev []byte, dev string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(netdev))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) != dev {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseUint(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no interface %s in /proc/net/dev", dev)
}
