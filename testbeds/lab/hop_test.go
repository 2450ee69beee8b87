package lab

import (
	"testing"
	"time"
)

// A departure is timed against its frame's first arrival, once; departures
// of frames never seen arriving, or seen before they arrived, are not.
func TestHopWatchPairs(t *testing.T) {
	h := &hopWatch{in: map[uint64]int64{}}
	h.arrived(1, 1000)
	h.arrived(1, 5000) // the same frame again, on another port: the first counts
	h.arrived(2, 2000)
	h.departed(1, 3000)
	h.departed(1, 9000) // a second copy out: not timed again
	h.departed(3, 4000) // never arrived
	h.departed(2, 1500) // before its arrival: a clock mix-up, not a time
	h.departed(2, 2500)
	got := h.Latencies()
	want := []time.Duration{500, 2000}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("latencies %v, want %v", got, want)
	}
	for k := range uint64(hopKeys + 10) {
		h.arrived(100+k, 1)
	}
	if len(h.in) != hopKeys {
		t.Fatalf("%d arrivals kept, want at most %d", len(h.in), hopKeys)
	}
}
