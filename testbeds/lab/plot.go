package lab

// Plots of delivery over time, one line per receiver, a failure marked when
// there was one. Two inputs:
//
//   - PlotStream: a StreamResult (every sequence number each receiver got)
//     and the send rate: packets delivered per 100 ms, bucketed by send time
//     (sequence number / rate: the sender paces evenly). The failover
//     scenario.
//   - PlotProgress: per-receiver byte counts sampled over time
//     (ReceiverProgress): the throughput between consecutive samples. The
//     checkpoint and MoE scenarios.
//
// Both end in drawLines, which writes the PNG.

import (
	"fmt"
	"image/color"
	"sort"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// PlotStream draws per-receiver throughput over time to a PNG file.
func PlotStream(path, title string, res *StreamResult, rate float64, failAt time.Duration, affected map[uint16]bool) error {
	if res == nil || rate <= 0 || res.Sent == 0 {
		return fmt.Errorf("plot: nothing to draw")
	}
	const bucket = 0.1 // seconds
	nb := int(float64(res.Sent)/rate/bucket) + 1
	ids := make([]int, 0, len(res.Receivers))
	for id := range res.Receivers {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	var lines []plotLine
	for _, id := range ids {
		counts := make([]float64, nb)
		if seqs := res.Receivers[uint16(id)].Seqs; seqs != nil {
			seqs.Each(func(q uint32) bool {
				if b := int(float64(q) / rate / bucket); b < nb {
					counts[b]++
				}
				return true
			})
		}
		pts := make(plotter.XYs, nb)
		for i := range counts {
			pts[i].X = float64(i) * bucket
			pts[i].Y = counts[i] / bucket
		}
		name := fmt.Sprintf("receiver %d", id)
		if affected[uint16(id)] {
			name += " (behind the link)"
		}
		lines = append(lines, plotLine{name, pts})
	}
	return drawLines(path, title, "send time (s)", "packets delivered per second", lines, failAt, "link down")
}

// PlotProgress draws per-receiver throughput over time (Mb/s between
// consecutive samples) to a PNG file. failAt > 0 marks a failure, labelled
// failLabel, at that time since the recording started; failAt 0 draws no
// mark. It is an error when no receiver has two samples.
func PlotProgress(path, title string, rs []ReceiverProgress, failAt time.Duration, failLabel string) error {
	var lines []plotLine
	for _, r := range rs {
		samples := foldShortTail(r.Samples)
		if len(samples) < 2 {
			continue
		}
		pts := make(plotter.XYs, 0, len(samples)-1)
		for i := 1; i < len(samples); i++ {
			a, b := samples[i-1], samples[i]
			dt := (b.At - a.At).Seconds()
			if dt <= 0 {
				continue
			}
			// Counters only grow; a smaller one would be a reset.
			d := float64(b.Bytes) - float64(a.Bytes)
			if d < 0 {
				d = 0
			}
			pts = append(pts, plotter.XY{X: b.At.Seconds(), Y: d * 8 / dt / 1e6})
		}
		if len(pts) == 0 {
			continue
		}
		name := fmt.Sprintf("receiver %d", r.ID)
		if r.Host != "" {
			name = fmt.Sprintf("%s (id %d)", r.Host, r.ID)
		}
		lines = append(lines, plotLine{name, pts})
	}
	if len(lines) == 0 {
		return fmt.Errorf("plot: nothing to draw (no receiver has two progress samples)")
	}
	if failLabel == "" {
		failLabel = "failure"
	}
	return drawLines(path, title, "time (s)", "received (Mb/s)", lines, failAt, failLabel)
}

// foldShortTail drops the sample before the last when the last follows it
// by under half a sampling interval (the recorder's closing sample): a rate
// over a few milliseconds would be mostly noise.
func foldShortTail(s []ProgressSample) []ProgressSample {
	if n := len(s); n >= 3 && s[n-1].At-s[n-2].At < progressInterval/2 {
		return append(s[:n-2:n-2], s[n-1])
	}
	return s
}

// plotLine is one receiver's line.
type plotLine struct {
	name string
	pts  plotter.XYs
}

// drawLines writes lines to a PNG, with a dashed vertical mark at failAt
// when it is positive.
func drawLines(path, title, xLabel, yLabel string, lines []plotLine, failAt time.Duration, failLabel string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	args := make([]any, 0, 2*len(lines))
	top := 0.0
	for _, l := range lines {
		args = append(args, l.name, l.pts)
		for _, pt := range l.pts {
			top = max(top, pt.Y)
		}
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return err
	}
	if failAt > 0 {
		if top == 0 {
			top = 1
		}
		x := failAt.Seconds()
		mark, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: top * 1.1}})
		if err != nil {
			return err
		}
		mark.Color = color.RGBA{R: 200, A: 255}
		mark.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
		p.Add(mark)
		p.Legend.Add(failLabel, mark)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}
