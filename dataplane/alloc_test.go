package dataplane

import (
	"fmt"
	"testing"

	"github.com/sparsecast/sparsecast/headers"
)

// benchSwitch is a switch with a generator on port 0 sending to k receivers,
// each behind its own sink port.
func benchSwitch(tb testing.TB, k, size int) (*Switch, *Worker) {
	tb.Helper()
	cfg := &Config{Name: "bench", PollMode: PollBusy}
	cfg.Ports = append(cfg.Ports, PortConfig{Name: "in", Type: "mem"})
	ids := make([]uint16, k)
	for i := 0; i < k; i++ {
		// Spread receivers so the list encoding is used, as for random sets.
		ids[i] = uint16(1 + i*97)
		name := fmt.Sprintf("out%d", i)
		cfg.Ports = append(cfg.Ports, PortConfig{Name: name, Type: "mem", NeighborMAC: "02:00:00:00:00:01", NeighborIP: "10.1.0.2"})
		cfg.Routes = append(cfg.Routes, RouteEntry{Receivers: fmt.Sprint(ids[i]), Port: name})
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	payload := make([]byte, max(size-14-20-8-headers.HeaderLenFor(headers.TypeData, ids), 0))
	frame := buildFrame(tb, frameOpts{fields: headers.Fields{HopLimit: 9, SessionID: 1}, ids: ids, payload: payload})
	ports := []Port{NewGeneratorPort("in", [][]byte{frame})}
	for i := 0; i < k; i++ {
		ports = append(ports, NewSinkPort(fmt.Sprintf("out%d", i)))
	}
	t, err := TablesFromConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	sw, err := NewSwitch(cfg, ports, t)
	if err != nil {
		tb.Fatal(err)
	}
	return sw, sw.workers[0]
}

// TestSteadyStateDoesNotAllocate guards the hot path: a whole round (rx,
// parse, replicate, tx) allocates nothing once running.
func TestSteadyStateDoesNotAllocate(t *testing.T) {
	for _, k := range []int{1, 9, 64} {
		_, w := benchSwitch(t, k, 256)
		w.poll()
		w.flush()
		if a := testing.AllocsPerRun(200, func() { w.poll(); w.flush() }); a != 0 {
			t.Errorf("k=%d: %v allocations per burst", k, a)
		}
	}
}

func BenchmarkReplicate(b *testing.B) {
	for _, k := range []int{1, 9, 64} {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			_, w := benchSwitch(b, k, 256)
			b.ReportAllocs()
			b.ResetTimer()
			pkts := 0
			for pkts < b.N {
				pkts += w.poll()
				w.flush()
			}
			b.ReportMetric(float64(k), "copies/op")
		})
	}
}
