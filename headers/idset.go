package headers

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ParseIDSet parses a receiver list such as "1,5,9" or "1-4,7,10-12" into a
// strictly ascending list of IDs (duplicates removed). It is the one parser
// for IDs in CLI flags and configuration files.
func ParseIDSet(s string) ([]uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("empty receiver list")
	}
	var ids []uint16
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parseID(lo)
		if err != nil {
			return nil, fmt.Errorf("receiver list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = parseID(hi); err != nil {
				return nil, fmt.Errorf("receiver list %q: %w", s, err)
			}
			if b < a {
				return nil, fmt.Errorf("receiver list %q: range %q runs backwards", s, part)
			}
		}
		for id := a; id <= b; id++ {
			ids = append(ids, uint16(id))
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

func parseID(s string) (int, error) {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a receiver ID", s)
	}
	if v < 0 || v > MaxID {
		return 0, fmt.Errorf("receiver ID %d out of range 0-%d", v, MaxID)
	}
	return v, nil
}

// FormatIDSet is ParseIDSet's inverse: ascending IDs with runs as ranges.
func FormatIDSet(ids []uint16) string {
	var b strings.Builder
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", ids[i], ids[j])
		} else {
			fmt.Fprintf(&b, "%d", ids[i])
		}
		i = j + 1
	}
	return b.String()
}
