// Package perf holds sparsecast's benchmark harnesses: each runs the real
// switch code under a measured load and reports rates as JSON-ready structs.
// Speed claims in README come from these, never from timed unit tests.
package perf

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/sparsecast/sparsecast/dataplane"
)

// ReplicateOptions configure BenchReplicate.
type ReplicateOptions struct {
	Fanout  int
	Size    int
	Seconds float64
	// CPU pins the worker; -1 leaves it unpinned.
	CPU int
}

// ReplicateResult is what `sparsecast bench replicate --json` prints.
type ReplicateResult struct {
	Fanout         int     `json:"fanout"`
	Size           int     `json:"size"`
	Seconds        float64 `json:"seconds"`
	IngressPackets uint64  `json:"ingress_packets"`
	EgressPackets  uint64  `json:"egress_packets"`
	IngressMpps    float64 `json:"ingress_mpps"`
	EgressMpps     float64 `json:"egress_mpps"`
	EgressGbps     float64 `json:"egress_gbps"`
	NsPerPacket    float64 `json:"ns_per_packet"`
	NsPerCopy      float64 `json:"ns_per_copy"`
	// AllocsPerPacket is measured as testing.AllocsPerRun does: the worker's
	// round (rx, parse, replicate, tx) run on the calling goroutine, with
	// the heap's allocation count read around it.
	AllocsPerPacket float64 `json:"allocs_per_packet"`
	// ProcessAllocsPerPacket divides every allocation the process made
	// during the timed window (the Go runtime's own included, a few a
	// second) by the packets of that window.
	ProcessAllocsPerPacket float64 `json:"process_allocs_per_packet"`
	CPU                    int     `json:"cpu"`
}

// BenchReplicate runs the replication pipeline (rx, parse, replicate, tx)
// over a generator port and fanout sink ports, busy-polling on one pinned
// core, and measures the steady state: counters and the heap's allocation
// count are read after a warm-up and again before the stop, so start-up
// allocations are not charged to packets.
func BenchReplicate(ctx context.Context, o ReplicateOptions) (*ReplicateResult, error) {
	b, err := dataplane.NewBenchSwitch(o.Fanout, o.Size, dataplane.PollBusy, o.CPU)
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()

	// The window opens once copies flow (the worker may take a while to
	// start on a loaded machine: a window opened before would measure its
	// start-up), then after a short warm-up.
	if err := waitFor(ctx, 10*time.Second, func() bool { return egress(b) > 0 }); err != nil {
		stop()
		<-done
		return nil, fmt.Errorf("bench replicate: no copies came out of the switch within 10s: %w", err)
	}
	warm := time.Duration(min(o.Seconds/5, 0.5) * float64(time.Second))
	time.Sleep(warm)
	var m0, m1 runtime.MemStats
	// Everything the harness itself allocates (the timer, the context's
	// channel) is made before the first reading, so the window counts the
	// worker alone.
	timer := time.NewTimer(time.Duration(o.Seconds * float64(time.Second)))
	defer timer.Stop()
	cancelled := ctx.Done()
	in0, out0 := b.Generator.Generated.Load(), egress(b)
	runtime.ReadMemStats(&m0)
	t0 := time.Now()
	select {
	case <-timer.C:
	case <-cancelled:
	}
	runtime.ReadMemStats(&m1)
	el := time.Since(t0)
	in1, out1 := b.Generator.Generated.Load(), egress(b)
	stop()
	if err := <-done; err != nil {
		return nil, err
	}
	in, out := in1-in0, out1-out0
	r := &ReplicateResult{
		Fanout: o.Fanout, Size: o.Size, Seconds: el.Seconds(), CPU: o.CPU,
		IngressPackets: in, EgressPackets: out,
		IngressMpps: float64(in) / el.Seconds() / 1e6,
		EgressMpps:  float64(out) / el.Seconds() / 1e6,
		EgressGbps:  float64(out) * float64(o.Size) * 8 / el.Seconds() / 1e9,
	}
	if in > 0 {
		r.NsPerPacket = float64(el.Nanoseconds()) / float64(in)
		r.ProcessAllocsPerPacket = float64(m1.Mallocs-m0.Mallocs) / float64(in)
	}
	r.AllocsPerPacket = stepAllocs(b)
	if out > 0 {
		r.NsPerCopy = float64(el.Nanoseconds()) / float64(out)
	}
	return r, nil
}

func egress(b *dataplane.BenchSwitch) uint64 {
	var n uint64
	for _, s := range b.Sinks {
		n += s.Packets.Load()
	}
	return n
}

// stepAllocs runs the stopped switch's worker for a few thousand rounds on
// this goroutine and returns heap allocations per packet.
func stepAllocs(b *dataplane.BenchSwitch) float64 {
	b.Step() // warm
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	pkts := 0
	for i := 0; i < 4096; i++ {
		pkts += b.Step()
	}
	runtime.ReadMemStats(&m1)
	if pkts == 0 {
		return 0
	}
	return float64(m1.Mallocs-m0.Mallocs) / float64(pkts)
}
