package headers

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

const vectorPorts = 4

type ringVector struct {
	name string
	data []byte
	code uint32 // 0: valid
}

func reasonCode(name string) (uint32, bool) {
	for c := uint32(1); c < NumRejectCodes; c++ {
		if RejectReason(c) == name {
			return c, true
		}
	}
	return 0, false
}

func loadRingVectors(tb testing.TB) []ringVector {
	tb.Helper()
	f, err := os.Open("testdata/ring_vectors.txt")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var vs []ringVector
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "|")
		if len(parts) != 3 {
			tb.Fatalf("line %d: want name | hex | expectation", ln)
		}
		v := ringVector{name: strings.TrimSpace(parts[0])}
		if v.name == "" || strings.ContainsAny(v.name, " \t") || seen[v.name] {
			tb.Fatalf("line %d: bad or repeated name %q", ln, v.name)
		}
		seen[v.name] = true
		if v.data, err = hex.DecodeString(strings.Join(strings.Fields(parts[1]), "")); err != nil {
			tb.Fatalf("line %d: %v", ln, err)
		}
		exp := strings.Fields(parts[2])
		switch {
		case len(exp) == 1 && exp[0] == "ok":
		case len(exp) == 2 && exp[0] == "err":
			c, ok := reasonCode(exp[1])
			if !ok {
				tb.Fatalf("line %d: unknown reason %q", ln, exp[1])
			}
			v.code = c
		default:
			tb.Fatalf("line %d: expectation %q: want ok or err REASON", ln, parts[2])
		}
		vs = append(vs, v)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return vs
}

// reencode builds r again through the constructors from its decoded fields.
func reencode(r Record, dst []byte) Record {
	gen := r.Generation()
	switch k := r.Kind(); k {
	case CmdBegin:
		return Begin(dst, gen, r.Full())
	case CmdCommit:
		return Commit(dst, gen)
	case CmdRoutes:
		var rs [RoutesPerRec]RingRoute
		for i := range r.Count() {
			rs[i].Receiver, rs[i].Primary, rs[i].Backup = r.Route(i)
		}
		out, _ := Routes(dst, gen, rs[:r.Count()])
		return out
	case CmdGroupSet, CmdGroupAdd, CmdGroupRemove:
		var ms [MembersPerRec]uint16
		for i := range r.Count() {
			ms[i] = r.Member(i)
		}
		mk := map[RecordKind]func([]byte, uint64, uint32, []uint16) (Record, int){
			CmdGroupSet: GroupSet, CmdGroupAdd: GroupAdd, CmdGroupRemove: GroupRemove,
		}[k]
		out, _ := mk(dst, gen, r.Group(), ms[:r.Count()])
		return out
	case CmdGroupDelete:
		return GroupDelete(dst, gen, r.Group())
	case EvHello:
		return Hello(dst, r.BootID(), r.AppliedGen())
	case EvApplied:
		return Applied(dst, gen, r.ApplyNanos())
	case EvRejected:
		return Rejected(dst, gen, r.Code(), r.RejectedKind(), r.RejectedIndex())
	case EvLink:
		return Link(dst, gen, r.Port(), r.LinkState(), r.LossPPM(), r.EventNanos())
	case EvRerouted:
		return Rerouted(dst, gen, r.Port(), r.Moved(), r.EventNanos())
	}
	return nil
}

func TestRingVectors(t *testing.T) {
	vs := loadRingVectors(t)
	var valid, invalid int
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			r := Record(v.data)
			if got := r.Validate(vectorPorts); got != v.code {
				t.Fatalf("Validate = %d (%s), want %d (%s)", got, RejectReason(got), v.code, RejectReason(v.code))
			}
			if v.code != 0 {
				invalid++
				if RejectError(v.code) == nil {
					t.Fatalf("no error for code %d", v.code)
				}
				return
			}
			valid++
			var buf [RingRecordLen]byte
			if out := reencode(r, buf[:]); !bytes.Equal(out, r) {
				t.Fatalf("re-encoded\n%x\nwant\n%x", []byte(out), v.data)
			}
		})
	}
	if valid < 10 || invalid < 20 {
		t.Fatalf("%d valid and %d invalid vectors: the file lost some", valid, invalid)
	}
}

// Every reason is covered by at least one vector, except those only batch
// rules produce.
func TestRingVectorsCoverReasons(t *testing.T) {
	seen := map[uint32]bool{}
	for _, v := range loadRingVectors(t) {
		seen[v.code] = true
	}
	for c := uint32(1); c < NumRejectCodes; c++ {
		if c == RejectOrder || c == RejectGroup {
			continue
		}
		if !seen[c] {
			t.Errorf("no vector for %s", RejectReason(c))
		}
	}
}

func TestRingConstructorsChunk(t *testing.T) {
	var buf [RingRecordLen]byte
	rs := make([]RingRoute, 30)
	for i := range rs {
		rs[i] = RingRoute{Receiver: uint16(i), Primary: 1, Backup: RingNoPort}
	}
	r, n := Routes(buf[:], 3, rs)
	if n != RoutesPerRec || r.Count() != RoutesPerRec || r.Validate(2) != 0 {
		t.Fatalf("n %d count %d validate %d", n, r.Count(), r.Validate(2))
	}
	if id, p, b := r.Route(11); id != 11 || p != 1 || b != RingNoPort {
		t.Fatalf("route 11 = %d %d %d", id, p, b)
	}
	ms := make([]uint16, 50)
	for i := range ms {
		ms[i] = uint16(3 * i)
	}
	r, n = GroupSet(buf[:], 3, 9, ms)
	if n != MembersPerRec || r.Member(23) != 69 || r.Group() != 9 || r.Validate(1) != 0 {
		t.Fatalf("group set: n %d", n)
	}
	// A record built over a dirty buffer carries nothing of it.
	for i := range buf {
		buf[i] = 0xAA
	}
	if c := Commit(buf[:], 1); c.Validate(1) != 0 {
		t.Fatalf("commit over dirty buffer: %s", RejectReason(c.Validate(1)))
	}
	if RejectReason(0) != "unknown" || RejectReason(99) != "unknown" || RecordKind(9).String() != "kind(9)" || CmdRoutes.String() != "routes" {
		t.Fatal("names")
	}
}

func TestRingNoAllocs(t *testing.T) {
	var buf [RingRecordLen]byte
	rs := []RingRoute{{1, 0, 1}, {2, 1, 0}}
	ms := []uint16{1, 2, 3}
	allocs := testing.AllocsPerRun(1000, func() {
		r, _ := Routes(buf[:], 1, rs)
		_ = r.Validate(4)
		r, _ = GroupAdd(buf[:], 1, 7, ms)
		_ = r.Validate(4)
		_ = Link(buf[:], 1, 2, LinkDown, 5, 6).Validate(4)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations", allocs)
	}
}

func ExampleRecord() {
	var buf [RingRecordLen]byte
	r, _ := GroupSet(buf[:], 7, 42, []uint16{1, 5, 9})
	fmt.Println(r.Kind(), r.Generation(), r.Group(), r.Count(), r.Member(2), r.Validate(4))
	r[RingRecordLen-1] = 1
	fmt.Println(RejectError(r.Validate(4)))
	// Output:
	// group_set 7 42 3 9 0
	// ring record: reserved bytes not zero
}
