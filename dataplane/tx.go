// Transmit stage. In: copies from the replicate stage, per egress port. Out:
// bursts handed to each port's transmit queue. Each worker owns one bounded
// egress queue per port; a full queue drops at the tail (counted as
// queue_full), and the fault injector drops frames here as a lossy link
// would, since this machine has no netem.
package dataplane

// egressQueue is a worker's bounded FIFO of packets waiting for one port.
type egressQueue struct {
	ring       []*Packet
	head, size int
	tx         TxQueue
	fault      faultInjector
	lens       [BurstSize]int
	burst      [BurstSize]*Packet
}

func newEgressQueue(depth int, tx TxQueue, f FaultConfig, seed uint64) egressQueue {
	return egressQueue{ring: make([]*Packet, depth), tx: tx, fault: newFaultInjector(f, seed)}
}

// enqueue puts a copy on port p's queue, or drops it.
func (w *Worker) enqueue(p uint8, pk *Packet) {
	q := &w.queues[p]
	if pk.Len() > w.egress[p].maxLen {
		w.counters.drop(DropTooBig, 1)
		pk.Free()
		return
	}
	if q.fault.drop() {
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
			bytes := 0
			for i := 0; i < n; i++ {
				j := q.head + i
				if j >= len(q.ring) {
					j -= len(q.ring)
				}
				q.burst[i] = q.ring[j]
				q.lens[i] = q.burst[i].Len()
			}
			sent, err := q.tx.TxBurst(q.burst[:n])
			for i := 0; i < sent; i++ {
				bytes += q.lens[i]
			}
			if err != nil && sent == 0 {
				// A port that fails hard must not wedge the worker: drop the
				// burst and count it.
				for i := 0; i < n; i++ {
					q.burst[i].Free()
				}
				w.counters.drop(DropTxError, uint64(n))
				sent = n
			} else if sent > 0 {
				pc := &w.counters.Ports[w.egress[p].counter]
				inc(&pc.TxPackets, uint64(sent))
				inc(&pc.TxBytes, uint64(bytes))
			}
			for i := 0; i < sent; i++ {
				j := q.head + i
				if j >= len(q.ring) {
					j -= len(q.ring)
				}
				// Clear the slot so a freed packet is not reachable from
				// the queue (wireguard-go clears pool elements likewise).
				q.ring[j] = nil
			}
			q.head += sent
			if q.head >= len(q.ring) {
				q.head -= len(q.ring)
			}
			q.size -= sent
			if sent < n {
				break // the port is full; try again next round
			}
		}
		left += q.size
	}
	return left
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
