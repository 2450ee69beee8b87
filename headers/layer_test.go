package headers

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// vector is one line of testdata/vectors.txt.
type vector struct {
	name string
	line int
	data []byte
	err  error // nil for a valid vector

	// Expected fields of a valid vector.
	typ       Type
	flags     Flags
	hop       uint8
	enc       Encoding
	rsv       uint8
	src, sess uint16
	seq       uint32
	epoch     uint32
	count     uint16
	speaks    uint16
	rep       uint16
	rx        []uint16
	group     uint32
	payload   []byte
}

var sentinels = map[string]error{
	"ErrTruncated":   ErrTruncated,
	"ErrBadVersion":  ErrBadVersion,
	"ErrBadType":     ErrBadType,
	"ErrBadEncoding": ErrBadEncoding,
	"ErrBadSet":      ErrBadSet,
	"ErrBadFeedback": ErrBadFeedback,
	"ErrBadEpoch":    ErrBadEpoch,
}

func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	f, err := os.Open("testdata/vectors.txt")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := parseVector(line)
		if err != nil {
			tb.Fatalf("vectors.txt:%d: %v", ln, err)
		}
		if seen[v.name] {
			tb.Fatalf("vectors.txt:%d: duplicate name %q", ln, v.name)
		}
		seen[v.name] = true
		v.line = ln
		vs = append(vs, v)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(vs) == 0 {
		tb.Fatal("no vectors")
	}
	return vs
}

func parseVector(line string) (vector, error) {
	var v vector
	parts := strings.Split(line, "|")
	if len(parts) != 3 {
		return v, fmt.Errorf("want 3 |-separated fields, got %d", len(parts))
	}
	v.name = strings.TrimSpace(parts[0])
	if v.name == "" || strings.ContainsAny(v.name, " \t") {
		return v, fmt.Errorf("bad name %q", v.name)
	}
	data, err := hex.DecodeString(strings.Join(strings.Fields(parts[1]), ""))
	if err != nil {
		return v, fmt.Errorf("%s: hex: %v", v.name, err)
	}
	v.data = data
	exp := strings.Fields(parts[2])
	if len(exp) == 0 {
		return v, fmt.Errorf("%s: no expectation", v.name)
	}
	switch exp[0] {
	case "err":
		if len(exp) != 2 || sentinels[exp[1]] == nil {
			return v, fmt.Errorf("%s: want \"err NAME\" with a known sentinel, got %q", v.name, parts[2])
		}
		v.err = sentinels[exp[1]]
		return v, nil
	case "ok":
	default:
		return v, fmt.Errorf("%s: expectation must start with ok or err", v.name)
	}
	for _, kv := range exp[1:] {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return v, fmt.Errorf("%s: %q is not key=value", v.name, kv)
		}
		num := func(bits int) uint64 {
			if err != nil {
				return 0
			}
			var n uint64
			n, err = strconv.ParseUint(val, 0, bits)
			return n
		}
		switch k {
		case "type":
			switch val {
			case "DATA":
				v.typ = TypeData
			case "ACK":
				v.typ = TypeACK
			case "NACK":
				v.typ = TypeNACK
			case "CNP":
				v.typ = TypeCNP
			case "ABORT":
				v.typ = TypeABORT
			default:
				err = fmt.Errorf("type %q", val)
			}
		case "enc":
			switch val {
			case "list":
				v.enc = EncList
			case "blocks":
				v.enc = EncBlocks
			case "group":
				v.enc = EncGroup
			default:
				err = fmt.Errorf("enc %q", val)
			}
		case "flags":
			v.flags = Flags(num(8))
		case "hop":
			v.hop = uint8(num(8))
		case "rsv":
			v.rsv = uint8(num(4))
		case "src":
			v.src = uint16(num(16))
		case "sess":
			v.sess = uint16(num(16))
		case "seq":
			v.seq = uint32(num(32))
		case "epoch":
			v.epoch = uint32(num(32))
		case "count":
			v.count = uint16(num(16))
		case "speaks":
			v.speaks = uint16(num(16))
		case "rep":
			v.rep = uint16(num(16))
		case "group":
			v.group = uint32(num(32))
		case "rx":
			if val != "-" {
				v.rx, err = ParseIDSet(val)
			}
		case "payload":
			v.payload, err = hex.DecodeString(val)
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return v, fmt.Errorf("%s: %s: %v", v.name, kv, err)
		}
	}
	return v, nil
}

func (v vector) headerLen() int { return len(v.data) - len(v.payload) }

// TestVectors runs every vector through both codecs.
func TestVectors(t *testing.T) {
	vs := loadVectors(t)
	var nok, nerr int
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			verr := SMH(v.data).Validate()
			var l SMHLayer
			lerr := l.DecodeFromBytes(v.data, gopacket.NilDecodeFeedback)
			if verr != v.err {
				t.Errorf("Validate = %v, want %v", verr, v.err)
			}
			if lerr != v.err {
				t.Errorf("SMHLayer.DecodeFromBytes = %v, want %v", lerr, v.err)
			}
			if v.err != nil {
				nerr++
				return
			}
			nok++
			checkView(t, SMH(v.data), v)
			checkLayer(t, &l, v)
			checkReencode(t, &l, v)
		})
	}
	// The file must keep exercising both outcomes.
	if nok < 10 || nerr < 10 {
		t.Errorf("%d valid and %d invalid vectors; want at least 10 of each", nok, nerr)
	}
}

func checkView(t *testing.T, h SMH, v vector) {
	t.Helper()
	got := fmt.Sprintf("ver=%d type=%v flags=%#x hop=%d enc=%v rsv=%d src=%d sess=%d seq=%d epoch=%d",
		h.Version(), h.Type(), h.Flags(), h.HopLimit(), h.Encoding(), h[3]&0x0F, h.SourceID(), h.SessionID(), h.Sequence(), h.Epoch())
	want := fmt.Sprintf("ver=1 type=%v flags=%#x hop=%d enc=%v rsv=%d src=%d sess=%d seq=%d epoch=%d",
		v.typ, v.flags, v.hop, v.enc, v.rsv, v.src, v.sess, v.seq, v.epoch)
	if got != want {
		t.Errorf("view: got  %s\n           want %s", got, want)
	}
	if v.typ.IsFeedback() {
		if h.FeedbackCount() != v.count || h.SpeaksFor() != v.speaks || h.ReporterID() != v.rep {
			t.Errorf("view: count, speaks, rep = %d, %d, %d; want %d, %d, %d",
				h.FeedbackCount(), h.SpeaksFor(), h.ReporterID(), v.count, v.speaks, v.rep)
		}
	}
	if f := h.Fields(); f.Count != v.count || f.SpeaksFor != v.speaks || f.ReporterID != v.rep {
		t.Errorf("view: Fields() count, speaks, rep = %d, %d, %d; want %d, %d, %d",
			f.Count, f.SpeaksFor, f.ReporterID, v.count, v.speaks, v.rep)
	}
	if rx := h.AppendReceivers(nil); !slices.Equal(rx, v.rx) {
		t.Errorf("view: receivers %v, want %v", rx, v.rx)
	}
	var each []uint16
	h.ForEachReceiver(func(id uint16) { each = append(each, id) })
	if !slices.Equal(each, v.rx) {
		t.Errorf("view: ForEachReceiver %v, want %v", each, v.rx)
	}
	if v.enc == EncGroup && h.GroupID() != v.group {
		t.Errorf("view: group %#x, want %#x", h.GroupID(), v.group)
	}
	if h.HeaderLen() != v.headerLen() {
		t.Errorf("view: HeaderLen %d, want %d", h.HeaderLen(), v.headerLen())
	}
	if !bytes.Equal(h.Payload(), v.payload) {
		t.Errorf("view: payload %x, want %x", h.Payload(), v.payload)
	}
}

func checkLayer(t *testing.T, l *SMHLayer, v vector) {
	t.Helper()
	got := fmt.Sprintf("ver=%d type=%v flags=%#x hop=%d enc=%v rsv=%d src=%d sess=%d seq=%d epoch=%d count=%d speaks=%d rep=%d group=%#x",
		l.Version, l.Type, l.Flags, l.HopLimit, l.Encoding, l.Reserved, l.SourceID, l.SessionID, l.Sequence, l.Epoch, l.Count, l.SpeaksFor, l.ReporterID, l.Group)
	want := fmt.Sprintf("ver=1 type=%v flags=%#x hop=%d enc=%v rsv=%d src=%d sess=%d seq=%d epoch=%d count=%d speaks=%d rep=%d group=%#x",
		v.typ, v.flags, v.hop, v.enc, v.rsv, v.src, v.sess, v.seq, v.epoch, v.count, v.speaks, v.rep, v.group)
	if got != want {
		t.Errorf("layer: got  %s\n            want %s", got, want)
	}
	if !slices.Equal(l.Receivers, v.rx) {
		t.Errorf("layer: receivers %v, want %v", l.Receivers, v.rx)
	}
	if !bytes.Equal(l.LayerContents(), v.data[:v.headerLen()]) {
		t.Errorf("layer: contents %x, want %x", l.LayerContents(), v.data[:v.headerLen()])
	}
	if !bytes.Equal(l.LayerPayload(), v.payload) {
		t.Errorf("layer: payload %x, want %x", l.LayerPayload(), v.payload)
	}
}

// checkReencode serializes the decoded vector again, with the layer in the
// vector's own encoding and, when that is the smaller one, with PutHeader.
func checkReencode(t *testing.T, l *SMHLayer, v vector) {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, l, gopacket.Payload(v.payload)); err != nil {
		t.Fatalf("layer SerializeTo: %v", err)
	}
	if !bytes.Equal(buf.Bytes(), v.data) {
		t.Errorf("layer re-encoding\n got  %x\n want %x", buf.Bytes(), v.data)
	}
	if l.HeaderLen() != v.headerLen() {
		t.Errorf("layer HeaderLen %d, want %d", l.HeaderLen(), v.headerLen())
	}
	if v.rsv != 0 {
		return // PutHeader always writes the reserved nibble as zero
	}
	f := Fields{Type: v.typ, Flags: v.flags, HopLimit: v.hop, SourceID: v.src,
		SessionID: v.sess, Sequence: v.seq, Epoch: v.epoch, Count: v.count, SpeaksFor: v.speaks, ReporterID: v.rep}
	b := make([]byte, 256)
	var n int
	switch enc, _ := ChooseEncoding(v.rx); {
	case v.enc == EncGroup:
		n = PutGroupHeader(b, f, v.group)
	case enc == v.enc:
		n = PutHeader(b, f, v.rx)
	default:
		return // the vector deliberately uses the larger encoding
	}
	if !bytes.Equal(b[:n], v.data[:v.headerLen()]) {
		t.Errorf("PutHeader\n got  %x\n want %x", b[:n], v.data[:v.headerLen()])
	}
}

// TestLayerInPacket decodes SMH through gopacket's UDP port table, both with
// NewPacket and with the allocation-free DecodingLayerParser.
func TestLayerInPacket(t *testing.T) {
	smh := &SMHLayer{Type: TypeData, HopLimit: 16, SourceID: 7, SessionID: 1,
		Sequence: 99, Receivers: []uint16{64, 65, 66, 67, 68, 69, 70, 71, 72}}
	smh.UseSmallerEncoding()
	if smh.Encoding != EncBlocks {
		t.Fatalf("UseSmallerEncoding chose %v for one full-ish block", smh.Encoding)
	}
	build := func(port uint16) []byte {
		eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: []byte{10, 0, 0, 1}, DstIP: []byte{10, 0, 0, 2}}
		udp := &layers.UDP{SrcPort: 50000, DstPort: layers.UDPPort(port)}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
		if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, smh, gopacket.Payload("hi")); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}

	check := func(t *testing.T, frame []byte) {
		t.Helper()
		p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("decode error: %v", el.Error())
		}
		got, ok := p.Layer(LayerTypeSMH).(*SMHLayer)
		if !ok {
			t.Fatalf("no SMH layer in %v", p)
		}
		if !slices.Equal(got.Receivers, smh.Receivers) || got.Sequence != 99 || got.Encoding != EncBlocks {
			t.Errorf("decoded %+v", got)
		}
		if app := p.ApplicationLayer(); app == nil || string(app.Payload()) != "hi" {
			t.Errorf("application payload %v", app)
		}
	}
	t.Run("default port", func(t *testing.T) { check(t, build(DefaultUDPPort)) })
	t.Run("registered port", func(t *testing.T) {
		const port = 19471
		RegisterUDPPort(port)
		defer layers.RegisterUDPPortLayerType(port, gopacket.LayerTypePayload)
		check(t, build(port))
	})
	t.Run("unregistered port", func(t *testing.T) {
		p := gopacket.NewPacket(build(19472), layers.LayerTypeEthernet, gopacket.Default)
		if p.Layer(LayerTypeSMH) != nil {
			t.Error("SMH decoded on a port nobody registered")
		}
	})
	t.Run("DecodingLayerParser", func(t *testing.T) {
		var (
			eth layers.Ethernet
			ip  layers.IPv4
			udp layers.UDP
			l   SMHLayer
			pl  gopacket.Payload
		)
		parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip, &udp, &l, &pl)
		var decoded []gopacket.LayerType
		if err := parser.DecodeLayers(build(DefaultUDPPort), &decoded); err != nil {
			t.Fatal(err)
		}
		want := []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv4, layers.LayerTypeUDP, LayerTypeSMH, gopacket.LayerTypePayload}
		if !slices.Equal(decoded, want) {
			t.Fatalf("decoded %v, want %v", decoded, want)
		}
		if !slices.Equal(l.Receivers, smh.Receivers) || string(pl) != "hi" {
			t.Errorf("receivers %v payload %q", l.Receivers, pl)
		}
	})
	t.Run("malformed reports sentinel", func(t *testing.T) {
		frame := build(DefaultUDPPort)
		frame[len(frame)-2-FixedLen-BlockEntryLen] = 0x20 // version 2
		p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		el := p.ErrorLayer()
		if el == nil || !errors.Is(el.Error(), ErrBadVersion) {
			t.Fatalf("error layer %v, want ErrBadVersion", el)
		}
	})
}

func TestLayerSerializeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    SMHLayer
		want error
	}{
		{"reserved encoding", SMHLayer{Encoding: 3, Receivers: []uint16{1}}, ErrBadEncoding},
		{"blocks unsorted", SMHLayer{Encoding: EncBlocks, Receivers: []uint16{5, 3}}, ErrBadSet},
		{"blocks duplicate", SMHLayer{Encoding: EncBlocks, Receivers: []uint16{5, 5}}, ErrBadSet},
		{"list too long", SMHLayer{Encoding: EncList, Receivers: make([]uint16, 65536)}, ErrBadSet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := gopacket.NewSerializeBuffer()
			if err := tc.l.SerializeTo(buf, gopacket.SerializeOptions{}); err != tc.want {
				t.Errorf("SerializeTo = %v, want %v", err, tc.want)
			}
		})
	}
	// A list is written as given, so tests can build malformed packets.
	l := SMHLayer{Type: TypeData, Encoding: EncList, Receivers: []uint16{5, 3}}
	buf := gopacket.NewSerializeBuffer()
	if err := l.SerializeTo(buf, gopacket.SerializeOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := SMH(buf.Bytes()).Validate(); err != ErrBadSet {
		t.Errorf("unsorted list: Validate = %v, want ErrBadSet", err)
	}
}

func TestLayerUseSmallerEncoding(t *testing.T) {
	for _, tc := range []struct {
		ids  string
		want Encoding
	}{
		{"1", EncList},
		{"0-4", EncList},       // 10 bytes each: tie goes to the list
		{"0-5", EncBlocks},     // 12 vs 10
		{"0-4,64-68", EncList}, // 20 vs 20
		{"0-4,64-69", EncBlocks},
		{"0,100,200,300,400,500", EncList},
	} {
		ids, err := ParseIDSet(tc.ids)
		if err != nil {
			t.Fatal(err)
		}
		l := SMHLayer{Receivers: ids}
		l.UseSmallerEncoding()
		enc, _ := ChooseEncoding(ids)
		if l.Encoding != tc.want || enc != tc.want {
			t.Errorf("%s: layer chose %v, ChooseEncoding %v, want %v", tc.ids, l.Encoding, enc, tc.want)
		}
	}
}

func TestLayerDecodeResetsState(t *testing.T) {
	var l SMHLayer
	good := mustHex(t, "11 80 10 00 0002 0007 0001 00000064 0000 0007 0100 0003 000c")
	if err := l.DecodeFromBytes(good, nil); err != nil {
		t.Fatal(err)
	}
	data := mustHex(t, "100010200001000500020000006400000007")
	if err := l.DecodeFromBytes(data, nil); err != nil {
		t.Fatal(err)
	}
	if len(l.Receivers) != 0 || l.Count != 0 || l.SpeaksFor != 0 || l.ReporterID != 0 || l.Group != 7 {
		t.Errorf("state leaked from the previous decode: %+v", l)
	}
	if err := l.DecodeFromBytes(data[:5], nil); err != ErrTruncated {
		t.Fatalf("truncated: %v", err)
	}
	if l.LayerContents() != nil || l.LayerPayload() != nil {
		t.Error("failed decode left contents or payload from the previous packet")
	}
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
