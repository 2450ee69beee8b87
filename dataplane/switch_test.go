package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sparsecast/sparsecast/headers"
)

// testFabric is one switch over in-memory ports; host[i] is the far end of
// switch port i.
type testFabric struct {
	sw    *Switch
	w     *Worker
	host  []*MemPort
	htx   []TxQueue
	hpool *Pool
}

// newTestFabric builds a switch with nports ports; receiver i+1 is routed to
// port i+1 for i < nports-1, port 0 faces the sender.
func newTestFabric(t testing.TB, nports int, mutate func(*Config)) *testFabric {
	t.Helper()
	cfg := &Config{Name: "t", Buffers: 4096}
	for i := 0; i < nports; i++ {
		cfg.Ports = append(cfg.Ports, PortConfig{
			Name: fmt.Sprintf("p%d", i), Type: "mem",
			NeighborMAC: fmt.Sprintf("02:00:00:00:00:%02x", i),
			NeighborIP:  fmt.Sprintf("10.0.%d.2", i),
		})
		if i > 0 {
			cfg.Routes = append(cfg.Routes, RouteEntry{Receivers: fmt.Sprint(i), Port: fmt.Sprintf("p%d", i)})
		}
	}
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	f := &testFabric{hpool: NewPool(8192, cfg.BufferSize)}
	ports := make([]Port, nports)
	for i := range ports {
		sp, hp := NewMemPair(fmt.Sprintf("p%d", i), fmt.Sprintf("h%d", i), 4096, cfg.BufferSize)
		ports[i] = sp
		f.host = append(f.host, hp)
		tx, err := hp.OpenTx()
		if err != nil {
			t.Fatal(err)
		}
		f.htx = append(f.htx, tx)
	}
	tb, err := TablesFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.sw, err = NewSwitch(cfg, ports, tb)
	if err != nil {
		t.Fatal(err)
	}
	f.w = f.sw.workers[0]
	return f
}

// send puts frames on host port i's wire, then runs one worker round.
func (f *testFabric) send(t testing.TB, i int, frames ...[]byte) {
	t.Helper()
	for _, fr := range frames {
		pk := f.hpool.Get()
		pk.SetFrame(copy(pk.RxRoom(), fr))
		if n, err := f.htx[i].TxBurst([]*Packet{pk}); n != 1 || err != nil {
			t.Fatalf("host tx: %d %v", n, err)
		}
	}
	for f.w.poll() > 0 {
		f.w.flush()
	}
	f.w.flush()
}

// recv returns every frame waiting at host port i.
func (f *testFabric) recv(i int) [][]byte {
	var out [][]byte
	var burst [BurstSize]*Packet
	for {
		n, _ := f.host[i].RxBurst(f.hpool, burst[:])
		if n == 0 {
			return out
		}
		for _, pk := range burst[:n] {
			out = append(out, slices.Clone(pk.Head))
			pk.Free()
		}
	}
}

type frameOpts struct {
	v6       bool
	zeroCsum bool
	fields   headers.Fields
	ids      []uint16
	group    uint32
	payload  []byte
	vlan     bool
}

// buildFrame serializes Ethernet/IP/UDP/SMH/payload with gopacket, checksums
// filled in: the reference the switch's rewrite is checked against.
func buildFrame(t testing.TB, o frameOpts) []byte {
	t.Helper()
	smh := make([]byte, 4096)
	var n int
	if o.group != 0 {
		n = headers.PutGroupHeader(smh, o.fields, o.group)
	} else {
		n = headers.PutHeader(smh, o.fields, o.ids)
	}
	if n == 0 {
		t.Fatalf("PutHeader failed for %v", o.ids)
	}
	body := append(smh[:n:n], o.payload...)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 1, 1, 1, 1, 1}, DstMAC: net.HardwareAddr{2, 9, 9, 9, 9, 9}, EthernetType: layers.EthernetTypeIPv4}
	udp := &layers.UDP{SrcPort: 50000, DstPort: headers.DefaultUDPPort}
	ls := []gopacket.SerializableLayer{eth}
	if o.vlan {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv4})
	}
	if o.v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
		if o.vlan {
			ls[1].(*layers.Dot1Q).Type = layers.EthernetTypeIPv6
		} else {
			eth.EthernetType = layers.EthernetTypeIPv6
		}
		_ = udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 2}, DstIP: net.IP{10, 0, 0, 1}}
		_ = udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
	}
	ls = append(ls, udp, gopacket.Payload(body))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: !o.zeroCsum}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkFrame verifies lengths and checksums of a frame the switch sent and
// returns its SMH.
func checkFrame(t testing.TB, fr []byte) (headers.SMH, *parsed) {
	return checkFrameCsum(t, fr, true)
}

// udpChecksumOK tells whether a frame's checksums hold (or the IPv4 UDP
// checksum is absent); the switch never verifies them, so a frame that
// arrives broken leaves broken.
func udpChecksumOK(fr []byte) bool {
	pk := &Packet{Head: fr}
	var m parsed
	if r := parseFrame(pk, &m, headers.DefaultUDPPort); r != NumDropReasons {
		return false
	}
	fr = pk.Head
	if !m.v6 && ^fold(sum16(fr[m.ip:m.udp], 0)) != 0 {
		return false
	}
	if binary.BigEndian.Uint16(fr[m.udp+6:]) == 0 {
		return !m.v6
	}
	var acc uint64
	if m.v6 {
		acc = sum16(fr[m.ip+8:m.ip+40], 0)
	} else {
		acc = sum16(fr[m.ip+12:m.ip+20], 0)
	}
	acc += ipProtoUDP + uint64(len(fr)-m.udp)
	return ^fold(sum16(fr[m.udp:], acc)) == 0
}

func checkFrameCsum(t testing.TB, fr []byte, csums bool) (headers.SMH, *parsed) {
	t.Helper()
	pk := &Packet{Head: fr}
	var m parsed
	if r := parseFrame(pk, &m, headers.DefaultUDPPort); r != NumDropReasons && r != DropHopLimit {
		t.Fatalf("switch sent a frame it would drop: %v", r)
	}
	if len(pk.Head) != len(fr) {
		t.Fatalf("frame has %d bytes beyond its IP length", len(fr)-len(pk.Head))
	}
	if !csums {
		return headers.SMH(fr[m.smh:]), &m
	}
	if !m.v6 {
		if c := ^fold(sum16(fr[m.ip:m.udp], 0)); c != 0 {
			t.Fatalf("bad IPv4 header checksum")
		}
	}
	csum := binary.BigEndian.Uint16(fr[m.udp+6:])
	if csum != 0 || m.v6 {
		var acc uint64
		if m.v6 {
			acc = sum16(fr[m.ip+8:m.ip+40], 0)
		} else {
			acc = sum16(fr[m.ip+12:m.ip+20], 0)
		}
		acc += ipProtoUDP + uint64(len(fr)-m.udp)
		if c := ^fold(sum16(fr[m.udp:], acc)); c != 0 {
			t.Fatalf("bad UDP checksum %#04x (residue %#04x)", csum, c)
		}
	}
	return headers.SMH(fr[m.smh:]), &m
}

func TestReplicateSplitsSetByPort(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    frameOpts
	}{
		{"ipv4", frameOpts{}},
		{"ipv6", frameOpts{v6: true}},
		{"ipv4-no-udp-checksum", frameOpts{zeroCsum: true}},
		{"vlan-ipv6", frameOpts{v6: true, vlan: true}},
		{"blocks", frameOpts{ids: []uint16{1, 2, 3, 4, 5, 6, 7}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFabric(t, 9, nil)
			o := tc.o
			o.fields = headers.Fields{Type: headers.TypeData, HopLimit: 5, SourceID: 0, SessionID: 3, Sequence: 77}
			if o.ids == nil {
				o.ids = []uint16{1, 3, 4, 8}
			}
			o.payload = []byte("the same bytes to many nodes, odd length.")
			f.send(t, 0, buildFrame(t, o))
			for port := 1; port < 9; port++ {
				got := f.recv(port)
				want := slices.Contains(o.ids, uint16(port))
				if !want {
					if len(got) != 0 {
						t.Fatalf("port %d got %d frames, want none", port, len(got))
					}
					continue
				}
				if len(got) != 1 {
					t.Fatalf("port %d got %d frames, want 1", port, len(got))
				}
				h, m := checkFrame(t, got[0])
				if ids := h.AppendReceivers(nil); !slices.Equal(ids, []uint16{uint16(port)}) {
					t.Fatalf("port %d: set %v, want [%d]", port, ids, port)
				}
				if h.HopLimit() != 4 || h.Sequence() != 77 || h.SessionID() != 3 {
					t.Fatalf("port %d: fields %+v", port, h.Fields())
				}
				if string(h.Payload()) != string(o.payload) {
					t.Fatalf("port %d: payload %q", port, h.Payload())
				}
				e := f.w.egress[port]
				if !slices.Equal(got[0][0:6], e.nbrMAC[:]) || !slices.Equal(got[0][6:12], e.mac[:]) {
					t.Fatalf("port %d: MACs not rewritten", port)
				}
				if !m.v6 && !slices.Equal(got[0][m.ip+16:m.ip+20], e.nbrIP4[:]) {
					t.Fatalf("port %d: destination IP not rewritten", port)
				}
			}
			if f.w.pool.Available() != f.w.pool.Cap() {
				t.Fatalf("leaked %d buffers", f.w.pool.Cap()-f.w.pool.Available())
			}
			if got := f.w.counters.FanoutSum.Load(); got != uint64(len(o.ids)) {
				t.Fatalf("fanout sum %d, want %d", got, len(o.ids))
			}
		})
	}
}

func TestBranchKeepsAllItsReceivers(t *testing.T) {
	// Receivers 1-64 all routed to p1, 65-70 to p2: one copy each, sets
	// re-encoded in the smaller encoding.
	f := newTestFabric(t, 3, func(c *Config) {
		c.Routes = []RouteEntry{{Receivers: "1-64", Port: "p1"}, {Receivers: "65-70", Port: "p2"}}
	})
	ids := []uint16{}
	for i := uint16(1); i <= 70; i++ {
		ids = append(ids, i)
	}
	f.send(t, 0, buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 3}, ids: ids, payload: []byte("x")}))
	for port, want := range map[int][]uint16{1: ids[:64], 2: ids[64:]} {
		got := f.recv(port)
		if len(got) != 1 {
			t.Fatalf("port %d: %d frames", port, len(got))
		}
		h, _ := checkFrame(t, got[0])
		if r := h.AppendReceivers(nil); !slices.Equal(r, want) {
			t.Fatalf("port %d: %v want %v", port, r, want)
		}
		if enc, _ := headers.ChooseEncoding(want); h.Encoding() != enc {
			t.Fatalf("port %d: encoding %v, want %v", port, h.Encoding(), enc)
		}
	}
}

func TestGroupIsExpanded(t *testing.T) {
	f := newTestFabric(t, 5, func(c *Config) {
		c.Groups = []GroupEntry{{ID: 42, Members: "2,4"}}
	})
	f.send(t, 0, buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 3}, group: 42, payload: []byte("g")}))
	for port := 1; port < 5; port++ {
		got := f.recv(port)
		if (port == 2 || port == 4) != (len(got) == 1) {
			t.Fatalf("port %d got %d frames", port, len(got))
		}
		if len(got) == 1 {
			h, _ := checkFrame(t, got[0])
			if r := h.AppendReceivers(nil); !slices.Equal(r, []uint16{uint16(port)}) {
				t.Fatalf("port %d: set %v", port, r)
			}
		}
	}
	f.send(t, 0, buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 3}, group: 7, payload: []byte("g")}))
	if got := f.w.counters.Drops[DropNoGroup].Load(); got != 1 {
		t.Fatalf("no_group drops %d, want 1", got)
	}
}

func TestFeedbackGoesTowardsSource(t *testing.T) {
	f := newTestFabric(t, 4, func(c *Config) {
		c.Routes = append(c.Routes, RouteEntry{Receivers: "0", Port: "p0"})
	})
	fb := buildFrame(t, frameOpts{fields: headers.Fields{Type: headers.TypeNACK, HopLimit: 3, SourceID: 0, Sequence: 9, Count: 2, SpeaksFor: 1, ReporterID: 2}, payload: nil})
	f.send(t, 2, fb)
	got := f.recv(0)
	if len(got) != 1 {
		t.Fatalf("source port got %d frames", len(got))
	}
	h, _ := checkFrame(t, got[0])
	if h.Type() != headers.TypeNACK || h.ReporterID() != 2 || h.HopLimit() != 2 || h.FeedbackCount() != 2 {
		t.Fatalf("feedback changed: %+v", h.Fields())
	}
}

func TestMalformedAreDroppedAndCounted(t *testing.T) {
	f := newTestFabric(t, 3, nil)
	good := buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 3}, ids: []uint16{1, 2}, payload: []byte("p")})
	smh := 14 + 20 + 8
	mut := func(fn func(b []byte) []byte) []byte { return fn(slices.Clone(good)) }
	cases := map[DropReason][]byte{
		DropTruncated:   good[:smh+5],
		DropBadVersion:  mut(func(b []byte) []byte { b[smh] = 0x20; return b }),
		DropBadType:     mut(func(b []byte) []byte { b[smh] = 0x1F; return b }),
		DropBadEncoding: mut(func(b []byte) []byte { b[smh+3] = 0x70; return b }),
		DropBadSet:      mut(func(b []byte) []byte { b[smh+14], b[smh+15], b[smh+16], b[smh+17] = 0, 2, 0, 1; return b }),
		DropHopLimit:    mut(func(b []byte) []byte { b[smh+2] = 0; return b }),
		DropNotSMH:      mut(func(b []byte) []byte { b[12] = 0x08; b[13] = 0x06; return b }),
	}
	// Wrong lengths: a UDP length beyond the IP datagram, an IP length
	// beyond the frame.
	wrongUDP := mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[14+20+4:], 2000); return b })
	wrongIP := mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[14+2:], 3000); return b })
	for r, fr := range cases {
		f.send(t, 0, fr)
		if got := f.w.counters.Drops[r].Load(); got != 1 {
			t.Errorf("%v: counted %d, want 1", r, got)
		}
	}
	f.send(t, 0, wrongUDP, wrongIP)
	if got := f.w.counters.Drops[DropTruncated].Load(); got != 3 {
		t.Errorf("truncated after wrong lengths: %d, want 3", got)
	}
	for p := 1; p < 3; p++ {
		if got := f.recv(p); len(got) != 0 {
			t.Fatalf("port %d forwarded %d malformed frames", p, len(got))
		}
	}
	if f.w.pool.Available() != f.w.pool.Cap() {
		t.Fatal("buffers leaked on drop")
	}
}

func TestNoRouteAndIngressLoop(t *testing.T) {
	f := newTestFabric(t, 3, func(c *Config) {
		c.Routes = append(c.Routes, RouteEntry{Receivers: "9", Port: "p0"})
	})
	// 9 routes back out the ingress port, 30 has no route, 1 goes out.
	f.send(t, 0, buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 3}, ids: []uint16{1, 9, 30}, payload: []byte("p")}))
	if len(f.recv(1)) != 1 || len(f.recv(0)) != 0 {
		t.Fatal("wrong copies")
	}
	if f.w.counters.Drops[DropNoRoute].Load() != 1 || f.w.counters.Drops[DropIngressPort].Load() != 1 {
		t.Fatalf("drops: no_route %d ingress %d", f.w.counters.Drops[DropNoRoute].Load(), f.w.counters.Drops[DropIngressPort].Load())
	}
}

func TestQueueFullAndFaultInjection(t *testing.T) {
	f := newTestFabric(t, 3, func(c *Config) {
		c.Ports[2].Fault = FaultConfig{Loss: 0.2, Burst: 2, Seed: 7}
	})
	fr := buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 3}, ids: []uint16{1, 2}, payload: []byte("p")})
	const n = 2000
	for i := 0; i < n; i += 100 {
		frames := make([][]byte, 100)
		for j := range frames {
			frames[j] = fr
		}
		f.send(t, 0, frames...)
		f.recv(1)
	}
	got2 := len(f.recv(2))
	dropped := int(f.w.counters.Drops[DropFaultInjected].Load())
	if got2+dropped != n {
		t.Fatalf("p2: %d delivered + %d injected != %d", got2, dropped, n)
	}
	// Expected loss with burst 2 at start probability 0.2: about 1/3.
	if dropped < n/5 || dropped > n/2 {
		t.Fatalf("injected %d of %d, far from the configured rate", dropped, n)
	}
}

func TestTablesSwapWithoutStopping(t *testing.T) {
	f := newTestFabric(t, 3, nil)
	fr := buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 3}, ids: []uint16{1}, payload: []byte("p")})
	f.send(t, 0, fr)
	if len(f.recv(1)) != 1 {
		t.Fatal("no copy before swap")
	}
	rt := f.sw.Tables().Routes.Clone()
	rt.Set(1, 2)
	f.sw.Publish(&Tables{Generation: 2, Routes: rt})
	f.send(t, 0, fr)
	if len(f.recv(1)) != 0 || len(f.recv(2)) != 1 {
		t.Fatal("new table not used")
	}
}

func TestFastRerouteAndUturn(t *testing.T) {
	// p0 faces the sender, receivers 1 and 2 sit behind p1 and p2; p3 is
	// another neighbour.
	f := newTestFabric(t, 4, nil)
	rt := NewRouteTable()
	rt.SetWithBackup(1, 1, 3)
	rt.SetWithBackup(2, 2, 0) // backup is back towards the sender
	rt.SetWithBackup(3, 0, 2) // primary points back at the sender's port
	var down PortSet
	down.Add(1)
	down.Add(2)
	if moved := rt.Resolve(&down); moved != 2 {
		t.Fatalf("moved %d entries, want 2", moved)
	}
	if rt.Lookup(1) != 3 || rt.Lookup(2) != 0 || rt.Lookup(3) != 0 {
		t.Fatalf("resolved to %d %d %d", rt.Lookup(1), rt.Lookup(2), rt.Lookup(3))
	}
	f.sw.Publish(&Tables{Generation: 2, Routes: rt})
	f.send(t, 0, buildFrame(t, frameOpts{fields: headers.Fields{HopLimit: 3}, ids: []uint16{1, 2, 3}, payload: []byte("p")}))
	// 1 goes to its backup p3; 2 is rerouted back out the ingress port (a
	// U-turn); 3's primary is the ingress port, so it takes its backup p2.
	want := map[int][]uint16{3: {1}, 0: {2}, 2: {3}}
	for port := 0; port < 4; port++ {
		got := f.recv(port)
		if len(got) != len(want[port]) && !(len(got) == 1 && want[port] != nil) {
			t.Fatalf("port %d got %d frames", port, len(got))
		}
		if want[port] == nil {
			continue
		}
		h, _ := checkFrame(t, got[0])
		if r := h.AppendReceivers(nil); !slices.Equal(r, want[port]) {
			t.Fatalf("port %d carries %v, want %v", port, r, want[port])
		}
	}
	down.Remove(1)
	down.Remove(2)
	if moved := rt.Resolve(&down); moved != 0 || rt.Lookup(1) != 1 {
		t.Fatalf("links back up: moved %d, receiver 1 on %d", moved, rt.Lookup(1))
	}
}
