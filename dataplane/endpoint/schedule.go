package endpoint

import (
	"fmt"
	"slices"
)

// Schedule picks a pseudo-random, non-empty subset of Receivers for every
// sequence number, reproducibly from Seed: a sender addresses packet seq to
// Set(seq), and a test computes from the same Schedule exactly which
// sequence numbers each receiver must get (Expected).
//
// Every receiver is in a packet's set with probability one half,
// independently; when that draws nobody, one receiver chosen by the same hash
// gets the packet alone.
type Schedule struct {
	Seed uint64
	// Receivers must be strictly ascending, as headers.ParseIDSet returns them.
	Receivers []uint16
}

// Validate checks that the schedule can produce sets.
func (s Schedule) Validate() error {
	if len(s.Receivers) == 0 {
		return fmt.Errorf("schedule: no receivers")
	}
	for i := 1; i < len(s.Receivers); i++ {
		if s.Receivers[i] <= s.Receivers[i-1] {
			return fmt.Errorf("schedule: receivers not strictly ascending at %d", s.Receivers[i])
		}
	}
	return nil
}

const golden = 0x9E3779B97F4A7C15

// mix64 is SplitMix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	x ^= x >> 31
	return x
}

func (s Schedule) seqHash(seq uint32) uint64 { return mix64(s.Seed + golden*(uint64(seq)+1)) }

// chunkMask is the membership bitmap of Receivers[64c : 64c+64].
func chunkMask(h uint64, c int) uint64 { return mix64(h + golden*uint64(c+1)) }

// AppendSet appends Set(seq) to dst and returns it; it does not allocate when
// dst has room.
func (s Schedule) AppendSet(dst []uint16, seq uint32) []uint16 {
	n := len(s.Receivers)
	if n == 0 {
		return dst
	}
	h := s.seqHash(seq)
	start := len(dst)
	for c := 0; c*64 < n; c++ {
		m := chunkMask(h, c)
		for j := c * 64; j < n && j < c*64+64; j++ {
			if m&(1<<(j-c*64)) != 0 {
				dst = append(dst, s.Receivers[j])
			}
		}
	}
	if len(dst) == start {
		dst = append(dst, s.Receivers[h%uint64(n)])
	}
	return dst
}

// Set returns the receiver set of packet seq (a new slice).
func (s Schedule) Set(seq uint32) []uint16 { return s.AppendSet(nil, seq) }

// SetFunc returns a receiver function for SenderConfig.Receivers that reuses
// one buffer (so it must not be shared between goroutines).
func (s Schedule) SetFunc() func(seq uint32) []uint16 {
	buf := make([]uint16, 0, len(s.Receivers))
	return func(seq uint32) []uint16 { return s.AppendSet(buf[:0], seq) }
}

// Contains reports whether id is in Set(seq).
func (s Schedule) Contains(seq uint32, id uint16) bool {
	n := len(s.Receivers)
	idx, found := slices.BinarySearch(s.Receivers, id)
	if !found {
		return false
	}
	h := s.seqHash(seq)
	if chunkMask(h, idx/64)&(1<<(idx%64)) != 0 {
		return true
	}
	// Not drawn: it still gets the packet if nobody was drawn and the
	// fallback picks it.
	if int(h%uint64(n)) != idx {
		return false
	}
	for c := 0; c*64 < n; c++ {
		m := chunkMask(h, c)
		if k := n - c*64; k < 64 {
			m &= 1<<k - 1
		}
		if m != 0 {
			return false
		}
	}
	return true
}

// Expected is the set of sequence numbers first, first+1, ..., first+count-1
// whose Set contains id: exactly what receiver id must receive from a sender
// that follows this schedule.
func (s Schedule) Expected(id uint16, first uint32, count int) *SeqSet {
	out := &SeqSet{}
	for i := 0; i < count; i++ {
		if seq := first + uint32(i); s.Contains(seq, id) {
			out.Add(seq)
		}
	}
	return out
}

// Fixed returns a receiver function that sends every packet to ids (strictly
// ascending).
func Fixed(ids []uint16) func(seq uint32) []uint16 {
	return func(uint32) []uint16 { return ids }
}
