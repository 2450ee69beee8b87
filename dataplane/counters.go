// Per-core counters: each worker owns one CoreCounters and is its only
// writer, so it updates with a plain load and store (no locked instruction);
// the Prometheus collector reads them with atomic loads at scrape time and
// sums over cores (node_exporter's read-at-scrape pattern).
package dataplane

import (
	"sync/atomic"

	"github.com/sparsecast/sparsecast/headers"
)

// FanoutBounds are the upper bounds of the replication fan-out histogram
// buckets (copies per DATA packet); the last bucket is +Inf.
var FanoutBounds = [...]float64{1, 2, 4, 8, 16, 32, 64, 128, 256}

// PortCounters count one port's traffic as seen by one core.
type PortCounters struct {
	RxPackets, RxBytes atomic.Uint64
	TxPackets, TxBytes atomic.Uint64
	_                  [32]byte // keep neighbouring ports off one cache line
}

// CoreCounters are one worker's counters.
type CoreCounters struct {
	Drops [NumDropReasons]atomic.Uint64
	Ports []PortCounters
	// Fanout is a histogram of copies per forwarded DATA packet:
	// FanoutBuckets[i] counts packets with fan-out <= FanoutBounds[i]
	// (non-cumulative; the collector accumulates), the last one the rest.
	FanoutBuckets [len(FanoutBounds) + 1]atomic.Uint64
	FanoutSum     atomic.Uint64
	// Polls counts loop iterations; Sleeps counts adaptive-mode blocks.
	Polls, Sleeps atomic.Uint64
	// Feedback counts feedback packets by SMH type and action (FbIn ...).
	Feedback [headers.TypeABORT + 1][NumFbActions]atomic.Uint64
	// StreamsEvicted counts aggregation state dropped for lack of room.
	StreamsEvicted atomic.Uint64
}

// NewCoreCounters returns counters for a worker on a switch with nports ports.
func NewCoreCounters(nports int) *CoreCounters {
	return &CoreCounters{Ports: make([]PortCounters, nports)}
}

// inc adds n to a single-writer counter with a load and a store, not a
// read-modify-write. The store is still an XCHG on amd64 (an implicitly
// locked instruction, some 20 cycles), so counts that change per packet are
// kept in plain fields and published once per round (fanoutTally).
func inc(c *atomic.Uint64, n uint64) { c.Store(c.Load() + n) }

func (c *CoreCounters) drop(r DropReason, n uint64) { inc(&c.Drops[r], n) }

// fanoutTally is a worker's fan-out histogram since its last publication:
// plain adds per packet, published to the CoreCounters once per round.
type fanoutTally struct {
	buckets [len(FanoutBounds) + 1]uint64
	sum     uint64
}

// add counts one packet of fan-out n in histogram bucket b (fanoutBucket).
func (t *fanoutTally) add(b, n int) {
	t.buckets[b]++
	t.sum += uint64(n)
}

// publish adds the tally to c and clears it.
func (t *fanoutTally) publish(c *CoreCounters) {
	if t.sum == 0 {
		return
	}
	for i, v := range t.buckets {
		if v != 0 {
			inc(&c.FanoutBuckets[i], v)
			t.buckets[i] = 0
		}
	}
	inc(&c.FanoutSum, t.sum)
	t.sum = 0
}

// fanoutBucket is the histogram bucket of a fan-out of n.
func fanoutBucket(n int) int {
	i := 0
	for i < len(FanoutBounds) && float64(n) > FanoutBounds[i] {
		i++
	}
	return i
}
