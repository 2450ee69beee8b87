package dataplane

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// largeConfig is a switch config of about size bytes: 64 ports and as many
// route entries as fit, each a receiver range (the shape of a big fabric's
// generated config, issue 14: 50 MB, 1.7 M routes).
func largeConfig(size int) []byte {
	var b bytes.Buffer
	b.WriteString("name: big\nports:\n")
	for p := range 64 {
		fmt.Fprintf(&b, "  - {name: p%d, type: mem}\n", p)
	}
	b.WriteString("routes:\n")
	for i := 0; b.Len() < size; i++ {
		id := 1 + i%65000
		fmt.Fprintf(&b, "  - {receivers: \"%d\", port: p%d, backup: p%d}\n", id, id%64, (id+1)%64)
	}
	return b.Bytes()
}

func loadLarge(tb testing.TB, data []byte) (time.Duration, uint64) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	c, err := ParseConfig(data)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := TablesFromConfig(c); err != nil {
		tb.Fatal(err)
	}
	d := time.Since(t0)
	runtime.ReadMemStats(&after)
	return d, after.TotalAlloc - before.TotalAlloc
}

// TestLargeConfigLinear: what loading a config allocates grows linearly
// with its size (4x the size, at most 5x the bytes: a quadratic step shows
// as 16x). Allocation, not time, so that a loaded machine cannot flake it;
// BenchmarkLargeConfig gives the time.
func TestLargeConfigLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	small, big := largeConfig(1<<20), largeConfig(4<<20)
	ds, ms := loadLarge(t, small)
	db, mb := loadLarge(t, big)
	t.Logf("%d bytes: %v, %d MB allocated; %d bytes: %v, %d MB allocated", len(small), ds, ms>>20, len(big), db, mb>>20)
	if mb > 5*ms {
		t.Errorf("4x the config allocated %.1fx the bytes", float64(mb)/float64(ms))
	}
}

func BenchmarkLargeConfig(b *testing.B) {
	data := largeConfig(4 << 20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		loadLarge(b, data)
	}
}
