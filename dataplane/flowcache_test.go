package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sparsecast/sparsecast/headers"
)

// TestFlowCacheMatchesFullPath sends the same streams through two switches,
// one with the flow cache and one without, and wants byte-identical output
// on every port, the same drop counts and the same aggregated feedback:
// streams of every layout, whose packets differ in what a flow's packets
// differ in (sequence number, IP ID, length, payload, checksums, among them
// wrong and absent ones).
func TestFlowCacheMatchesFullPath(t *testing.T) { flowCacheVsFullPath(t, 1, false) }

// TestFlowCacheRunsMatchFullPath is TestFlowCacheMatchesFullPath with
// bursts of many frames, each stream's next three back to back: runs of
// one flow (forwardBurst tries the previous packet's entry first) that end
// where the next stream starts or the burst ends.
func TestFlowCacheRunsMatchFullPath(t *testing.T) { flowCacheVsFullPath(t, 3, false) }

// TestFlowCacheShuffledRunsMatchFullPath: runs of four whose sequence
// numbers are out of order, the highest third (a run's aggregation update
// is made by its first cached packet, then once by the highest number of
// the rest, flushAgg; a stream's first packet in a burst often takes the
// full path, its flow's slot taken by another).
func TestFlowCacheShuffledRunsMatchFullPath(t *testing.T) { flowCacheVsFullPath(t, 4, true) }

// flowCacheVsFullPath sends each stream run frames in a row per round,
// every frame on its own burst if run is 1, else in bursts of BurstSize;
// shuffled sends a run of four in the order 2, 0, 3, 1 of their numbers.
func flowCacheVsFullPath(t *testing.T, run int, shuffled bool) {
	mutate := func(c *Config) {
		c.Groups = []GroupEntry{{ID: 42, Members: "2,3"}}
		c.Routes = append(c.Routes, RouteEntry{Receivers: "7", Port: "p0"})
	}
	on, off := newTestFabric(t, 4, mutate), newTestFabric(t, 4, mutate)
	off.w.flows.off = true
	rng := rand.New(rand.NewPCG(1, 2))
	type stream struct {
		o   frameOpts
		ack bool
	}
	var streams []stream
	for _, v6 := range []bool{false, true} {
		for _, vlan := range []bool{false, true} {
			for si, ids := range [][]uint16{{1}, {1, 2, 3}, {2, 3}, {1, 7, 30}, nil} {
				o := frameOpts{v6: v6, vlan: vlan, ids: ids,
					fields: headers.Fields{HopLimit: 5, SourceID: 100, SessionID: uint16(si + 1)}}
				if ids == nil {
					o.group = 42
				}
				streams = append(streams, stream{o: o})
			}
		}
	}
	streams = append(streams, stream{o: frameOpts{zeroCsum: true, ids: []uint16{1, 3},
		fields: headers.Fields{HopLimit: 5, SourceID: 100, SessionID: 20}}})
	// Streams with a Transfer Epoch (E: the set starts 4 bytes later), in
	// both IP versions; from round 21 on they are new transfers (another
	// epoch), which must restart the aggregate state on both paths alike.
	epochStreams := len(streams)
	streams = append(streams,
		stream{o: frameOpts{ids: []uint16{1, 2, 3}, fields: headers.Fields{HopLimit: 5, SourceID: 100, SessionID: 21, Epoch: 0xE0000001}}},
		stream{o: frameOpts{v6: true, group: 42, fields: headers.Fields{HopLimit: 5, SourceID: 100, SessionID: 22, Epoch: 0xE0000002}}})
	var burst [][]byte
	sendBurst := func() {
		if len(burst) > 0 {
			on.send(t, 0, burst...)
			off.send(t, 0, burst...)
			burst = burst[:0]
		}
	}
	for round := uint32(1); round <= 40; round++ {
		seq := round * uint32(run)
		for k := 0; k < len(streams)*run; k++ {
			si := k / run
			o := streams[si].o
			if si >= epochStreams && round > 20 {
				o.fields.Epoch += 0x100
			}
			pos := k % run
			if shuffled {
				pos = [4]int{2, 0, 3, 1}[pos]
			}
			o.fields.Sequence = seq - uint32(run-1-pos)
			o.payload = make([]byte, 1+rng.IntN(200))
			for i := range o.payload {
				o.payload[i] = byte(rng.Uint32())
			}
			fr := buildFrame(t, o)
			var m parsed
			pk := &Packet{Head: fr}
			if parseFrame(pk, &m, headers.DefaultUDPPort) != NumDropReasons {
				t.Fatal("test frame does not parse")
			}
			if !m.v6 {
				// Another IP ID, the header checksum kept right.
				binary.BigEndian.PutUint16(fr[m.ip+4:], uint16(rng.Uint32()))
				fr[m.ip+10], fr[m.ip+11] = 0, 0
				binary.BigEndian.PutUint16(fr[m.ip+10:], ipv4HeaderChecksum(fr[m.ip:m.udp]))
			}
			switch o.fields.Sequence % 7 {
			case 3:
				// A wrong UDP checksum stays wrong the same way.
				fr[m.udp+6] ^= 0x5A
			case 5:
				// Ethernet padding beyond the IP datagram.
				fr = append(fr, 0, 0, 0, 0)
			}
			if burst = append(burst, fr); run == 1 || len(burst) == BurstSize {
				sendBurst()
			}
		}
		sendBurst()
		if round%10 == 0 {
			// Every receiver acknowledges: the aggregates the two
			// switches send up must match, so their state does.
			for id := uint16(1); id <= 3; id++ {
				for si := range streams {
					o := streams[si].o
					if si >= epochStreams && round > 20 {
						o.fields.Epoch += 0x100
					}
					ack := buildFrame(t, frameOpts{v6: o.v6, vlan: o.vlan, fields: headers.Fields{Type: headers.TypeACK,
						HopLimit: 5, SourceID: 100, SessionID: o.fields.SessionID, Sequence: seq, Epoch: o.fields.Epoch,
						SpeaksFor: 1, ReporterID: id}})
					on.send(t, int(id), ack)
					off.send(t, int(id), ack)
				}
			}
		}
		for p := 0; p < 4; p++ {
			a, b := on.recv(p), off.recv(p)
			if len(a) != len(b) {
				t.Fatalf("seq %d port %d: %d frames with the cache, %d without", seq, p, len(a), len(b))
			}
			for i := range a {
				if !bytes.Equal(a[i], b[i]) {
					t.Fatalf("seq %d port %d frame %d differs:\ncache %x\nfull  %x", seq, p, i, a[i], b[i])
				}
			}
		}
	}
	for r := DropReason(0); r < NumDropReasons; r++ {
		if a, b := on.w.counters.Drops[r].Load(), off.w.counters.Drops[r].Load(); a != b {
			t.Errorf("%v drops: %d with the cache, %d without", r, a, b)
		}
	}
	if a, b := on.w.counters.StreamsRestarted.Load(), off.w.counters.StreamsRestarted.Load(); a != 2 || b != 2 {
		t.Errorf("streams restarted: %d with the cache, %d without, want 2 (the epoch streams' new transfers)", a, b)
	}
	if a, b := on.w.counters.FanoutSum.Load(), off.w.counters.FanoutSum.Load(); a != b {
		t.Errorf("fan-out sum %d with the cache, %d without", a, b)
	}
	// The receivers' and upstreams' sequence state itself, which the ACKs
	// above show only in part.
	for i := range on.w.agg.streams {
		a, b := &on.w.agg.streams[i], &off.w.agg.streams[i]
		for j := range a.ups {
			if a.ups[j].highest != b.ups[j].highest {
				t.Errorf("stream %d upstream %d: highest %d with the cache, %d without", i, j, a.ups[j].highest, b.ups[j].highest)
			}
		}
		if len(a.recv) != len(b.recv) {
			t.Fatalf("stream %d: %d receivers with the cache, %d without", i, len(a.recv), len(b.recv))
		}
		for j := range a.recv {
			if ra, rb := a.recv[j], b.recv[j]; ra.first != rb.first || ra.last != rb.last || ra.up != rb.up || ra.port != rb.port {
				t.Errorf("stream %d receiver %d: first/last/up/port %d/%d/%d/%d with the cache, %d/%d/%d/%d without",
					i, ra.id, ra.first, ra.last, ra.up, ra.port, rb.first, rb.last, rb.up, rb.port)
			}
		}
	}
	if on.w.pool.Available() != on.w.pool.Cap() {
		t.Errorf("leaked %d buffers", on.w.pool.Cap()-on.w.pool.Available())
	}
	hits := 0
	for i := range on.w.flows.e {
		if on.w.flows.e[i].valid {
			hits++
		}
	}
	if hits == 0 {
		t.Error("no flow was cached")
	}
}

// TestFlowCacheFollowsTables: a new snapshot takes effect from the next
// packet on, cached flow or not.
func TestFlowCacheFollowsTables(t *testing.T) {
	f := newTestFabric(t, 3, nil)
	send := func(seq uint32) {
		f.send(t, 0, buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 3, Sequence: seq}, ids: []uint16{1}, payload: []byte("p")}))
	}
	send(1)
	send(2)
	if n := len(f.recv(1)); n != 2 {
		t.Fatalf("port 1 got %d frames", n)
	}
	rt := f.sw.Tables().Routes.Clone()
	rt.Set(1, 2)
	f.sw.Publish(&Tables{Generation: 2, Routes: rt})
	send(3)
	if a, b := len(f.recv(1)), len(f.recv(2)); a != 0 || b != 1 {
		t.Fatalf("after the route moved: port 1 got %d, port 2 %d", a, b)
	}
}

func BenchmarkFlowLookup(b *testing.B) {
	for _, k := range []int{1, 9} {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			s, err := NewBenchSwitch(k, 64+2*k, PollBusy, -1)
			if err != nil {
				b.Fatal(err)
			}
			w := s.workers[0]
			w.flows.off = false
			b.ReportAllocs()
			b.ResetTimer()
			for pkts := 0; pkts < b.N; {
				pkts += s.Step()
			}
		})
	}
}
