// `sparsecast bench sweep`: the replication rate over a grid of fan-outs
// and frame sizes, in four steps:
//
//  1. Sweep runs one measurement per (size, fan-out) point, each a short
//     window on one pinned core: BenchReplicate over in-memory ports, or
//     (built with -tags dpdk) the DPDK net_null bench of dpdk.go;
//  2. CoresFor turns the point at fan-out 9, 4096 bytes into the cores 400
//     GbE of such packets needs;
//  3. WriteSweepCSV, PlotSweep and WriteSweepMarkdown write the results;
//  4. the command splices the markdown into README's performance section.
package perf

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sparsecast/sparsecast/dataplane/dpdkport"
	"github.com/sparsecast/sparsecast/headers"
)

// The default grid, and the question the sweep answers: how many cores 400
// GbE of 4 KiB packets at fan-out 9 (MoE top-9 dispatch) needs.
var (
	SweepFanouts = []int{1, 2, 4, 8, 9, 16, 32, 64}
	SweepSizes   = []int{64, 256, 1024, 4096}
)

const (
	TargetGbps   = 400
	TargetSize   = 4096
	TargetFanout = 9
	// WireOverhead is what every Ethernet frame costs on the wire beyond
	// its bytes: 7 bytes of preamble, 1 of start-of-frame delimiter and a
	// 12-byte inter-frame gap. A frame's size here counts its Ethernet
	// header; the FCS is taken as part of it.
	WireOverhead = 20
)

// Why a point is not measured: the start of SweepPoint.Skipped, which
// the markdown lists under the table.
const (
	SkipTooSmall = "the frame cannot hold the header for so many receivers"
	SkipPorts    = "more ports than this DPDK build allows"
)

// Backends Sweep knows.
const (
	BackendMem  = "mem"
	BackendDPDK = "dpdk"
)

// SweepOptions configure Sweep. Zero Fanouts and Sizes mean the defaults.
type SweepOptions struct {
	Backend         string
	Fanouts         []int
	Sizes           []int
	SecondsPerPoint float64
	// CPU pins the worker; -1 leaves it unpinned (mem backend only).
	CPU int
	// EAL overrides the DPDK backend's EAL arguments.
	EAL []string
	// HugeDir puts the DPDK backend's memory on the hugetlbfs mounted there
	// (without EAL; see DPDKOptions.HugeDir).
	HugeDir string
	// Progress, if set, is called after every point.
	Progress func(SweepPoint)
}

// SweepPoint is one measurement, a CSV row.
type SweepPoint struct {
	Backend     string  `json:"backend"`
	Fanout      int     `json:"fanout"`
	Size        int     `json:"size"`
	IngressMpps float64 `json:"ingress_mpps"`
	EgressMpps  float64 `json:"egress_mpps"`
	EgressGbps  float64 `json:"egress_gbps"`
	NsPerPacket float64 `json:"ns_per_packet"`
	NsPerCopy   float64 `json:"ns_per_copy"`
	// Skipped says why the point was not measured (a frame too small for
	// the header of so many receivers, a device limit).
	Skipped string `json:"skipped,omitempty"`
}

// SweepResult is what `sparsecast bench sweep --json` prints.
type SweepResult struct {
	Backend         string       `json:"backend"`
	SecondsPerPoint float64      `json:"seconds_per_point"`
	CPU             int          `json:"cpu"`
	NumCPU          int          `json:"num_cpu"`
	LoadAvgBefore   float64      `json:"loadavg_before"`
	LoadAvgAfter    float64      `json:"loadavg_after"`
	Seconds         float64      `json:"seconds"`
	Points          []SweepPoint `json:"points"`
	// Cores is set when the sweep measured the target point.
	Cores *Cores `json:"cores,omitempty"`
}

// Cores is the answer to "how many cores for LineGbps of FrameBytes
// packets at fan-out Fanout": the egress frame rate the line carries,
// divided by the copies each ingress packet makes, times the measured
// time per ingress packet.
type Cores struct {
	LineGbps     float64 `json:"line_gbps"`
	FrameBytes   int     `json:"frame_bytes"`
	WireBytes    int     `json:"wire_bytes"`
	Fanout       int     `json:"fanout"`
	EgressMpps   float64 `json:"egress_mpps"`
	IngressMpps  float64 `json:"ingress_mpps"`
	NsPerPacket  float64 `json:"ns_per_packet"`
	Cores        float64 `json:"cores"`
	WholeCores   int     `json:"whole_cores"`
	MeasuredFrom string  `json:"measured_from,omitempty"`
}

// CoresFor computes the cores lineGbps of frameBytes-byte frames at the
// given fan-out needs when one core spends nsPerPacket on each ingress
// packet (all its copies included).
func CoresFor(lineGbps float64, frameBytes, fanout int, nsPerPacket float64) (Cores, error) {
	switch {
	case !(lineGbps > 0) || math.IsInf(lineGbps, 0):
		return Cores{}, fmt.Errorf("line rate %v Gb/s: want a positive number", lineGbps)
	case frameBytes < 1:
		return Cores{}, fmt.Errorf("frame size %d: want at least 1 byte", frameBytes)
	case fanout < 1:
		return Cores{}, fmt.Errorf("fan-out %d: want at least 1", fanout)
	case !(nsPerPacket > 0) || math.IsInf(nsPerPacket, 0):
		return Cores{}, fmt.Errorf("%v ns per packet: want a positive measurement", nsPerPacket)
	}
	wire := frameBytes + WireOverhead
	egress := lineGbps * 1e9 / (float64(wire) * 8) // frames per second
	ingress := egress / float64(fanout)
	c := Cores{
		LineGbps: lineGbps, FrameBytes: frameBytes, WireBytes: wire, Fanout: fanout,
		EgressMpps: egress / 1e6, IngressMpps: ingress / 1e6, NsPerPacket: nsPerPacket,
		Cores: ingress * nsPerPacket / 1e9,
	}
	c.WholeCores = int(math.Ceil(c.Cores - 1e-9))
	return c, nil
}

// MinFrame is the smallest bench frame for fan-out receivers: Ethernet,
// IPv4, UDP and an SMH listing them. The benches spread their receivers
// over blocks (1, 98, 195, ...), so the set is an ID list.
func MinFrame(fanout int) int {
	ids := make([]uint16, fanout)
	for i := range ids {
		ids[i] = uint16(1 + i*97)
	}
	return 14 + 20 + 8 + headers.HeaderLenFor(headers.TypeData, ids)
}

// sweepDPDKPoint measures one point on DPDK; set by sweep_dpdk.go.
var sweepDPDKPoint func(ctx context.Context, o *SweepOptions, fanout, size, deviceBase int) (SweepPoint, error)

// Validate checks the options and fills in the defaults.
func (o *SweepOptions) Validate() error {
	if len(o.Fanouts) == 0 {
		o.Fanouts = SweepFanouts
	}
	if len(o.Sizes) == 0 {
		o.Sizes = SweepSizes
	}
	switch o.Backend {
	case BackendMem:
	case BackendDPDK:
		if sweepDPDKPoint == nil {
			return fmt.Errorf("backend dpdk: %w", dpdkport.ErrNotBuilt)
		}
		if o.CPU < 0 {
			return fmt.Errorf("cpu %d: the DPDK backend runs on a pinned core", o.CPU)
		}
	default:
		return fmt.Errorf("backend %q: want %s or %s", o.Backend, BackendMem, BackendDPDK)
	}
	if !(o.SecondsPerPoint > 0) || o.SecondsPerPoint > 60 {
		return fmt.Errorf("%v seconds per point: want more than 0 and at most 60", o.SecondsPerPoint)
	}
	if o.CPU < -1 || o.CPU >= runtime.NumCPU() {
		return fmt.Errorf("cpu %d: this machine has CPUs 0-%d (-1: unpinned)", o.CPU, runtime.NumCPU()-1)
	}
	for _, k := range o.Fanouts {
		if k < 1 || k > 254 {
			return fmt.Errorf("fan-out %d: want 1-254", k)
		}
	}
	for _, s := range o.Sizes {
		if s < 60 || s > 9000 {
			return fmt.Errorf("size %d: want 60-9000 bytes", s)
		}
	}
	return nil
}

// Sweep measures every (size, fan-out) point of the grid, one after
// another. Points whose frame cannot hold the header are reported as
// skipped, not measured. A cancelled context ends the sweep with its error.
func Sweep(ctx context.Context, o SweepOptions) (*SweepResult, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	r := &SweepResult{Backend: o.Backend, SecondsPerPoint: o.SecondsPerPoint, CPU: o.CPU,
		NumCPU: runtime.NumCPU(), LoadAvgBefore: sweepLoadAvg()}
	start := time.Now()
	base := 0 // DPDK device numbers used so far
	for _, size := range o.Sizes {
		for _, k := range o.Fanouts {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			p := SweepPoint{Backend: o.Backend, Fanout: k, Size: size}
			var err error
			switch {
			case size < MinFrame(k):
				p.Skipped = fmt.Sprintf("%s (%d bytes for %d receivers)", SkipTooSmall, MinFrame(k), k)
			case o.Backend == BackendDPDK:
				p, err = sweepDPDKPoint(ctx, &o, k, size, base)
				base += k + 1
			default:
				p, err = sweepMemPoint(ctx, &o, k, size)
			}
			if err != nil {
				return nil, fmt.Errorf("fan-out %d, %d bytes: %w", k, size, err)
			}
			r.Points = append(r.Points, p)
			if o.Progress != nil {
				o.Progress(p)
			}
		}
	}
	r.Seconds = time.Since(start).Seconds()
	r.LoadAvgAfter = sweepLoadAvg()
	if p, ok := r.Point(TargetFanout, TargetSize); ok {
		c, err := CoresFor(TargetGbps, TargetSize, TargetFanout, p.NsPerPacket)
		if err == nil {
			c.MeasuredFrom = fmt.Sprintf("%s backend, fan-out %d, %d bytes", p.Backend, p.Fanout, p.Size)
			r.Cores = &c
		}
	}
	return r, nil
}

// Point returns the measured point at (fanout, size).
func (r *SweepResult) Point(fanout, size int) (SweepPoint, bool) {
	for _, p := range r.Points {
		if p.Fanout == fanout && p.Size == size && p.Skipped == "" {
			return p, true
		}
	}
	return SweepPoint{}, false
}

func sweepMemPoint(ctx context.Context, o *SweepOptions, fanout, size int) (SweepPoint, error) {
	r, err := BenchReplicate(ctx, ReplicateOptions{Fanout: fanout, Size: size, Seconds: o.SecondsPerPoint, CPU: o.CPU})
	if err != nil {
		return SweepPoint{}, err
	}
	return SweepPoint{Backend: BackendMem, Fanout: fanout, Size: size,
		IngressMpps: r.IngressMpps, EgressMpps: r.EgressMpps, EgressGbps: r.EgressGbps,
		NsPerPacket: r.NsPerPacket, NsPerCopy: r.NsPerCopy}, nil
}

// sweepLoadAvg is the one-minute load average, 0 where it cannot be read.
func sweepLoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

// SweepCSVHeader is the first row WriteSweepCSV writes.
var SweepCSVHeader = []string{"backend", "fanout", "size", "ingress_mpps", "egress_mpps", "egress_gbps", "ns_per_packet", "ns_per_copy"}

// WriteSweepCSV writes one row per measured point (skipped points have no
// numbers and no row).
func WriteSweepCSV(w io.Writer, points []SweepPoint) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(SweepCSVHeader); err != nil {
		return err
	}
	f := func(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	for _, p := range points {
		if p.Skipped != "" {
			continue
		}
		for _, v := range []float64{p.IngressMpps, p.EgressMpps, p.EgressGbps, p.NsPerPacket, p.NsPerCopy} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return fmt.Errorf("fan-out %d, %d bytes: %v is not a rate", p.Fanout, p.Size, v)
			}
		}
		err := cw.Write([]string{p.Backend, strconv.Itoa(p.Fanout), strconv.Itoa(p.Size),
			f(p.IngressMpps, 4), f(p.EgressMpps, 4), f(p.EgressGbps, 3), f(p.NsPerPacket, 1), f(p.NsPerCopy, 1)})
		if err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteSweepMarkdown writes the table README's performance section
// carries, one row per fan-out and a column per size, and the cores
// estimate under it.
func WriteSweepMarkdown(w io.Writer, r *SweepResult) error {
	if r == nil || len(r.Points) == 0 {
		return errors.New("markdown: no points")
	}
	var sizes, fanouts []int
	seen := map[[2]int]bool{}
	for _, p := range r.Points {
		if !seen[[2]int{0, p.Size}] {
			seen[[2]int{0, p.Size}] = true
			sizes = append(sizes, p.Size)
		}
		if !seen[[2]int{1, p.Fanout}] {
			seen[[2]int{1, p.Fanout}] = true
			fanouts = append(fanouts, p.Fanout)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Each cell: egress Mpps / egress Gb/s / ns per ingress packet (all its copies), backend `%s`, "+
		"%.2g s per point on one pinned core (CPU %d of %d), load average %.1f before and %.1f after the %.0f s sweep.",
		r.Backend, r.SecondsPerPoint, r.CPU, r.NumCPU, r.LoadAvgBefore, r.LoadAvgAfter, r.Seconds)
	var why []string
	for _, kind := range []string{SkipTooSmall, SkipPorts} {
		for _, p := range r.Points {
			if strings.HasPrefix(p.Skipped, kind) {
				why = append(why, kind)
				break
			}
		}
	}
	if len(why) > 0 {
		fmt.Fprintf(&b, " A dash: not measured, %s.", strings.Join(why, ", or "))
	}
	b.WriteString("\n\n")
	b.WriteString("| fan-out |")
	for _, s := range sizes {
		fmt.Fprintf(&b, " %d B |", s)
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---|", len(sizes)))
	b.WriteString("\n")
	for _, k := range fanouts {
		fmt.Fprintf(&b, "| %d |", k)
		for _, s := range sizes {
			if p, ok := r.Point(k, s); ok {
				fmt.Fprintf(&b, " %s / %s / %.0f |", sig3(p.EgressMpps), sig3(p.EgressGbps), p.NsPerPacket)
			} else {
				b.WriteString(" - |")
			}
		}
		b.WriteString("\n")
	}
	if c := r.Cores; c != nil {
		fmt.Fprintf(&b, "\n400 GbE of %d-byte packets at fan-out %d: %.0f Gb/s over %d bytes per frame on the wire "+
			"(%d + %d of preamble, start delimiter and inter-frame gap) is %.2f M egress frames/s, "+
			"%.3f M ingress packets/s at %d copies each; at the measured %.0f ns per ingress packet that is "+
			"**%.2f cores** (%d, rounded up), measured with the %s.\n",
			c.FrameBytes, c.Fanout, c.LineGbps, c.WireBytes, c.FrameBytes, WireOverhead, c.EgressMpps,
			c.IngressMpps, c.Fanout, c.NsPerPacket, c.Cores, c.WholeCores, c.MeasuredFrom)
	} else {
		fmt.Fprintf(&b, "\nThe sweep did not measure fan-out %d at %d bytes, so it gives no core count for 400 GbE.\n", TargetFanout, TargetSize)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sig3 prints a rate with three significant digits, without exponents.
func sig3(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}
