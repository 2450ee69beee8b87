package endpoint

import (
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// SeqSet is a set of 32-bit sequence numbers kept as a bitmap in pages of
// 65,536 numbers (8 KiB each), allocated on first use. Adding a number to an
// existing page does not allocate, and consecutive numbers hit a cached page,
// so the receive path does no map lookup per packet. The zero value is an
// empty set ready to use.
//
// In text and JSON a SeqSet is a list of ascending ranges, "0-17,20,22-40",
// compact enough to carry every received sequence number in a summary.
type SeqSet struct {
	pages   map[uint32]*seqPage
	lastKey uint32
	last    *seqPage
	n       uint64
}

const (
	seqPageBits  = 16
	seqPageWords = 1 << seqPageBits / 64
	// maxParsePages bounds the memory a parsed range list may claim (64 MiB
	// of bitmap, over 536 million sequence numbers).
	maxParsePages = 1 << 13
)

type seqPage [seqPageWords]uint64

func (s *SeqSet) page(key uint32, create bool) *seqPage {
	if s.last != nil && s.lastKey == key {
		return s.last
	}
	p := s.pages[key]
	if p == nil {
		if !create {
			return nil
		}
		if s.pages == nil {
			s.pages = make(map[uint32]*seqPage)
		}
		p = new(seqPage)
		s.pages[key] = p
	}
	s.last, s.lastKey = p, key
	return p
}

// Add inserts seq and reports whether it was new.
func (s *SeqSet) Add(seq uint32) bool {
	p := s.page(seq>>seqPageBits, true)
	w, b := (seq&0xFFFF)>>6, seq&63
	if p[w]&(1<<b) != 0 {
		return false
	}
	p[w] |= 1 << b
	s.n++
	return true
}

// Contains reports whether seq is in the set.
func (s *SeqSet) Contains(seq uint32) bool {
	if s == nil {
		return false
	}
	p := s.page(seq>>seqPageBits, false)
	return p != nil && p[(seq&0xFFFF)>>6]&(1<<(seq&63)) != 0
}

// Len is the number of sequence numbers in the set.
func (s *SeqSet) Len() uint64 {
	if s == nil {
		return 0
	}
	return s.n
}

func (s *SeqSet) keys() []uint32 {
	if s == nil {
		return nil
	}
	ks := make([]uint32, 0, len(s.pages))
	for k := range s.pages {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Each calls fn for every sequence number in ascending numeric order until fn
// returns false.
func (s *SeqSet) Each(fn func(seq uint32) bool) {
	for _, k := range s.keys() {
		p := s.pages[k]
		for w, word := range p {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				if !fn(k<<seqPageBits | uint32(w)<<6 | uint32(b)) {
					return
				}
				word &= word - 1
			}
		}
	}
}

// Minus returns the numbers in s that are not in o (o may be nil).
func (s *SeqSet) Minus(o *SeqSet) *SeqSet {
	out := &SeqSet{}
	s.Each(func(seq uint32) bool {
		if !o.Contains(seq) {
			out.Add(seq)
		}
		return true
	})
	return out
}

// Equal reports whether s and o hold the same numbers.
func (s *SeqSet) Equal(o *SeqSet) bool {
	if s.Len() != o.Len() {
		return false
	}
	eq := true
	s.Each(func(seq uint32) bool {
		eq = o.Contains(seq)
		return eq
	})
	return eq
}

// String formats the set as ascending ranges, "0-17,20,22-40" ("" if empty).
func (s *SeqSet) String() string {
	var b strings.Builder
	var lo, hi uint32
	open := false
	flush := func() {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(lo), 10))
		if hi != lo {
			b.WriteByte('-')
			b.WriteString(strconv.FormatUint(uint64(hi), 10))
		}
	}
	s.Each(func(seq uint32) bool {
		if open && seq == hi+1 {
			hi = seq
			return true
		}
		if open {
			flush()
		}
		lo, hi, open = seq, seq, true
		return true
	})
	if open {
		flush()
	}
	return b.String()
}

// ParseSeqSet parses String's format. Ranges may overlap and come in any
// order; whitespace around numbers is ignored; "" is the empty set.
func ParseSeqSet(str string) (*SeqSet, error) {
	s := &SeqSet{}
	str = strings.TrimSpace(str)
	if str == "" {
		return s, nil
	}
	for _, part := range strings.Split(str, ",") {
		loS, hiS, isRange := strings.Cut(strings.TrimSpace(part), "-")
		lo, err := strconv.ParseUint(strings.TrimSpace(loS), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("sequence set: %q is not a sequence number or range", part)
		}
		hi := lo
		if isRange {
			if hi, err = strconv.ParseUint(strings.TrimSpace(hiS), 10, 32); err != nil {
				return nil, fmt.Errorf("sequence set: %q is not a sequence number or range", part)
			}
			if hi < lo {
				return nil, fmt.Errorf("sequence set: range %q runs backwards", part)
			}
		}
		if err := s.addRange(uint32(lo), uint32(hi)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// addRange adds lo..hi a word at a time, refusing to grow beyond
// maxParsePages pages.
func (s *SeqSet) addRange(lo, hi uint32) error {
	for k := lo >> seqPageBits; k <= hi>>seqPageBits; k++ {
		if s.pages[k] == nil && len(s.pages) >= maxParsePages {
			return fmt.Errorf("sequence set: more than %d sequence numbers", maxParsePages<<seqPageBits)
		}
		p := s.page(k, true)
		a, b := uint32(0), uint32(0xFFFF)
		if k == lo>>seqPageBits {
			a = lo & 0xFFFF
		}
		if k == hi>>seqPageBits {
			b = hi & 0xFFFF
		}
		for w := a >> 6; w <= b>>6; w++ {
			m := ^uint64(0)
			if w == a>>6 {
				m &= ^uint64(0) << (a & 63)
			}
			if w == b>>6 {
				m &= ^uint64(0) >> (63 - b&63)
			}
			s.n += uint64(bits.OnesCount64(m &^ p[w]))
			p[w] |= m
		}
		if k == 0xFFFF {
			break
		}
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler (JSON: a range string).
func (s *SeqSet) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *SeqSet) UnmarshalText(b []byte) error {
	p, err := ParseSeqSet(string(b))
	if err != nil {
		return err
	}
	*s = *p
	return nil
}
