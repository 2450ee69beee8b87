// The sweep's plot: egress Mpps against fan-out (a log scale: the grid
// doubles), one line per frame size.
package perf

import (
	"errors"
	"fmt"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// PlotSweep draws r's measured points to a PNG file at path.
func PlotSweep(path string, r *SweepResult) error {
	if r == nil {
		return errors.New("plot: no sweep")
	}
	bySize := map[int]plotter.XYs{}
	var sizes, fanouts []int
	for _, pt := range r.Points {
		if pt.Skipped != "" {
			continue
		}
		if _, ok := bySize[pt.Size]; !ok {
			sizes = append(sizes, pt.Size)
		}
		bySize[pt.Size] = append(bySize[pt.Size], plotter.XY{X: float64(pt.Fanout), Y: pt.EgressMpps})
		if !slices.Contains(fanouts, pt.Fanout) {
			fanouts = append(fanouts, pt.Fanout)
		}
	}
	if len(sizes) == 0 {
		return errors.New("plot: no measured points")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("sparsecast replication, backend %s, one core", r.Backend)
	p.X.Label.Text = "fan-out (copies per packet)"
	p.Y.Label.Text = "egress Mpps"
	p.X.Scale = plot.LogScale{}
	slices.Sort(fanouts)
	var ticks []plot.Tick
	for _, k := range fanouts {
		ticks = append(ticks, plot.Tick{Value: float64(k), Label: fmt.Sprint(k)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Min = 0
	var lines []any
	for _, s := range sizes {
		xy := bySize[s]
		slices.SortFunc(xy, func(a, b plotter.XY) int { return int(a.X - b.X) })
		lines = append(lines, fmt.Sprintf("%d B", s), xy)
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return err
	}
	// Room above the highest point for the legend, top left where the
	// rates are lowest.
	p.Y.Max *= 1.3
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}
