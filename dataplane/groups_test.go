package dataplane

import (
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
)

// checkGroups compares a table with the map it should equal, both ways.
func checkGroups(t *testing.T, g *GroupTable, want map[uint32][]uint16) {
	t.Helper()
	if g.Len() != len(want) {
		t.Fatalf("Len %d, want %d", g.Len(), len(want))
	}
	for id, m := range want {
		if got, ok := g.Lookup(id); !ok || !slices.Equal(got, m) {
			t.Fatalf("group %d: %v %v, want %v", id, got, ok, m)
		}
	}
	seen := 0
	for id, m := range g.All() {
		if w, ok := want[id]; !ok || !slices.Equal(w, m) {
			t.Fatalf("All yields group %d %v, want %v %v", id, m, w, ok)
		}
		seen++
	}
	if seen != len(want) {
		t.Fatalf("All yields %d groups, want %d", seen, len(want))
	}
}

// TestGroupTableMatchesMap: random sets and deletes, with IDs drawn to
// share low bits (deep paths), agree with a map at every step, and every
// earlier table still holds what it held (nothing is changed in place).
func TestGroupTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ids := []uint32{0, 1, 31, 32, 33, 1 << 5, 1 << 10, 1<<10 | 1, 1 << 30, 1<<31 | 1, 3 << 30, 0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF}
	for range 200 {
		ids = append(ids, rng.Uint32N(4096), rng.Uint32()&^0x3FF)
	}
	type step struct {
		g    *GroupTable
		want map[uint32][]uint16
	}
	var g *GroupTable
	want := map[uint32][]uint16{}
	var hist []step
	for i := range 4000 {
		id := ids[rng.IntN(len(ids))]
		if rng.IntN(3) == 0 {
			g = g.Without(id)
			delete(want, id)
		} else {
			m := []uint16{uint16(i), uint16(i) + 1}
			g = g.With(id, m)
			want[id] = m
		}
		if i%97 == 0 {
			checkGroups(t, g, want)
			hist = append(hist, step{g, maps.Clone(want)})
		}
	}
	checkGroups(t, g, want)
	for _, h := range hist {
		checkGroups(t, h.g, h.want)
	}
	// The bulk builder gives the same table.
	checkGroups(t, NewGroupTable(want), want)
	if !GroupTableEqual(g, NewGroupTable(want)) || GroupTableEqual(g, g.Without(ids[0]).With(ids[0], []uint16{9, 9, 9})) {
		t.Fatal("GroupTableEqual")
	}
	// Removing everything leaves an empty table.
	for id := range want {
		g = g.Without(id)
	}
	checkGroups(t, g, nil)
	if g.root != nil {
		t.Fatalf("empty table keeps nodes")
	}
}

func TestGroupTableNilAndMissing(t *testing.T) {
	var g *GroupTable
	if _, ok := g.Lookup(1); ok || g.Len() != 0 || g.Without(1) != nil {
		t.Fatal("nil table")
	}
	g = g.With(7, []uint16{1})
	if g.Without(8) != g {
		t.Fatal("removing a missing group copied the table")
	}
	if _, ok := g.Lookup(7 + 32); ok {
		t.Fatal("a group sharing low bits found")
	}
}

// TestGroupTableUpdateCost: one member change copies a path, not the table:
// with 10,000 groups (three levels) it allocates under 2 KiB.
func TestGroupTableUpdateCost(t *testing.T) {
	groups := map[uint32][]uint16{}
	for id := range uint32(10000) {
		groups[id] = []uint16{1, 2, 3}
	}
	g := NewGroupTable(groups)
	m := []uint16{1, 2, 3, 4}
	var out *GroupTable
	id := uint32(0)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	const n = 1000
	for range n {
		out = g.With(id%10000, m)
		id += 7
	}
	runtime.ReadMemStats(&ms1)
	if per := (ms1.TotalAlloc - ms0.TotalAlloc) / n; per > 2048 {
		t.Fatalf("%d bytes per update with 10,000 groups", per)
	}
	if out.Len() != 10000 {
		t.Fatal(out.Len())
	}
	if a := testing.AllocsPerRun(100, func() { g.Lookup(4321) }); a != 0 {
		t.Fatalf("Lookup allocates %v", a)
	}
}

func BenchmarkGroupLookup(b *testing.B) {
	for _, n := range []int{16, 1024, 65536} {
		groups := map[uint32][]uint16{}
		for id := range uint32(n) {
			groups[id] = []uint16{1}
		}
		g := NewGroupTable(groups)
		b.Run("trie/"+strconv.Itoa(n), func(b *testing.B) {
			s := 0
			for i := range b.N {
				m, _ := g.Lookup(uint32(i) % uint32(n))
				s += len(m)
			}
			_ = s
		})
		b.Run("map/"+strconv.Itoa(n), func(b *testing.B) {
			s := 0
			for i := range b.N {
				s += len(groups[uint32(i)%uint32(n)])
			}
			_ = s
		})
	}
}
