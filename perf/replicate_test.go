package perf

import (
	"context"
	"testing"
)

func TestBenchReplicateCountsEveryCopy(t *testing.T) {
	r, err := BenchReplicate(context.Background(), ReplicateOptions{Fanout: 4, Size: 128, Seconds: 0.3, CPU: -1})
	if err != nil {
		t.Fatal(err)
	}
	if r.IngressPackets == 0 {
		t.Fatal("no packets")
	}
	// Counters are read while the worker runs, so a burst may sit between
	// the generator's count and the sinks'.
	if diff := int64(r.EgressPackets) - 4*int64(r.IngressPackets); diff < -4*64 || diff > 4*64 {
		t.Fatalf("egress %d for ingress %d at fan-out 4", r.EgressPackets, r.IngressPackets)
	}
	if r.AllocsPerPacket != 0 {
		t.Fatalf("%v allocations per packet", r.AllocsPerPacket)
	}
	if _, err := BenchReplicate(context.Background(), ReplicateOptions{Fanout: 0, Size: 128, Seconds: 0.1, CPU: -1}); err == nil {
		t.Fatal("fan-out 0 accepted")
	}
	if _, err := BenchReplicate(context.Background(), ReplicateOptions{Fanout: 9, Size: 20, Seconds: 0.1, CPU: -1}); err == nil {
		t.Fatal("a frame smaller than its headers accepted")
	}
}
