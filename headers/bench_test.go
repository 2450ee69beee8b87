package headers

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/gopacket"
)

// benchHeader builds a DATA header for k receivers in the given encoding:
// random IDs of the whole space for the list, consecutive IDs for blocks
// (hosts under a leaf), which is where each encoding is the one chosen.
func benchHeader(tb testing.TB, k int, enc Encoding) []byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, uint64(k)))
	var ids []uint16
	if enc == EncBlocks {
		start := 64 * rng.IntN(1024-k/64)
		for i := range k {
			ids = append(ids, uint16(start+i))
		}
	} else {
		seen := map[uint16]bool{}
		for len(ids) < k {
			id := uint16(rng.IntN(MaxID + 1))
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
	}
	l := SMHLayer{Type: TypeData, HopLimit: DefaultHopLimit, SourceID: 1, Receivers: ids, Encoding: enc}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, &l, gopacket.Payload(make([]byte, 64))); err != nil {
		tb.Fatal(err)
	}
	if err := SMH(buf.Bytes()).Validate(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

var benchSink int

// BenchmarkParse is the fast path's per-packet header work: validate, then
// visit every receiver. It must report 0 allocs/op.
func BenchmarkParse(b *testing.B) {
	for _, k := range []int{1, 9, 64} {
		for _, enc := range []Encoding{EncList, EncBlocks} {
			pkt := benchHeader(b, k, enc)
			b.Run(fmt.Sprintf("k=%d/%v", k, enc), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(SMH(pkt).HeaderLen()))
				var sum int
				visit := func(id uint16) { sum += int(id) }
				for b.Loop() {
					h := SMH(pkt)
					if h.Validate() != nil {
						b.Fatal("invalid")
					}
					h.ForEachReceiver(visit)
				}
				benchSink = sum
			})
		}
	}
}

// BenchmarkLayerDecode is the gopacket layer on the same packets, for
// comparison (tools, not the fast path); steady state is also 0 allocs/op.
func BenchmarkLayerDecode(b *testing.B) {
	for _, k := range []int{1, 9, 64} {
		for _, enc := range []Encoding{EncList, EncBlocks} {
			pkt := benchHeader(b, k, enc)
			b.Run(fmt.Sprintf("k=%d/%v", k, enc), func(b *testing.B) {
				b.ReportAllocs()
				var l SMHLayer
				for b.Loop() {
					if l.DecodeFromBytes(pkt, gopacket.NilDecodeFeedback) != nil {
						b.Fatal("invalid")
					}
				}
				benchSink = len(l.Receivers)
			})
		}
	}
}

// BenchmarkPutHeader encodes the same receiver sets, random and clustered,
// in whichever encoding is smaller.
func BenchmarkPutHeader(b *testing.B) {
	for _, k := range []int{1, 9, 64} {
		for _, enc := range []Encoding{EncList, EncBlocks} {
			shape := "random"
			if enc == EncBlocks {
				shape = "clustered"
			}
			var l SMHLayer
			if err := l.DecodeFromBytes(benchHeader(b, k, enc), nil); err != nil {
				b.Fatal(err)
			}
			ids := slices.Clone(l.Receivers)
			out := make([]byte, HeaderLenFor(TypeData, ids))
			f := Fields{Type: TypeData, HopLimit: DefaultHopLimit, SourceID: 1}
			b.Run(fmt.Sprintf("k=%d/%s", k, shape), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if PutHeader(out, f, ids) == 0 {
						b.Fatal("PutHeader failed")
					}
				}
			})
		}
	}
}
