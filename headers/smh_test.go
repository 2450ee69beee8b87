package headers

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/google/gopacket"
)

func TestViewSetters(t *testing.T) {
	b := make([]byte, FeedbackLen+4)
	h := SMH(b)
	h.SetVersionType(Version, TypeNACK)
	h.SetFlags(FlagAggregated | FlagCongestion)
	h.SetHopLimit(9)
	h.SetEncoding(EncList)
	h.SetSetCount(2)
	h.SetSourceID(0x1234)
	h.SetSessionID(0xabcd)
	h.SetSequence(0xdeadbeef)
	h.SetFeedbackCount(3)
	h.SetSpeaksFor(2)
	h.SetReporterID(0x0777)
	copy(b[FeedbackLen:], []byte{0, 5, 0, 6})
	want := mustHex(t, "12 a0 09 00 0002 1234 abcd deadbeef 0003 0002 0777 0005 0006")
	if !bytes.Equal(b, want) {
		t.Fatalf("bytes\n got  %x\n want %x", b, want)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	if h.Version() != 1 || h.Type() != TypeNACK || h.Flags() != FlagAggregated|FlagCongestion ||
		h.HopLimit() != 9 || h.Encoding() != EncList || h.SetCount() != 2 || h.SourceID() != 0x1234 ||
		h.SessionID() != 0xabcd || h.Sequence() != 0xdeadbeef || h.FeedbackCount() != 3 ||
		h.SpeaksFor() != 2 || h.ReporterID() != 0x777 {
		t.Errorf("accessors disagree with setters: %+v", h.Fields())
	}
	if h.SetOffset() != FeedbackLen || h.HeaderLen() != FeedbackLen+4 || len(h.Payload()) != 0 {
		t.Errorf("SetOffset %d HeaderLen %d payload %d", h.SetOffset(), h.HeaderLen(), len(h.Payload()))
	}
	if !bytes.Equal(h.Set(), []byte{0, 5, 0, 6}) || h.ListID(1) != 6 {
		t.Errorf("Set %x ListID(1) %d", h.Set(), h.ListID(1))
	}
}

func TestTypeAndEncodingStrings(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{TypeData.String(), "DATA"}, {TypeACK.String(), "ACK"}, {TypeNACK.String(), "NACK"},
		{TypeCNP.String(), "CNP"}, {TypeABORT.String(), "ABORT"}, {Type(9).String(), "UNKNOWN"},
		{AbortNoSpace.String(), "no_space"}, {AbortReason(99).String(), "unknown"},
		{EncList.String(), "list"}, {EncBlocks.String(), "blocks"}, {EncGroup.String(), "group"},
		{Encoding(3).String(), "reserved"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if TypeData.IsFeedback() || !TypeACK.IsFeedback() || !TypeNACK.IsFeedback() || !TypeCNP.IsFeedback() || !TypeABORT.IsFeedback() || Type(5).IsFeedback() {
		t.Error("IsFeedback")
	}
	if EncList.EntryLen() != 2 || EncBlocks.EntryLen() != 10 || EncGroup.EntryLen() != 4 || Encoding(3).EntryLen() != 0 {
		t.Error("EntryLen")
	}
}

func ids(tb testing.TB, s string) []uint16 {
	tb.Helper()
	v, err := ParseIDSet(s)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func TestPutHeader(t *testing.T) {
	data := Fields{Type: TypeData, Flags: FlagFinal, HopLimit: DefaultHopLimit, SourceID: 7, SessionID: 1, Sequence: 5}
	for _, tc := range []struct {
		name string
		f    Fields
		ids  string
		want string // hex
	}{
		{"list", data, "1,5,9", "10 10 10 00 0003 0007 0001 00000005 0001 0005 0009"},
		{"blocks", data, "64-72", "10 10 10 10 0001 0007 0001 00000005 0001 00000000000001ff"},
		{"tie is list", data, "0-4", "10 10 10 00 0005 0007 0001 00000005 0000 0001 0002 0003 0004"},
		{"one past tie is blocks", data, "0-5", "10 10 10 10 0001 0007 0001 00000005 0000 000000000000003f"},
		{"blocks across blocks", data, "0-15,70,128-135",
			"10 10 10 10 0003 0007 0001 00000005 0000 000000000000ffff 0001 0000000000000040 0002 00000000000000ff"},
		{"top block", data, "65472-65535", "10 10 10 10 0001 0007 0001 00000005 03ff ffffffffffffffff"},
		{"feedback no set", Fields{Type: TypeCNP, HopLimit: 3, SourceID: 7, SessionID: 1, Sequence: 2, Count: 9, SpeaksFor: 1, ReporterID: 4}, "",
			"13 00 03 00 0000 0007 0001 00000002 0009 0001 0004"},
		{"feedback list", Fields{Type: TypeACK, Flags: FlagAggregated, HopLimit: 3, SourceID: 7, SessionID: 1, Sequence: 2, SpeaksFor: 5, ReporterID: 300}, "3,12",
			"11 80 03 00 0002 0007 0001 00000002 0000 0005 012c 0003 000c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rx []uint16
			if tc.ids != "" {
				rx = ids(t, tc.ids)
			}
			want := mustHex(t, tc.want)
			if HeaderLenFor(tc.f.Type, rx) != len(want) {
				t.Errorf("HeaderLenFor = %d, want %d", HeaderLenFor(tc.f.Type, rx), len(want))
			}
			b := make([]byte, len(want)+8)
			n := PutHeader(b, tc.f, rx)
			if !bytes.Equal(b[:n], want) {
				t.Fatalf("PutHeader\n got  %x\n want %x", b[:n], want)
			}
			h := SMH(b[:n])
			if err := h.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got := h.AppendReceivers(nil); !slices.Equal(got, rx) {
				t.Errorf("receivers %v, want %v", got, rx)
			}
			if h.Fields() != tc.f {
				t.Errorf("Fields %+v, want %+v", h.Fields(), tc.f)
			}
			// One byte short of the header: refused, not truncated silently.
			if n := PutHeader(make([]byte, len(want)-1), tc.f, rx); n != 0 {
				t.Errorf("short buffer: PutHeader = %d, want 0", n)
			}
		})
	}
}

func TestPutHeaderRejects(t *testing.T) {
	f := Fields{Type: TypeData, HopLimit: 1}
	b := make([]byte, 256)
	for _, tc := range []struct {
		name string
		ids  []uint16
	}{
		{"unsorted list", []uint16{5, 3}},
		{"duplicate list", []uint16{5, 5}},
		{"unsorted blocks", []uint16{64, 65, 66, 67, 68, 69, 1}},
		{"duplicate blocks", []uint16{0, 1, 2, 3, 4, 5, 6, 6}},
		{"unsorted across blocks", []uint16{0, 1, 2, 3, 4, 5, 64, 65, 66, 67, 68, 69, 7}},
	} {
		if n := PutHeader(b, f, tc.ids); n != 0 {
			t.Errorf("%s: PutHeader = %d, want 0", tc.name, n)
		}
	}
	if n := PutHeader(b[:FixedLen-1], f, []uint16{1}); n != 0 {
		t.Errorf("buffer shorter than the fixed part: PutHeader = %d", n)
	}
}

func TestPutGroupHeader(t *testing.T) {
	// PutGroupHeader forces DATA, whatever Type says.
	f := Fields{Type: TypeACK, HopLimit: 16, SourceID: 5, SessionID: 2, Sequence: 100, SpeaksFor: 3}
	b := make([]byte, 32)
	n := PutGroupHeader(b, f, 0xdeadbeef)
	want := mustHex(t, "10 00 10 20 0001 0005 0002 00000064 deadbeef")
	if !bytes.Equal(b[:n], want) {
		t.Fatalf("got %x, want %x", b[:n], want)
	}
	h := SMH(b[:n])
	if err := h.Validate(); err != nil || h.GroupID() != 0xdeadbeef || h.Type() != TypeData {
		t.Errorf("Validate %v group %#x type %v", err, h.GroupID(), h.Type())
	}
	if n := PutGroupHeader(b[:FixedLen+3], f, 1); n != 0 {
		t.Errorf("short buffer: %d", n)
	}
}

func TestParseIDSet(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []uint16
	}{
		{"1,5,9", []uint16{1, 5, 9}},
		{"9,5,1", []uint16{1, 5, 9}},
		{" 1 - 4 , 7,10-12 ", []uint16{1, 2, 3, 4, 7, 10, 11, 12}},
		{"3,1-4,2", []uint16{1, 2, 3, 4}},
		{"65535", []uint16{65535}},
		{"65534-65535,0", []uint16{0, 65534, 65535}},
		{"7-7", []uint16{7}},
	} {
		got, err := ParseIDSet(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseIDSet(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	all, err := ParseIDSet("0-65535")
	if err != nil || len(all) != 65536 || all[65535] != 65535 {
		t.Errorf("full range: %d ids, %v", len(all), err)
	}
	for _, tc := range []struct{ in, msg string }{
		{"", "empty"},
		{"  ", "empty"},
		{"1,,2", "not a receiver ID"},
		{"x", "not a receiver ID"},
		{"-1", "not a receiver ID"},
		{"65536", "out of range"},
		{"1-65536", "out of range"},
		{"5-3", "backwards"},
		{"1-2-3", "not a receiver ID"},
	} {
		_, err := ParseIDSet(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseIDSet(%q) error %v, want one mentioning %q", tc.in, err, tc.msg)
		}
	}
}

func TestFormatIDSet(t *testing.T) {
	for _, tc := range []struct {
		in   []uint16
		want string
	}{
		{nil, ""},
		{[]uint16{7}, "7"},
		{[]uint16{1, 5, 9}, "1,5,9"},
		{[]uint16{1, 2, 3, 4, 7, 10, 11, 12}, "1-4,7,10-12"},
		{[]uint16{0, 65534, 65535}, "0,65534-65535"},
	} {
		got := FormatIDSet(tc.in)
		if got != tc.want {
			t.Errorf("FormatIDSet(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if len(tc.in) == 0 {
			continue
		}
		back, err := ParseIDSet(got)
		if err != nil || !slices.Equal(back, tc.in) {
			t.Errorf("ParseIDSet(FormatIDSet(%v)) = %v, %v", tc.in, back, err)
		}
	}
}

// TestNoAllocs guards the fast path: validating, iterating, encoding and the
// layer's steady-state decode never allocate.
func TestNoAllocs(t *testing.T) {
	list := ids(t, "3,17,42,77,100,130,170,201,250")
	blocks := ids(t, "0-63,128-191,1000-1100")
	buf := make([]byte, 2048)
	f := Fields{Type: TypeData, HopLimit: 16, SourceID: 1}
	var pkts [][]byte
	for _, rx := range [][]uint16{list, blocks} {
		n := PutHeader(buf, f, rx)
		if n == 0 {
			t.Fatal("PutHeader failed")
		}
		pkts = append(pkts, slices.Clone(buf[:n]))
	}
	var sum int
	sink := func(id uint16) { sum += int(id) }
	for _, p := range pkts {
		if a := testing.AllocsPerRun(100, func() {
			if SMH(p).Validate() != nil {
				t.Fatal("invalid")
			}
			SMH(p).ForEachReceiver(sink)
		}); a != 0 {
			t.Errorf("Validate+ForEachReceiver: %v allocs", a)
		}
		bad := slices.Clone(p)
		bad[0] = 0x20
		if a := testing.AllocsPerRun(100, func() { _ = SMH(bad).Validate() }); a != 0 {
			t.Errorf("Validate (error): %v allocs", a)
		}
	}
	for _, rx := range [][]uint16{list, blocks} {
		if a := testing.AllocsPerRun(100, func() { PutHeader(buf, f, rx) }); a != 0 {
			t.Errorf("PutHeader: %v allocs", a)
		}
	}
	var l SMHLayer
	for _, p := range pkts {
		if a := testing.AllocsPerRun(100, func() {
			if l.DecodeFromBytes(p, gopacket.NilDecodeFeedback) != nil {
				t.Fatal("invalid")
			}
		}); a != 0 {
			t.Errorf("SMHLayer.DecodeFromBytes: %v allocs", a)
		}
		bad := slices.Clone(p)
		bad[3] = 0x30
		if a := testing.AllocsPerRun(100, func() { _ = l.DecodeFromBytes(bad, gopacket.NilDecodeFeedback) }); a != 0 {
			t.Errorf("SMHLayer.DecodeFromBytes (error): %v allocs", a)
		}
	}
}
