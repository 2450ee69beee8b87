package perf

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/dpdkport"
)

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-6*math.Abs(want) }

// TestCoresFor checks the arithmetic against numbers worked out by hand:
// 400e9 b/s / ((4096+20) * 8 b) = 12,147,716.2 frames/s on the wire;
// / 9 copies = 1,349,746.2 ingress packets/s; * 731 ns = 0.98666 cores.
func TestCoresFor(t *testing.T) {
	c, err := CoresFor(400, 4096, 9, 731)
	if err != nil {
		t.Fatal(err)
	}
	if c.WireBytes != 4116 {
		t.Errorf("wire bytes %d, want 4116", c.WireBytes)
	}
	if !near(c.EgressMpps, 12.14771623) || !near(c.IngressMpps, 1.349746248) || !near(c.Cores, 0.98666451) {
		t.Errorf("got %+v, want 12.1477 Mpps egress, 1.34975 Mpps ingress, 0.98666 cores", c)
	}
	if c.WholeCores != 1 {
		t.Errorf("whole cores %d, want 1", c.WholeCores)
	}
	// 64-byte frames at fan-out 1 and 100 GbE: the textbook 148.8 Mpps,
	// here at 10 ns each: 1.488 cores, 2 whole.
	c, err = CoresFor(100, 64, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !near(c.EgressMpps, 148.80952381) || c.IngressMpps != c.EgressMpps || !near(c.Cores, 1.4880952381) || c.WholeCores != 2 {
		t.Errorf("100 GbE of 64-byte frames: %+v", c)
	}
	for _, bad := range []struct {
		gbps      float64
		size, k   int
		nsPerPkt  float64
		wantInMsg string
	}{
		{0, 4096, 9, 731, "line rate"},
		{math.NaN(), 4096, 9, 731, "line rate"},
		{math.Inf(1), 4096, 9, 731, "line rate"},
		{400, 0, 9, 731, "frame size"},
		{400, 4096, 0, 731, "fan-out"},
		{400, 4096, 9, 0, "ns per packet"},
		{400, 4096, 9, math.NaN(), "ns per packet"},
		{400, 4096, 9, -5, "ns per packet"},
	} {
		if _, err := CoresFor(bad.gbps, bad.size, bad.k, bad.nsPerPkt); err == nil || !strings.Contains(err.Error(), bad.wantInMsg) {
			t.Errorf("CoresFor(%v, %d, %d, %v): error %v, want one about %s", bad.gbps, bad.size, bad.k, bad.nsPerPkt, err, bad.wantInMsg)
		}
	}
}

func TestWriteSweepCSV(t *testing.T) {
	points := []SweepPoint{
		{Backend: "mem", Fanout: 1, Size: 64, IngressMpps: 5.58812, EgressMpps: 5.58812, EgressGbps: 2.861117, NsPerPacket: 178.96, NsPerCopy: 178.96},
		{Backend: "mem", Fanout: 9, Size: 64, Skipped: "too small"},
		{Backend: "mem", Fanout: 9, Size: 4096, IngressMpps: 1.0345, EgressMpps: 9.3105, EgressGbps: 305.0864, NsPerPacket: 966.66, NsPerCopy: 107.4},
	}
	var b bytes.Buffer
	if err := WriteSweepCSV(&b, points); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"backend", "fanout", "size", "ingress_mpps", "egress_mpps", "egress_gbps", "ns_per_packet", "ns_per_copy"},
		{"mem", "1", "64", "5.5881", "5.5881", "2.861", "179.0", "179.0"},
		{"mem", "9", "4096", "1.0345", "9.3105", "305.086", "966.7", "107.4"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d (header and the two measured points):\n%v", len(rows), len(want), rows)
	}
	for i := range want {
		if strings.Join(rows[i], ",") != strings.Join(want[i], ",") {
			t.Errorf("row %d: %v, want %v", i, rows[i], want[i])
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), -1} {
		bad := []SweepPoint{{Backend: "mem", Fanout: 1, Size: 64, EgressMpps: v}}
		if err := WriteSweepCSV(&bytes.Buffer{}, bad); err == nil {
			t.Errorf("egress %v written", v)
		}
	}
}

// TestMinFrame holds MinFrame to what the bench switch itself accepts.
func TestMinFrame(t *testing.T) {
	for _, k := range []int{1, 9, 64} {
		m := MinFrame(k)
		if _, err := dataplane.NewBenchSwitch(k, m, dataplane.PollBusy, -1); err != nil {
			t.Errorf("fan-out %d: MinFrame %d refused: %v", k, m, err)
		}
		if _, err := dataplane.NewBenchSwitch(k, m-1, dataplane.PollBusy, -1); err == nil {
			t.Errorf("fan-out %d: %d bytes accepted, below MinFrame %d", k, m-1, m)
		}
	}
}

func TestSweepOptionsRefused(t *testing.T) {
	good := SweepOptions{Backend: BackendMem, SecondsPerPoint: 0.5, CPU: -1}
	for name, change := range map[string]func(*SweepOptions){
		"backend":   func(o *SweepOptions) { o.Backend = "xdp" },
		"seconds 0": func(o *SweepOptions) { o.SecondsPerPoint = 0 },
		"seconds":   func(o *SweepOptions) { o.SecondsPerPoint = math.NaN() },
		"cpu":       func(o *SweepOptions) { o.CPU = 4096 },
		"cpu -2":    func(o *SweepOptions) { o.CPU = -2 },
		"fan-out":   func(o *SweepOptions) { o.Fanouts = []int{1, 0} },
		"size":      func(o *SweepOptions) { o.Sizes = []int{20} },
		"jumbo":     func(o *SweepOptions) { o.Sizes = []int{100000} },
	} {
		o := good
		change(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%s: %+v accepted", name, o)
		}
	}
	o := good
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(o.Fanouts) != len(SweepFanouts) || len(o.Sizes) != len(SweepSizes) {
		t.Errorf("defaults not filled in: %+v", o)
	}
	if !dpdkport.Built {
		o := good
		o.Backend, o.CPU = BackendDPDK, 0
		if err := o.Validate(); !errors.Is(err, dpdkport.ErrNotBuilt) {
			t.Errorf("dpdk backend without DPDK: %v", err)
		}
	}
}

// TestSweepMem runs a small grid: a point too small for its header is
// skipped, the others replicate fan-out copies each, and the target point
// gives a core count consistent with its own measurement.
func TestSweepMem(t *testing.T) {
	var seen int
	r, err := Sweep(context.Background(), SweepOptions{Backend: BackendMem, Fanouts: []int{1, 9}, Sizes: []int{64, 4096},
		SecondsPerPoint: 0.15, CPU: -1, Progress: func(SweepPoint) { seen++ }})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Points) != 4 || seen != 4 {
		t.Fatalf("%d points, %d progress calls, want 4: %+v", len(r.Points), seen, r.Points)
	}
	for _, p := range r.Points {
		small := p.Fanout == 9 && p.Size == 64
		if small != (p.Skipped != "") {
			t.Errorf("point %+v: skipped %q", p, p.Skipped)
		}
		if small {
			continue
		}
		if p.IngressMpps <= 0 || p.NsPerPacket <= 0 {
			t.Errorf("point %+v: no traffic", p)
		}
		if ratio := p.EgressMpps / p.IngressMpps; math.Abs(ratio-float64(p.Fanout)) > 0.05*float64(p.Fanout) {
			t.Errorf("point %+v: %.2f copies per packet, want %d", p, ratio, p.Fanout)
		}
		if want := p.EgressMpps * float64(p.Size) * 8 / 1e3; !near(p.EgressGbps, want) {
			t.Errorf("point %+v: %v Gb/s, want %v", p, p.EgressGbps, want)
		}
	}
	p, ok := r.Point(9, 4096)
	if !ok || r.Cores == nil {
		t.Fatalf("no target point or no cores: %+v", r)
	}
	want, _ := CoresFor(400, 4096, 9, p.NsPerPacket)
	if !near(r.Cores.Cores, want.Cores) {
		t.Errorf("cores %v, want %v", r.Cores.Cores, want.Cores)
	}
	var md bytes.Buffer
	if err := WriteSweepMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"| fan-out | 64 B | 4096 B |", "| 9 | - |", "cores**", "4096 + 20"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q:\n%s", s, md.String())
		}
	}
	png := filepath.Join(t.TempDir(), "sweep.png")
	if err := PlotSweep(png, r); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n")) {
		t.Errorf("plot: %v, %.8q", err, b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Sweep(ctx, SweepOptions{Backend: BackendMem, SecondsPerPoint: 0.1, CPU: -1}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled sweep: %v", err)
	}
}
