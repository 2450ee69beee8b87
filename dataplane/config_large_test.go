package dataplane

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// A large config's shapes: the same route entries as a YAML list in the
// one-line flow form and in block form (both read by the routes: line
// parser), the flow-form list through yaml.v3 alone (what every list took
// before: the baseline), and a routes file beside a small YAML config.
const (
	largeYAML      = "yaml_flow"
	largeYAMLBlock = "yaml_block"
	largeYAMLv3    = "yaml_v3"
	largeRoutesFn  = "routes_file"
)

// largeConfig is a switch config of about size bytes: 64 ports and as many
// route entries as fit, each a receiver range (the shape of a big fabric's
// generated config, issue 14: 50 MB, 1.7 M routes).
func largeConfig(size int) []byte {
	return largeList(size, "  - {receivers: \"%d\", port: p%d, backup: p%d}\n")
}

// largeList is largeConfig with each entry in format.
func largeList(size int, format string) []byte {
	var b bytes.Buffer
	largeHeader(&b)
	b.WriteString("routes:\n")
	for i := 0; b.Len() < size; i++ {
		id := 1 + i%65000
		fmt.Fprintf(&b, format, id, id%64, (id+1)%64)
	}
	return b.Bytes()
}

func largeHeader(b *bytes.Buffer) {
	b.WriteString("name: big\nports:\n")
	for p := range 64 {
		fmt.Fprintf(b, "  - {name: p%d, type: mem}\n", p)
	}
}

// largeRoutesFile is a routes file of about size bytes with largeConfig's
// entries, one "RECEIVERS PORT BACKUP" line each, and the config naming it.
func largeRoutesFile(size int) (config, routes []byte) {
	var c, r bytes.Buffer
	largeHeader(&c)
	c.WriteString("routes_file: routes.txt\n")
	for i := 0; r.Len() < size; i++ {
		id := 1 + i%65000
		fmt.Fprintf(&r, "%d p%d p%d\n", id, id%64, (id+1)%64)
	}
	return c.Bytes(), r.Bytes()
}

// writeLarge writes a config of about size bytes in one of the shapes into
// dir and returns its path: the routes file's size is what counts there.
func writeLarge(tb testing.TB, dir, shape string, size int) string {
	path := filepath.Join(dir, shape+".yaml")
	data := largeConfig(size)
	switch shape {
	case largeYAMLBlock:
		data = largeList(size, "  - receivers: \"%d\"\n    port: p%d\n    backup: p%d\n")
	case largeRoutesFn:
		var routes []byte
		data, routes = largeRoutesFile(size)
		if err := os.WriteFile(filepath.Join(dir, "routes.txt"), routes, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// loadLarge loads a config file as the switch does (LoadConfig, then its
// tables) and returns the time, the bytes allocated and the route entries.
func loadLarge(tb testing.TB, path, shape string) (time.Duration, uint64, int) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	var c *Config
	var err error
	if shape == largeYAMLv3 {
		var data []byte
		if data, err = os.ReadFile(path); err == nil {
			c, err = decodeConfig(data, path, false)
		}
	} else {
		c, err = LoadConfig(path)
	}
	if err != nil {
		tb.Fatal(err)
	}
	t, err := TablesFromConfig(c)
	if err != nil {
		tb.Fatal(err)
	}
	d := time.Since(t0)
	runtime.ReadMemStats(&after)
	if want := min(c.RouteEntries(), 65000); t.Routes.Len() != want {
		tb.Fatalf("%s: %d receivers routed, want %d", shape, t.Routes.Len(), want)
	}
	return d, after.TotalAlloc - before.TotalAlloc, c.RouteEntries()
}

// TestLargeConfigLinear: what loading a config allocates grows linearly
// with its size (4x the size, at most 5x the bytes: a quadratic step shows
// as 16x), in every shape; and the compact shapes allocate at most 48 bytes
// per route entry besides the YAML file's bytes and 1 MiB (a span is 16;
// yaml.v3 takes about 2 KB), so no per-line string or node creeps back in. Allocation, not time, so that a loaded
// machine cannot flake it; BenchmarkLargeConfig gives the time.
func TestLargeConfigLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dir := t.TempDir()
	for _, shape := range []string{largeYAML, largeYAMLBlock, largeRoutesFn, largeYAMLv3} {
		t.Run(shape, func(t *testing.T) {
			_, ms, ns := loadLarge(t, writeLarge(t, dir, shape, 1<<20), shape)
			path := writeLarge(t, dir, shape, 4<<20)
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			db, mb, nb := loadLarge(t, path, shape)
			t.Logf("1 MiB: %d entries, %d KiB allocated; 4 MiB: %d entries, %v, %d KiB allocated (%.0f B/entry)",
				ns, ms>>10, nb, db, mb>>10, float64(mb)/float64(nb))
			if mb > 5*ms {
				t.Errorf("4x the config allocated %.1fx the bytes", float64(mb)/float64(ms))
			}
			// LoadConfig reads the YAML file whole (not a routes file).
			if extra := int64(mb) - st.Size() - 1<<20; shape != largeYAMLv3 && extra > 48*int64(nb) {
				t.Errorf("%d entries allocated %d bytes besides the %d of the YAML file: %.0f per entry, want at most 48",
					nb, mb, st.Size(), float64(extra)/float64(nb))
			}
		})
	}
}

// BenchmarkLargeConfig loads a 50 MB config (1.7 M route entries; the size
// issue 14 names; LARGE_CONFIG_MB=N for another) in each shape, and reports
// against the yaml.v3 baseline, measured once in the same run: the same
// flow-form list through yaml.v3 alone, which is how every config loaded
// before (yaml_v3_s, yaml_v3_alloc_MB). x_faster and x_less_alloc are the
// baseline's time and allocation over the shape's.
func BenchmarkLargeConfig(b *testing.B) {
	size := 50 << 20
	if v := os.Getenv("LARGE_CONFIG_MB"); v != "" {
		var mb int
		if _, err := fmt.Sscan(v, &mb); err != nil || mb < 1 {
			b.Fatalf("LARGE_CONFIG_MB=%q: want a number of MB", v)
		}
		size = mb << 20
	}
	dir := b.TempDir()
	var (
		once         sync.Once
		baseT        time.Duration
		baseA        uint64
		baseEntries  int
		baselineFile = writeLarge(b, dir, largeYAMLv3, size)
	)
	baseline := func() {
		once.Do(func() { baseT, baseA, baseEntries = loadLarge(b, baselineFile, largeYAMLv3) })
	}
	for _, shape := range []string{largeYAML, largeYAMLBlock, largeRoutesFn} {
		b.Run(shape, func(b *testing.B) {
			path := writeLarge(b, dir, shape, size)
			st, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			if shape == largeRoutesFn {
				st, _ = os.Stat(filepath.Join(dir, "routes.txt"))
			}
			b.SetBytes(st.Size())
			baseline()
			var d time.Duration
			var alloc uint64
			var entries int
			n := 0
			for b.Loop() {
				dt, a, e := loadLarge(b, path, shape)
				d, alloc, entries, n = d+dt, alloc+a, e, n+1
			}
			b.ReportMetric(float64(entries), "entries")
			b.ReportMetric(float64(alloc)/float64(n)/(1<<20), "alloc_MB/op")
			b.ReportMetric(float64(baseT)/(float64(d)/float64(n)), "x_faster")
			b.ReportMetric(float64(baseA)/(float64(alloc)/float64(n)), "x_less_alloc")
			b.ReportMetric(baseT.Seconds(), "yaml_v3_s")
			b.ReportMetric(float64(baseA)/(1<<20), "yaml_v3_alloc_MB")
			if shape == largeYAML && entries != baseEntries {
				b.Fatalf("%d entries, the baseline %d", entries, baseEntries)
			}
		})
	}
}
