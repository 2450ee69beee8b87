// Receive stage and the polling loop. In: the ports whose receive side this
// worker owns. Out: each burst goes parse -> replicate -> the egress queues,
// then every queue is flushed. A worker runs on one OS thread pinned to one
// CPU. In busy mode it never sleeps (a dedicated core on a real switch); in
// adaptive mode it spins for a short while after the last packet and then
// blocks in poll(2) on its ports' descriptors, as VPP's interrupt mode does,
// so a dozen switch and host processes can share a 2-core lab machine.
package dataplane

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/headers"
)

const (
	// defaultSpinBeforeBlock is how long an adaptive worker keeps polling
	// an idle port set before it blocks (config spin_before_block).
	defaultSpinBeforeBlock = 50 * time.Microsecond
	// blockTimeout bounds one block in poll(2), so stop requests and queued
	// transmissions are served even without traffic.
	blockTimeout = 10 // milliseconds
	// napWithoutFd is how long an adaptive worker with no pollable port naps.
	napWithoutFd = 100 * time.Microsecond
)

// Worker is one polling loop with its own buffers, queues and counters.
type Worker struct {
	id       int
	cpu      int // -1: not pinned
	mode     PollMode
	spin     time.Duration // adaptive: idle polling before blocking
	udpPort  uint16
	pool     *Pool
	rx       []rxPort
	queues   []egressQueue
	egress   []egressPort
	counters *CoreCounters
	tables   *atomic.Pointer[Tables]
	split    splitScratch
	burst    [BurstSize]*Packet
	meta     [BurstSize]parsed
	pollFds  []unix.PollFd
	pollPort []uint8 // the port behind each pollFds entry
	probe    probeState
	agg      *aggregator // nil: feedback is forwarded, not aggregated
	fbIDs    []uint16    // scratch: a feedback packet's set
	acks     [maxUpstreams]ackOut
	cur      *Tables // this round's snapshot
	flows    flowCache
	fanout   fanoutTally // published to counters once per round
	filling  *flowEntry  // the flow entry the packet being replicated fills
	sw       *Switch
	stop     atomic.Bool
	// RxErrors counts failed receive calls (a port going away).
	rxErrors uint64

	// faults is the switch's runtime fault snapshot (fault.go); faultSeen
	// the one the queues' runtime injectors were built from, faultLive
	// whether one of them is still in force.
	faults    *atomic.Pointer[faultSet]
	faultSeen *faultSet
	faultLive bool
}

type rxPort struct {
	port  Port
	index uint16
}

// Stop asks the worker to return from Run.
func (w *Worker) Stop() { w.stop.Store(true) }

// Run polls until Stop. It locks itself to an OS thread and, if the worker
// has a CPU, pins that thread to it.
func (w *Worker) Run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if w.cpu >= 0 {
		var set unix.CPUSet
		set.Set(w.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return err
		}
	}
	var idleSince time.Time
	idle := false
	probing := w.probe.enabled()
	for !w.stop.Load() {
		if probing {
			// One clock read per loop iteration, never per packet.
			w.probeTick(time.Now())
		}
		got := w.poll()
		left := w.flush()
		inc(&w.counters.Polls, 1)
		if got > 0 || w.mode == PollBusy {
			idle = false
			continue
		}
		// One clock read per idle iteration, never per packet.
		now := time.Now()
		if !idle {
			idle, idleSince = true, now
			continue
		}
		if now.Sub(idleSince) < w.spin {
			continue
		}
		w.block(left > 0)
		idle = false
	}
	w.drain()
	return nil
}

// poll receives one burst from each owned port and pushes it through the
// pipeline. It returns the number of packets received.
func (w *Worker) poll() int {
	t := w.tables.Load() // once per round, shared by every burst in it
	w.cur = t
	var now int64
	if w.agg != nil {
		// One clock read per round, of CLOCK_MONOTONIC itself: time.Now
		// would read the wall clock too, which nothing here needs.
		now = MonotonicNs()
		w.agg.now = now
		w.agg.expireIdle() // a few slots per round, never the table
	}
	if w.faults != nil {
		if fs := w.faults.Load(); fs != w.faultSeen {
			w.takeFaults(fs)
		}
		if w.faultLive {
			if now == 0 {
				now = MonotonicNs()
			}
			w.expireFaults(now)
		}
	}
	got := 0
	for i := range w.rx {
		r := &w.rx[i]
		n, err := r.port.RxBurst(w.pool, w.burst[:])
		if err != nil {
			w.rxErrors++
			continue
		}
		if n == 0 {
			continue
		}
		got += n
		bytes := 0
		pkts := w.burst[:n]
		for _, pk := range pkts {
			pk.InPort = r.index
			bytes += len(pk.Head)
		}
		if w.probe.enabled() {
			w.alive(r.index)
		}
		pc := &w.counters.Ports[r.index]
		inc(&pc.RxPackets, uint64(n))
		inc(&pc.RxBytes, uint64(bytes))
		w.forwardBurst(pkts, w.meta[:n], t)
		for j := range pkts {
			pkts[j] = nil
		}
	}
	w.fanout.publish(w.counters)
	return got
}

// block waits for traffic on the owned ports. With packets still queued for
// a full port it only yields briefly, so they go out soon.
func (w *Worker) block(pending bool) {
	inc(&w.counters.Sleeps, 1)
	timeout := blockTimeout
	if w.probe.enabled() {
		// Probes are due every interval: wake for them.
		timeout = max(1, min(timeout, int(w.probe.cfg.Interval/time.Millisecond)))
	}
	if pending {
		timeout = 1
	}
	if len(w.pollFds) == 0 {
		time.Sleep(napWithoutFd)
		return
	}
	for i := range w.pollFds {
		w.pollFds[i].Revents = 0
	}
	// EINTR and friends just end the wait early; the loop polls again.
	_, _ = unix.Poll(w.pollFds, timeout)
	for i := range w.pollFds {
		if w.pollFds[i].Revents&unix.POLLERR != 0 {
			// A packet socket whose interface went down keeps ENETDOWN
			// pending, and poll reports POLLERR until something reads it:
			// a ring port never calls recv, so without this the worker
			// spun a core for as long as the link stayed down (starving
			// the lab's other processes just when fast reroute needs
			// them). Reading SO_ERROR clears it; on an fd that is not a
			// socket it fails harmlessly.
			e, _ := unix.GetsockoptInt(int(w.pollFds[i].Fd), unix.SOL_SOCKET, unix.SO_ERROR)
			w.socketError(i, unix.Errno(e))
		}
	}
}

// socketError acts on a pending error read from poll entry i. ENETDOWN is
// the kernel telling a packet socket that its interface went down
// (NETDEV_DOWN, what `ip link set down` does), and it woke this worker
// directly: the port is marked down and its routes moved to their backups
// now, on this thread. The carrier watcher learns the same from netlink,
// but only when its goroutine is next scheduled: 0.1-2.9 ms later on the
// 2-core lab machine, with the worker forwarding into a dead port
// meanwhile. Its report then finds the port already down. (A lost carrier
// without an administrative down raises no socket error; the watcher and
// the probes catch that.)
func (w *Worker) socketError(i int, e unix.Errno) {
	if e != unix.ENETDOWN || w.sw == nil || i >= len(w.pollPort) {
		return
	}
	w.sw.LinkChange(w.pollPort[i], headers.LinkDown, "carrier", 0, MonotonicNs())
}

// drain frees whatever is still queued when the worker stops.
func (w *Worker) drain() {
	for p := range w.queues {
		q := &w.queues[p]
		for q.size > 0 {
			q.ring[q.head].Free()
			q.ring[q.head] = nil
			q.head = (q.head + 1) % len(q.ring)
			q.size--
		}
	}
}
