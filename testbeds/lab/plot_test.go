package lab

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/dataplane/endpoint"
)

// syntheticProgress is two receivers sampled every 100 ms for 3 s at about
// 8 Mb/s, the second stalling for 500 ms after 1.5 s.
func syntheticProgress() []ReceiverProgress {
	rs := []ReceiverProgress{{Host: "r1", ID: 1}, {Host: "r2", ID: 2}}
	var b1, b2 uint64
	for i := 0; i <= 30; i++ {
		at := time.Duration(i) * 100 * time.Millisecond
		rs[0].Samples = append(rs[0].Samples, ProgressSample{At: at, Bytes: b1})
		rs[1].Samples = append(rs[1].Samples, ProgressSample{At: at, Bytes: b2})
		b1 += 100_000
		if at < 1500*time.Millisecond || at >= 2*time.Second {
			b2 += 100_000
		}
	}
	return rs
}

// checkPNG fails unless path holds a decodable, non-empty PNG.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Fatalf("%s: %v: too small for a plot", path, b)
	}
}

func TestPlotProgress(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name   string
		failAt time.Duration
		label  string
	}{
		{"no-failure", 0, ""},
		{"failure", 1500 * time.Millisecond, "link spine1:p2 down"},
	} {
		path := filepath.Join(dir, c.name+".png")
		if err := PlotProgress(path, "checkpoint "+c.name, syntheticProgress(), c.failAt, c.label); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		checkPNG(t, path)
	}
}

func TestPlotProgressNothingToDraw(t *testing.T) {
	dir := t.TempDir()
	for name, rs := range map[string][]ReceiverProgress{
		"nil":           nil,
		"no samples":    {{Host: "r1", ID: 1}},
		"one sample":    {{Host: "r1", ID: 1, Samples: []ProgressSample{{At: 0, Bytes: 0}}}},
		"no time moves": {{Host: "r1", ID: 1, Samples: []ProgressSample{{At: time.Second, Bytes: 0}, {At: time.Second, Bytes: 10}}}},
	} {
		path := filepath.Join(dir, "empty.png")
		if err := PlotProgress(path, "empty", rs, 0, ""); err == nil {
			t.Errorf("%s: no error for empty input", name)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s: a PNG was written for empty input", name)
		}
	}
}

func TestPlotStream(t *testing.T) {
	// 3,000 packets at 1,000 pps; receiver 2 loses 100 after 1.5 s.
	res := &StreamResult{Sent: 3000, PPS: 1000, Receivers: map[uint16]ReceiverCount{}}
	for id := uint16(1); id <= 2; id++ {
		s := &endpoint.SeqSet{}
		for q := uint32(0); q < 3000; q++ {
			if id == 2 && q >= 1500 && q < 1600 {
				continue
			}
			s.Add(q)
		}
		res.Receivers[id] = ReceiverCount{Received: s.Len(), Seqs: s}
	}
	path := filepath.Join(t.TempDir(), "failover.png")
	if err := PlotStream(path, "failover", res, 1000, 1500*time.Millisecond, map[uint16]bool{2: true}); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, path)
	if err := PlotStream(path, "failover", &StreamResult{}, 1000, 0, nil); err == nil {
		t.Error("no error for an empty stream")
	}
}

func TestFoldShortTail(t *testing.T) {
	ms := func(at ...int) []ProgressSample {
		var s []ProgressSample
		for _, a := range at {
			s = append(s, ProgressSample{At: time.Duration(a) * time.Millisecond, Bytes: uint64(a)})
		}
		return s
	}
	for _, c := range []struct{ in, want []ProgressSample }{
		{ms(0, 100, 200, 203), ms(0, 100, 203)},
		{ms(0, 100, 200, 260), ms(0, 100, 200, 260)},
		{ms(0, 3), ms(0, 3)},
	} {
		in := append([]ProgressSample(nil), c.in...)
		got := foldShortTail(c.in)
		if len(got) != len(c.want) {
			t.Errorf("%v: got %v, want %v", in, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%v: got %v, want %v", in, got, c.want)
			}
		}
		for i := range in {
			if c.in[i] != in[i] {
				t.Errorf("%v: the input was changed", in)
			}
		}
	}
}

func TestRxBytes(t *testing.T) {
	netdev := []byte(`Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 4194304    3000    0    0    0     0          0         0     1234      10    0    0    0     0       0          0
`)
	if n, err := rxBytes(netdev, "eth0"); err != nil || n != 4194304 {
		t.Errorf("eth0: %d, %v", n, err)
	}
	if n, err := rxBytes(netdev, "lo"); err != nil || n != 0 {
		t.Errorf("lo: %d, %v", n, err)
	}
	if _, err := rxBytes(netdev, "eth1"); err == nil {
		t.Error("no error for a missing interface")
	}
}

// TestProgressRecorder samples this process's own namespace: the samples
// start at 0, grow in time and never go down.
func TestProgressRecorder(t *testing.T) {
	if _, err := os.Stat("/proc/self/net/dev"); err != nil {
		t.Skip("no /proc/net/dev")
	}
	rec := startProgress([]progressTarget{{host: "self", id: 1, pid: os.Getpid(), dev: "lo"}}, 10*time.Millisecond)
	time.Sleep(60 * time.Millisecond)
	rs := rec.Stop()
	rec.Stop() // twice is fine
	if len(rs) != 1 || len(rs[0].Samples) < 3 {
		t.Fatalf("samples %+v", rs)
	}
	s := rs[0].Samples
	if s[0].Bytes != 0 {
		t.Errorf("first sample %+v: want 0 bytes", s[0])
	}
	for i := 1; i < len(s); i++ {
		if s[i].At < s[i-1].At || s[i].Bytes < s[i-1].Bytes {
			t.Errorf("sample %d %+v after %+v", i, s[i], s[i-1])
		}
	}
}
