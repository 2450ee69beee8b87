// Transmit stage. In: copies from the replicate stage, per egress port. Out:
// bursts handed to each port's transmit queue. Each worker owns one bounded
// egress queue per port; a full queue drops at the tail (counted as
// queue_full), and the fault injector drops frames here as a lossy link
// would, since this machine has no netem.
package dataplane

// egressQueue is a worker's bounded FIFO of packets waiting for one port.
type egressQueue struct {
	ring []*Packet
	// lens holds each queued frame's length by ring slot, taken when
	// enqueue checks it: a port may reset a packet it sends (ConsignRef),
	// so flush cannot ask afterwards.
	lens       []int32
	head, size int
	tx         TxQueue
	fault      faultInjector
	burst      [BurstSize]*Packet // a burst that wraps around the ring

	// rt replaces fault while rtOn, until the MonotonicNs deadline rtUntil
	// (a runtime fault, fault.go).
	rt      faultInjector
	rtOn    bool
	rtUntil int64
}

func newEgressQueue(depth int, tx TxQueue, f FaultConfig, seed uint64) egressQueue {
	return egressQueue{ring: make([]*Packet, depth), lens: make([]int32, depth), tx: tx, fault: newFaultInjector(f, seed)}
}

// enqueue puts a copy on port p's queue, or drops it.
func (w *Worker) enqueue(p uint8, pk *Packet) {
	q := &w.queues[p]
	n := pk.Len()
	if n > w.egress[p].maxLen {
		w.counters.drop(DropTooBig, 1)
		pk.Free()
		return
	}
	fi := &q.fault
	if q.rtOn {
		fi = &q.rt
	}
	if fi.drop() {
		w.counters.drop(DropFaultInjected, 1)
		pk.Free()
		return
	}
	if q.size == len(q.ring) {
		w.counters.drop(DropQueueFull, 1)
		pk.Free()
		return
	}
	i := q.head + q.size
	if i >= len(q.ring) {
		i -= len(q.ring)
	}
	q.ring[i] = pk
	q.lens[i] = int32(n)
	q.size++
}

// flush transmits as much of every queue as the ports take now, in bursts.
// It returns the number of packets still queued.
func (w *Worker) flush() int {
	left := 0
	for p := range w.queues {
		q := &w.queues[p]
		for q.size > 0 {
			n := min(q.size, BurstSize)
			// A burst that does not wrap is handed over as a view of the
			// ring (ports do not keep it); one that wraps is copied.
			var burst []*Packet
			if q.head+n <= len(q.ring) {
				burst = q.ring[q.head : q.head+n]
			} else {
				k := copy(q.burst[:n], q.ring[q.head:])
				copy(q.burst[k:n], q.ring)
				burst = q.burst[:n]
			}
			sent, err := q.tx.TxBurst(burst)
			if err != nil && sent == 0 {
				// A port that fails hard must not wedge the worker: drop the
				// burst and count it.
				for _, pk := range burst {
					pk.Free()
				}
				w.counters.drop(DropTxError, uint64(n))
				sent = n
				q.take(sent)
			} else if sent > 0 {
				bytes := q.take(sent)
				pc := &w.counters.Ports[w.egress[p].counter]
				inc(&pc.TxPackets, uint64(sent))
				inc(&pc.TxBytes, uint64(bytes))
			}
			if sent < n {
				break // the port is full; try again next round
			}
		}
		left += q.size
	}
	return left
}

// take removes the first n packets from the queue, clearing their slots so
// a freed packet is not reachable from the queue (wireguard-go clears pool
// elements likewise), and returns their bytes.
func (q *egressQueue) take(n int) int {
	bytes := 0
	end := min(q.head+n, len(q.ring))
	for j := q.head; j < end; j++ {
		bytes += int(q.lens[j])
		q.ring[j] = nil
	}
	for j := 0; j < n-(end-q.head); j++ {
		bytes += int(q.lens[j])
		q.ring[j] = nil
	}
	q.head += n
	if q.head >= len(q.ring) {
		q.head -= len(q.ring)
	}
	q.size -= n
	return bytes
}

// faultInjector drops frames with a configured probability, each loss event
// taking Burst consecutive frames. xorshift64*: no allocation, no lock.
type faultInjector struct {
	threshold uint64 // loss probability scaled to 2^64; 0 = off
	burst     int
	remaining int
	state     uint64
}

func newFaultInjector(f FaultConfig, seed uint64) faultInjector {
	fi := faultInjector{burst: max(f.Burst, 1), state: f.Seed}
	if fi.state == 0 {
		fi.state = seed*0x9E3779B97F4A7C15 + 1
	}
	switch {
	case f.Loss >= 1:
		fi.threshold = ^uint64(0)
	case f.Loss > 0:
		fi.threshold = uint64(f.Loss * (1 << 63) * 2)
	}
	return fi
}

func (f *faultInjector) drop() bool {
	if f.threshold == 0 {
		return false
	}
	if f.remaining > 0 {
		f.remaining--
		return true
	}
	f.state ^= f.state >> 12
	f.state ^= f.state << 25
	f.state ^= f.state >> 27
	if f.state*2685821657736338717 < f.threshold {
		f.remaining = f.burst - 1
		return true
	}
	return false
}
