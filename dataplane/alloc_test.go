package dataplane

import (
	"fmt"
	"testing"
)

// TestSteadyStateDoesNotAllocate guards the hot path: a whole round (rx,
// parse, replicate, tx) allocates nothing once running.
func TestSteadyStateDoesNotAllocate(t *testing.T) {
	for _, k := range []int{1, 9, 64} {
		b, err := NewBenchSwitch(k, 256, PollBusy, -1)
		if err != nil {
			t.Fatal(err)
		}
		b.Step()
		if a := testing.AllocsPerRun(200, func() { b.Step() }); a != 0 {
			t.Errorf("k=%d: %v allocations per burst", k, a)
		}
		if got, want := b.Sinks[k-1].Packets.Load(), b.Generator.Generated.Load(); got != want {
			t.Errorf("k=%d: last sink got %d of %d packets", k, got, want)
		}
	}
}

func BenchmarkReplicate(b *testing.B) {
	for _, k := range []int{1, 9, 64} {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			s, err := NewBenchSwitch(k, 256, PollBusy, -1)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for pkts := 0; pkts < b.N; {
				pkts += s.Step()
			}
			b.ReportMetric(float64(k), "copies/op")
		})
	}
}
