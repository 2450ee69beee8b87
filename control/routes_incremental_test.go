package control

import (
	"bytes"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sparsecast/sparsecast/testbeds/gen"
)

func fatTree(t testing.TB, k int) *Topology {
	t.Helper()
	var b bytes.Buffer
	if err := gen.FatTree(&b, k); err != nil {
		t.Fatal(err)
	}
	topo, err := ParseTopology(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// TestSetLinkMatchesFullRecompute takes random links down and up again, one
// at a time, and checks after each step that the incremental routes are
// exactly what a full computation with the same links down gives, and that
// the changes it reports are exactly the entries that differ from before.
func TestSetLinkMatchesFullRecompute(t *testing.T) {
	fabrics := map[string]*Topology{
		"fattree-k4":   fatTree(t, 4),
		"fattree-k6":   fatTree(t, 6),
		"fattree-k8":   fatTree(t, 8),
		"leafspine":    testbed(t, "leafspine.yaml"),
		"failover":     testbed(t, "failover.yaml"),
		"three-spines": threeSpines(t),
	}
	for _, name := range slices.Sorted(maps.Keys(fabrics)) {
		topo := fabrics[name]
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(topo.Links))))
			f, err := computeFabric(topo, nil)
			if err != nil {
				t.Fatal(err)
			}
			down := map[LinkID]bool{}
			steps := 60
			if testing.Short() {
				steps = 15
			}
			for step := range steps {
				// Mostly failures, up to a few links at once; sometimes
				// a repair.
				var l LinkID
				if len(down) > 0 && (len(down) >= 3 || rng.IntN(3) == 0) {
					l = slices.Sorted(maps.Keys(down))[rng.IntN(len(down))]
				} else {
					l = LinkID(rng.IntN(len(topo.Links)))
				}
				goingDown := !down[l]
				before := snapshot(f)
				ch, err := f.setLink(l, goingDown)
				if err != nil {
					t.Fatal(err)
				}
				if goingDown {
					down[l] = true
				} else {
					delete(down, l)
				}
				full, err := computeFabric(topo, slices.Sorted(maps.Keys(down)))
				if err != nil {
					t.Fatal(err)
				}
				for s := range topo.Switches {
					{
						for r := range f.primary {
							if f.primary[r][s] != full.primary[r][s] || f.backup[r][s] != full.backup[r][s] {
								t.Fatalf("step %d (%s %s, down %v): %s receiver rank %d: incremental %d/%d, full %d/%d",
									step, topo.Links[l].Description, map[bool]string{true: "down", false: "up"}[goingDown], slices.Sorted(maps.Keys(down)),
									topo.Switches[s].Name, r, f.primary[r][s], f.backup[r][s], full.primary[r][s], full.backup[r][s])
							}
						}
					}
				}
				var want []routeChange
				for s := range topo.Switches {
					for r := range f.primary {
						if before[0][r][s] != f.primary[r][s] || before[1][r][s] != f.backup[r][s] {
							want = append(want, routeChange{int32(s), int32(r)})
						}
					}
				}
				if !slices.Equal(ch, want) {
					t.Fatalf("step %d (%s): reported %d changes %v, %d entries changed %v", step, topo.Links[l].Description, len(ch), ch, len(want), want)
				}
			}
		})
	}
}

func snapshot(f *fabricRoutes) [2][][]uint8 {
	var s [2][][]uint8
	for i := range f.primary {
		s[0] = append(s[0], slices.Clone(f.primary[i]))
		s[1] = append(s[1], slices.Clone(f.backup[i]))
	}
	return s
}
