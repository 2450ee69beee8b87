package endpoint

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSeqSetAddContains(t *testing.T) {
	var s SeqSet
	for _, v := range []uint32{0, 1, 2, 63, 64, 65535, 65536, 1 << 31, 0xFFFFFFFF} {
		if !s.Add(v) {
			t.Fatalf("Add(%d) on a new number reported a duplicate", v)
		}
		if s.Add(v) {
			t.Fatalf("second Add(%d) reported new", v)
		}
	}
	if s.Len() != 9 {
		t.Fatalf("Len = %d, want 9", s.Len())
	}
	for _, v := range []uint32{3, 62, 65534, 65537, 1<<31 + 1, 0xFFFFFFFE} {
		if s.Contains(v) {
			t.Errorf("Contains(%d) = true", v)
		}
	}
	if got, want := s.String(), "0-2,63-64,65535-65536,2147483648,4294967295"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	var nilSet *SeqSet
	if nilSet.Contains(1) || nilSet.Len() != 0 {
		t.Error("nil set is not empty")
	}
}

func TestSeqSetRoundTrip(t *testing.T) {
	for _, in := range []string{"", "0", "0-17,20,22-40", "65530-65545", "7,4294967290-4294967295", "0-1000000", "3,65535-131072,131074"} {
		s, err := ParseSeqSet(in)
		if err != nil {
			t.Fatalf("ParseSeqSet(%q): %v", in, err)
		}
		if got := s.String(); got != in {
			t.Errorf("round trip %q -> %q", in, got)
		}
	}
	s, err := ParseSeqSet(" 5-7, 1 ,6-9,3-3 ")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != "1,3,5-9" {
		t.Errorf("overlapping ranges: %q", got)
	}
	if s.Len() != 7 {
		t.Errorf("Len = %d, want 7", s.Len())
	}
}

func TestParseSeqSetErrors(t *testing.T) {
	for in, want := range map[string]string{
		"1,x":          "not a sequence number",
		"5-3":          "runs backwards",
		"-3":           "not a sequence number",
		"1-":           "not a sequence number",
		"4294967296":   "not a sequence number",
		"1,,2":         "not a sequence number",
		"0-4294967295": "more than",
	} {
		_, err := ParseSeqSet(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSeqSet(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestSeqSetMinusEqualJSON(t *testing.T) {
	a, _ := ParseSeqSet("0-9,100")
	b, _ := ParseSeqSet("2-4,100,200")
	if got := a.Minus(b).String(); got != "0-1,5-9" {
		t.Errorf("a-b = %q", got)
	}
	if got := b.Minus(a).String(); got != "200" {
		t.Errorf("b-a = %q", got)
	}
	if got := a.Minus(nil).String(); got != a.String() {
		t.Errorf("a-nil = %q", got)
	}
	if a.Equal(b) {
		t.Error("a == b")
	}
	c, _ := ParseSeqSet("100,0-9")
	if !a.Equal(c) {
		t.Error("a != c")
	}
	out, err := json.Marshal(struct{ S *SeqSet }{a})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"S":"0-9,100"}` {
		t.Errorf("JSON = %s", out)
	}
	var back struct{ S *SeqSet }
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if !back.S.Equal(a) {
		t.Errorf("JSON round trip: %v", back.S)
	}
	if err := json.Unmarshal([]byte(`{"S":"3-1"}`), &back); err == nil {
		t.Error("bad JSON range accepted")
	}
}

func TestSeqSetAddDoesNotAllocate(t *testing.T) {
	var s SeqSet
	s.Add(0)
	seq := uint32(0)
	if n := testing.AllocsPerRun(1000, func() { seq++; s.Add(seq) }); n != 0 {
		t.Errorf("Add allocates %v times per call within a page", n)
	}
}
