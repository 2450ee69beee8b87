package endpoint

import (
	"slices"
	"testing"
)

func seqIDs(n int, step uint16) []uint16 {
	ids := make([]uint16, n)
	for i := range ids {
		ids[i] = uint16(i)*step + 1
	}
	return ids
}

func TestScheduleSets(t *testing.T) {
	for _, n := range []int{1, 2, 4, 63, 64, 65, 200} {
		s := Schedule{Seed: 42, Receivers: seqIDs(n, 3)}
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		hits := make([]int, n)
		for seq := uint32(0); seq < 2000; seq++ {
			set := s.Set(seq)
			if len(set) == 0 {
				t.Fatalf("n=%d seq=%d: empty set", n, seq)
			}
			for i := 1; i < len(set); i++ {
				if set[i] <= set[i-1] {
					t.Fatalf("n=%d seq=%d: set %v not ascending", n, seq, set)
				}
			}
			for _, id := range set {
				if _, ok := slices.BinarySearch(s.Receivers, id); !ok {
					t.Fatalf("n=%d seq=%d: %d not a receiver", n, seq, id)
				}
			}
			if again := s.Set(seq); !slices.Equal(again, set) {
				t.Fatalf("n=%d seq=%d: not reproducible: %v then %v", n, seq, set, again)
			}
			for i, id := range s.Receivers {
				in := slices.Contains(set, id)
				if s.Contains(seq, id) != in {
					t.Fatalf("n=%d seq=%d id=%d: Contains=%v, set %v", n, seq, id, !in, set)
				}
				if in {
					hits[i]++
				}
			}
		}
		if n >= 2 {
			// Each receiver is drawn with probability 1/2 (a bit more for
			// n small, from the non-empty fallback): 2000 draws, wide bounds.
			for i, h := range hits {
				if h < 800 || h > 1400 {
					t.Errorf("n=%d receiver %d got %d of 2000 packets", n, s.Receivers[i], h)
				}
			}
		} else if hits[0] != 2000 {
			t.Errorf("single receiver got %d of 2000", hits[0])
		}
		if s.Contains(0, 0) {
			t.Errorf("n=%d: Contains a non-receiver", n)
		}
	}
}

func TestScheduleSeedMatters(t *testing.T) {
	a := Schedule{Seed: 1, Receivers: seqIDs(4, 1)}
	b := Schedule{Seed: 2, Receivers: seqIDs(4, 1)}
	same := 0
	for seq := uint32(0); seq < 200; seq++ {
		if slices.Equal(a.Set(seq), b.Set(seq)) {
			same++
		}
	}
	if same > 60 {
		t.Errorf("seeds 1 and 2 agree on %d of 200 sets", same)
	}
}

func TestScheduleExpected(t *testing.T) {
	s := Schedule{Seed: 7, Receivers: []uint16{1, 2, 3, 4}}
	total := uint64(0)
	for _, id := range s.Receivers {
		e := s.Expected(id, 100, 1000)
		total += e.Len()
		e.Each(func(seq uint32) bool {
			if seq < 100 || seq >= 1100 || !slices.Contains(s.Set(seq), id) {
				t.Fatalf("Expected(%d) holds %d", id, seq)
			}
			return true
		})
	}
	sum := 0
	for seq := uint32(100); seq < 1100; seq++ {
		sum += len(s.Set(seq))
	}
	if total != uint64(sum) {
		t.Errorf("expected deliveries %d, sets hold %d", total, sum)
	}
}

func TestScheduleValidate(t *testing.T) {
	for _, s := range []Schedule{{}, {Receivers: []uint16{3, 3}}, {Receivers: []uint16{4, 2}}} {
		if s.Validate() == nil {
			t.Errorf("Validate(%v) = nil", s.Receivers)
		}
	}
}

func TestScheduleSetFuncDoesNotAllocate(t *testing.T) {
	f := Schedule{Seed: 3, Receivers: seqIDs(100, 1)}.SetFunc()
	seq := uint32(0)
	if n := testing.AllocsPerRun(1000, func() { seq++; f(seq) }); n != 0 {
		t.Errorf("SetFunc allocates %v times per call", n)
	}
}
