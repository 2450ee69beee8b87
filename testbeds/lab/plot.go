package lab

// Plots of a stream's delivery over time. In: a StreamResult (the sequence
// numbers every receiver got) and the send rate. Out: a PNG with one line per
// receiver, packets delivered per 100 ms bucketed by send time (sequence
// number / rate: the sender paces evenly), and the failure marked.

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
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "send time (s)"
	p.Y.Label.Text = "packets delivered per second"
	ids := make([]int, 0, len(res.Receivers))
	for id := range res.Receivers {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	var lines []any
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
		lines = append(lines, name, pts)
	}
	if err := plotutil.AddLines(p, lines...); err != nil {
		return err
	}
	if failAt > 0 {
		x := failAt.Seconds()
		mark, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: rate * 1.1}})
		if err != nil {
			return err
		}
		mark.Color = color.RGBA{R: 200, A: 255}
		mark.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
		p.Add(mark)
		p.Legend.Add("link down", mark)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}
