package main

// systemd supervision of `switch run` and `control run` (Type=notify units
// in testbeds/deploy/): READY=1 once the process is up and every worker has
// gone round its loop, then WATCHDOG=1 each half WatchdogSec while every
// worker keeps going round. A worker that stops (stuck in a syscall, a
// livelock) stops the pings, and systemd restarts the unit after
// WatchdogSec. Outside systemd (no NOTIFY_SOCKET) it does nothing.
//
// In: a progress function, one loop counter per worker (the switch's
// CoreCounters.Polls, control's Server.Rounds). Out: notify datagrams to
// $NOTIFY_SOCKET (github.com/coreos/go-systemd/v22/daemon).

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/sparsecast/sparsecast/dataplane"
)

// readyPoll is how often superviseSystemd looks for the workers' first
// rounds before READY=1.
const readyPoll = 5 * time.Millisecond

// superviseSystemd runs until ctx ends. status is the STATUS= line
// systemctl status shows.
func superviseSystemd(ctx context.Context, log io.Writer, status string, progress func() []uint64) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	// A notify socket that fails once (a stale NOTIFY_SOCKET) is reported
	// once, not on every ping.
	warned := false
	notify := func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil && !warned {
			warned = true
			fmt.Fprintf(log, "systemd notify %q: %v (further failures not logged)\n", state, err)
		}
	}
	// READY=1 only when every worker has done a round since now: ports,
	// rings and metrics are open before the caller starts us, and the
	// workers are running.
	start := progress()
	tick := time.NewTicker(readyPoll)
	for !allAdvanced(start, progress()) {
		select {
		case <-ctx.Done():
			tick.Stop()
			return
		case <-tick.C:
		}
	}
	tick.Stop()
	notify(daemon.SdNotifyReady + "\nSTATUS=" + status)
	defer notify(daemon.SdNotifyStopping)

	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		fmt.Fprintf(log, "systemd watchdog: %v\n", err)
	}
	if interval <= 0 {
		<-ctx.Done()
		return
	}
	watchdog := time.NewTicker(interval / 2)
	defer watchdog.Stop()
	last := progress()
	for {
		select {
		case <-ctx.Done():
			return
		case <-watchdog.C:
		}
		now := progress()
		if stalled := stalledWorkers(last, now); len(stalled) > 0 {
			// No ping: systemd restarts the unit when WatchdogSec passes
			// without one.
			fmt.Fprintf(log, "systemd watchdog: no ping, workers %v made no progress in %v\n", stalled, interval/2)
		} else {
			notify(daemon.SdNotifyWatchdog)
		}
		last = now
	}
}

// allAdvanced reports whether every counter in now is past its value in
// before (the same workers, in the same order).
func allAdvanced(before, now []uint64) bool {
	return len(stalledWorkers(before, now)) == 0
}

// stalledWorkers lists the indexes of the counters that did not move.
func stalledWorkers(before, now []uint64) []int {
	var stalled []int
	for i := range now {
		if i < len(before) && now[i] == before[i] {
			stalled = append(stalled, i)
		}
	}
	return stalled
}

// workerPolls is the switch's progress: each worker's loop count.
func workerPolls(sw *dataplane.Switch) func() []uint64 {
	counters := sw.Counters()
	return func() []uint64 {
		polls := make([]uint64, len(counters))
		for i, c := range counters {
			polls[i] = c.Polls.Load()
		}
		return polls
	}
}
