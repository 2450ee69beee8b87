package perf

import (
	"context"
	"path/filepath"
	"testing"
)

func TestBenchControl(t *testing.T) {
	dir := t.TempDir()
	r, err := BenchControl(context.Background(), ControlOptions{Updates: 300, Receivers: 8, CPU: -1, ShmDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if r.Applied != 300 || r.Groups != 38 || r.Rejected != 0 {
		t.Fatalf("%+v", r)
	}
	// Latencies are positive and ordered; the API path includes the push.
	if r.UpdateP50Us <= 0 || r.UpdateP99Us < r.UpdateP50Us || r.UpdateMaxUs < r.UpdateP99Us || r.APIP50Us < r.UpdateP50Us {
		t.Fatalf("latencies %+v", r)
	}
	// Nothing is left behind.
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	for _, bad := range []ControlOptions{{Updates: -1}, {Receivers: 255}, {CPU: -2}, {ShmDir: filepath.Join(dir, "missing")}} {
		if _, err := BenchControl(context.Background(), bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
