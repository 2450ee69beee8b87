package wireshark

// TestDissector writes a pcap of generated frames (dataplane.BuildFrame for
// list, blocks and feedback; gopacket with headers.SMHLayer for the group
// encoding and for malformed headers, which BuildFrame refuses to write),
// runs tshark with smh.lua over it, and checks that every field tshark
// prints equals what was encoded. TestDissectorLabCapture does the same for
// testdata/lab-capture.pcap, traffic captured in a lab by TestLabCapture
// (lab_test.go, build tag lab), against what the lab's sender sent.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/endpoint"
	"github.com/sparsecast/sparsecast/headers"
)

var (
	srcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	dstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	srcIP  = net.IPv4(10, 77, 0, 2)
	dstIP  = net.IPv4(10, 77, 0, 1)
)

// want is one frame and the tshark fields it must show.
type want struct {
	name  string
	frame []byte
	// fields in the order of tsharkFields; "" means absent.
	fields map[string]string
}

var tsharkFields = []string{
	"smh.version", "smh.type", "smh.flags", "smh.hop", "smh.enc", "smh.rsv", "smh.setcount",
	"smh.src", "smh.sess", "smh.seq", "smh.epoch", "smh.fb.count", "smh.fb.abort_reason", "smh.fb.speaks_for", "smh.fb.reporter",
	"smh.id", "smh.block.index", "smh.group", "smh.receiver", "smh.receivers",
	"smh.header_len", "smh.payload_len", "smh.error",
}

func build(t *testing.T, f headers.Fields, ids []uint16, payload []byte) []byte {
	t.Helper()
	b, err := dataplane.BuildFrame(dataplane.FrameSpec{
		SrcMAC: srcMAC, DstMAC: dstMAC, SrcIP: srcIP, DstIP: dstIP, SrcPort: 50000,
		Fields: f, Receivers: ids, Payload: payload,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// layered serializes an SMHLayer as written (any encoding, even invalid).
func layered(t *testing.T, l *headers.SMHLayer, payload []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: srcIP, DstIP: dstIP}
	udp := &layers.UDP{SrcPort: 50000, DstPort: layers.UDPPort(headers.DefaultUDPPort)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, l, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawSMH wraps SMH bytes as they are, even ones no codec writes, in
// Ethernet, IPv4 and UDP to the SMH port.
func rawSMH(t *testing.T, smh []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: srcIP, DstIP: dstIP}
	udp := &layers.UDP{SrcPort: 50000, DstPort: layers.UDPPort(headers.DefaultUDPPort)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(smh)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// groupCountZero is a DATA in the group encoding with Set Count 0 that
// ends right after the fixed part: no Group ID to read. The spec (docs/smh.md:
// the group encoding has Set Count 1) and both Go codecs reject it as
// bad_set; the dissector once read the missing Group ID and stopped with a
// Lua error instead, showing no smh.error.
var groupCountZero = []byte{0x10, 0x00, 16, byte(headers.EncGroup) << 4, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1}

func writePcap(path string, frames [][]byte) error {
	var b bytes.Buffer
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // Ethernet
	b.Write(hdr)
	for i, f := range frames {
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[0:], uint32(1700000000+i))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(f)))
		b.Write(rec)
		b.Write(f)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func cases(t *testing.T) []want {
	pay := []byte("hello, smh")
	return []want{
		{"data-list", build(t, headers.Fields{Type: headers.TypeData, HopLimit: 16, SourceID: 7, SessionID: 1, Sequence: 5}, []uint16{1, 5, 9}, pay),
			map[string]string{"smh.version": "1", "smh.type": "0", "smh.flags": "0x00", "smh.hop": "16", "smh.enc": "0", "smh.rsv": "0x00",
				"smh.setcount": "3", "smh.src": "7", "smh.sess": "1", "smh.seq": "5", "smh.id": "1,5,9", "smh.receiver": "1,5,9",
				"smh.receivers": "1,5,9", "smh.header_len": "20", "smh.payload_len": "10"}},
		{"data-blocks", build(t, headers.Fields{Type: headers.TypeData, Flags: headers.FlagRetransmit | headers.FlagFinal, HopLimit: 8, SourceID: 258, SessionID: 0xbeef, Sequence: 0xffffffff},
			concat(idRange(0, 15), idRange(63, 79), idRange(128, 132), []uint16{65535}), nil),
			map[string]string{"smh.version": "1", "smh.type": "0", "smh.flags": "0x50", "smh.hop": "8", "smh.enc": "1", "smh.rsv": "0x00",
				"smh.setcount": "4", "smh.src": "258", "smh.sess": "48879", "smh.seq": "4294967295", "smh.block.index": "0,1,2,1023",
				"smh.receiver": joinIDs(concat(idRange(0, 15), idRange(63, 79), idRange(128, 132), []uint16{65535})), "smh.receivers": "0-15,63-79,128-132,65535",
				"smh.header_len": "54", "smh.payload_len": "0"}},
		{"data-group", layered(t, &headers.SMHLayer{Type: headers.TypeData, HopLimit: 1, Encoding: headers.EncGroup, SourceID: 5, SessionID: 2, Sequence: 100, Group: 0xdeadbeef}, []byte{0, 0xff}),
			map[string]string{"smh.version": "1", "smh.type": "0", "smh.flags": "0x00", "smh.hop": "1", "smh.enc": "2", "smh.rsv": "0x00",
				"smh.setcount": "1", "smh.src": "5", "smh.sess": "2", "smh.seq": "100", "smh.group": "3735928559",
				"smh.header_len": "18", "smh.payload_len": "2"}},
		{"ack", build(t, headers.Fields{Type: headers.TypeACK, HopLimit: 16, SourceID: 7, SessionID: 1, Sequence: 100, SpeaksFor: 1, ReporterID: 9}, nil, nil),
			map[string]string{"smh.version": "1", "smh.type": "1", "smh.flags": "0x00", "smh.hop": "16", "smh.enc": "0", "smh.rsv": "0x00",
				"smh.setcount": "0", "smh.src": "7", "smh.sess": "1", "smh.seq": "100", "smh.fb.count": "0", "smh.fb.speaks_for": "1",
				"smh.fb.reporter": "9", "smh.receivers": "", "smh.header_len": "20", "smh.payload_len": "0"}},
		{"nack-aggregated", build(t, headers.Fields{Type: headers.TypeNACK, Flags: headers.FlagAggregated, HopLimit: 16, SourceID: 7, SessionID: 1, Sequence: 16, Count: 3, SpeaksFor: 2, ReporterID: 512}, []uint16{5, 6}, []byte{0xca, 0xfe}),
			map[string]string{"smh.version": "1", "smh.type": "2", "smh.flags": "0x80", "smh.hop": "16", "smh.enc": "0", "smh.rsv": "0x00",
				"smh.setcount": "2", "smh.src": "7", "smh.sess": "1", "smh.seq": "16", "smh.fb.count": "3", "smh.fb.speaks_for": "2",
				"smh.fb.reporter": "512", "smh.id": "5,6", "smh.receiver": "5,6", "smh.receivers": "5-6", "smh.header_len": "24", "smh.payload_len": "2"}},
		{"cnp-blocks", build(t, headers.Fields{Type: headers.TypeCNP, Flags: headers.FlagAggregated | headers.FlagCongestion, HopLimit: 15, SourceID: 7, SessionID: 1, Sequence: 32, Count: 7, SpeaksFor: 64, ReporterID: 512}, idRange(320, 383), nil),
			map[string]string{"smh.version": "1", "smh.type": "3", "smh.flags": "0xa0", "smh.hop": "15", "smh.enc": "1", "smh.rsv": "0x00",
				"smh.setcount": "1", "smh.src": "7", "smh.sess": "1", "smh.seq": "32", "smh.fb.count": "7", "smh.fb.speaks_for": "64",
				"smh.fb.reporter": "512", "smh.block.index": "5", "smh.receiver": joinIDs(idRange(320, 383)), "smh.receivers": "320-383",
				"smh.header_len": "30", "smh.payload_len": "0"}},
		{"data-epoch", build(t, headers.Fields{Type: headers.TypeData, HopLimit: 16, SourceID: 7, SessionID: 9, Sequence: 0, Epoch: 0xdeadbeef}, []uint16{64, 128, 192}, pay),
			map[string]string{"smh.version": "1", "smh.type": "0", "smh.flags": "0x08", "smh.hop": "16", "smh.enc": "0", "smh.rsv": "0x00",
				"smh.setcount": "3", "smh.src": "7", "smh.sess": "9", "smh.seq": "0", "smh.epoch": "0xdeadbeef", "smh.id": "64,128,192",
				"smh.receiver": "64,128,192", "smh.receivers": "64,128,192", "smh.header_len": "24", "smh.payload_len": "10"}},
		{"ack-epoch-aggregated", build(t, headers.Fields{Type: headers.TypeACK, Flags: headers.FlagAggregated, HopLimit: 15, SourceID: 7, SessionID: 9, Sequence: 2914, Epoch: 0x01020304, SpeaksFor: 2, ReporterID: 0xfffe}, []uint16{64, 128}, nil),
			map[string]string{"smh.version": "1", "smh.type": "1", "smh.flags": "0x88", "smh.hop": "15", "smh.enc": "0", "smh.rsv": "0x00",
				"smh.setcount": "2", "smh.src": "7", "smh.sess": "9", "smh.seq": "2914", "smh.epoch": "0x01020304", "smh.fb.count": "0",
				"smh.fb.speaks_for": "2", "smh.fb.reporter": "65534", "smh.id": "64,128", "smh.receiver": "64,128", "smh.receivers": "64,128",
				"smh.header_len": "28", "smh.payload_len": "0"}},
		{"abort-read-only", build(t, headers.Fields{Type: headers.TypeABORT, HopLimit: 16, SourceID: 7, SessionID: 9, Sequence: 12, Epoch: 0xabcdef01, Count: uint16(headers.AbortReadOnly), SpeaksFor: 1, ReporterID: 128}, []uint16{128}, nil),
			map[string]string{"smh.version": "1", "smh.type": "4", "smh.flags": "0x08", "smh.hop": "16", "smh.enc": "0", "smh.rsv": "0x00",
				"smh.setcount": "1", "smh.src": "7", "smh.sess": "9", "smh.seq": "12", "smh.epoch": "0xabcdef01", "smh.fb.count": "3",
				"smh.fb.abort_reason": "read_only", "smh.fb.speaks_for": "1", "smh.fb.reporter": "128", "smh.id": "128", "smh.receiver": "128",
				"smh.receivers": "128", "smh.header_len": "26", "smh.payload_len": "0"}},
		{"bad-set-unsorted", layered(t, &headers.SMHLayer{Type: headers.TypeData, HopLimit: 16, Encoding: headers.EncList, SourceID: 1, SessionID: 1, Sequence: 1, Receivers: []uint16{9, 5}}, nil),
			map[string]string{"smh.version": "1", "smh.type": "0", "smh.flags": "0x00", "smh.hop": "16", "smh.enc": "0", "smh.rsv": "0x00",
				"smh.setcount": "2", "smh.src": "1", "smh.sess": "1", "smh.seq": "1", "smh.id": "9,5", "smh.receiver": "9,5", "smh.receivers": "9,5",
				"smh.header_len": "18", "smh.payload_len": "0", "smh.error": "bad_set"}},
		{"bad-version", layered(t, &headers.SMHLayer{Version: 2, Type: headers.TypeData, HopLimit: 16, Encoding: headers.EncList, SourceID: 1, SessionID: 1, Sequence: 1, Receivers: []uint16{1}}, nil),
			map[string]string{"smh.version": "2", "smh.type": "0", "smh.flags": "0x00", "smh.hop": "16", "smh.enc": "0", "smh.rsv": "0x00",
				"smh.setcount": "1", "smh.src": "1", "smh.sess": "1", "smh.seq": "1", "smh.error": "bad_version"}},
		{"nack-count-zero", build(t, headers.Fields{Type: headers.TypeNACK, HopLimit: 16, SourceID: 7, SessionID: 1, Sequence: 16, Count: 0, SpeaksFor: 1, ReporterID: 5}, nil, nil),
			map[string]string{"smh.version": "1", "smh.type": "2", "smh.flags": "0x00", "smh.hop": "16", "smh.enc": "0", "smh.rsv": "0x00",
				"smh.setcount": "0", "smh.src": "7", "smh.sess": "1", "smh.seq": "16", "smh.fb.count": "0", "smh.fb.speaks_for": "1",
				"smh.fb.reporter": "5", "smh.receivers": "", "smh.header_len": "20", "smh.payload_len": "0", "smh.error": "bad_feedback"}},
		{"bad-group-count-zero", rawSMH(t, groupCountZero),
			map[string]string{"smh.version": "1", "smh.type": "0", "smh.flags": "0x00", "smh.hop": "16", "smh.enc": "2", "smh.rsv": "0x00",
				"smh.setcount": "0", "smh.src": "1", "smh.sess": "1", "smh.seq": "1", "smh.header_len": "14", "smh.payload_len": "0",
				"smh.error": "bad_set"}},
		{"bad-group-count-two", rawSMH(t, append(append([]byte{0x10, 0x00, 16, byte(headers.EncGroup) << 4, 0, 2}, groupCountZero[6:]...), 0, 0, 0, 7, 0, 0, 0, 8)),
			map[string]string{"smh.version": "1", "smh.type": "0", "smh.flags": "0x00", "smh.hop": "16", "smh.enc": "2", "smh.rsv": "0x00",
				"smh.setcount": "2", "smh.src": "1", "smh.sess": "1", "smh.seq": "1", "smh.header_len": "22", "smh.payload_len": "0",
				"smh.error": "bad_set"}},
		{"bad-epoch-zero", layered(t, &headers.SMHLayer{Type: headers.TypeData, Flags: headers.FlagEpoch, HopLimit: 16, Encoding: headers.EncList, SourceID: 1, SessionID: 1, Sequence: 1, Receivers: []uint16{1}}, nil),
			map[string]string{"smh.version": "1", "smh.type": "0", "smh.flags": "0x08", "smh.hop": "16", "smh.enc": "0", "smh.rsv": "0x00",
				"smh.setcount": "1", "smh.src": "1", "smh.sess": "1", "smh.seq": "1", "smh.epoch": "0x00000000", "smh.error": "bad_epoch"}},
	}
}

func idRange(a, b uint16) []uint16 {
	var ids []uint16
	for i := a; i <= b; i++ {
		ids = append(ids, i)
	}
	return ids
}

func concat(sets ...[]uint16) []uint16 {
	var out []uint16
	for _, s := range sets {
		out = append(out, s...)
	}
	return out
}

func joinIDs(ids []uint16) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ",")
}

func TestDissector(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark is not installed (apt-get install tshark, or testbeds/setup-debian.sh)")
	}
	lua, err := filepath.Abs("smh.lua")
	if err != nil {
		t.Fatal(err)
	}
	cs := cases(t)
	// Every frame must itself decode with the Go layer as encoded, so the
	// expectations above are about the bytes, not only about the Lua.
	for _, c := range cs[:9] {
		p := gopacket.NewPacket(c.frame, layers.LayerTypeEthernet, gopacket.Default)
		if p.ErrorLayer() != nil || p.Layer(headers.LayerTypeSMH) == nil {
			t.Fatalf("%s: the Go codec does not decode the test frame: %v", c.name, p)
		}
	}
	// The Go codecs reject the group-encoded DATA without a group as the
	// dissector must.
	if err := headers.SMH(groupCountZero).Validate(); err != headers.ErrBadSet {
		t.Fatalf("headers.SMH.Validate of Enc 2, Set Count 0: %v, want ErrBadSet", err)
	}
	var l headers.SMHLayer
	if err := l.DecodeFromBytes(groupCountZero, gopacket.NilDecodeFeedback); err == nil {
		t.Fatal("SMHLayer decodes Enc 2 with Set Count 0")
	}
	frames := make([][]byte, len(cs))
	for i, c := range cs {
		frames[i] = c.frame
	}
	pcap := filepath.Join(t.TempDir(), "smh.pcap")
	if err := writePcap(pcap, frames); err != nil {
		t.Fatal(err)
	}
	assertNoLuaErrors(t, tshark, lua, pcap)
	args := []string{"-X", "lua_script:" + lua, "-r", pcap, "-T", "fields",
		"-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.protocols"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command(tshark, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "Lua:") || strings.Contains(stderr.String(), "lua_script") {
		t.Fatalf("tshark reported a Lua problem:\n%s", stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(cs) {
		t.Fatalf("tshark printed %d lines for %d frames:\n%s\n%s", len(lines), len(cs), out, stderr.String())
	}
	for i, c := range cs {
		cols := strings.Split(lines[i], "|")
		if len(cols) != len(tsharkFields)+1 {
			t.Fatalf("%s: %d columns, want %d: %q", c.name, len(cols), len(tsharkFields)+1, lines[i])
		}
		if !strings.HasSuffix(cols[0], ":udp:smh") && !strings.Contains(cols[0], ":udp:smh:") {
			t.Errorf("%s: protocols %q: SMH not dissected on UDP 9471", c.name, cols[0])
		}
		for j, f := range tsharkFields {
			if got, exp := cols[j+1], c.fields[f]; got != exp {
				t.Errorf("%s: %s = %q, want %q", c.name, f, got, exp)
			}
		}
	}

	// -V shows the feedback word and the decoded set in the tree.
	v, err := exec.Command(tshark, "-X", "lua_script:"+lua, "-r", pcap, "-V", "-Y", "smh.type == 3").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark -V: %v\n%s", err, v)
	}
	for _, s := range []string{"Sparse Multicast Header", "Feedback: count 7, speaks for 64, reporter 512", "Block 5: receivers 320-383", "Congestion experienced: True"} {
		if !bytes.Contains(v, []byte(s)) {
			t.Errorf("tshark -V lacks %q:\n%s", s, v)
		}
	}
	// An ABORT's word names its reason; E shows in the flags.
	v, err = exec.Command(tshark, "-X", "lua_script:"+lua, "-r", pcap, "-V", "-Y", "smh.type == 4").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark -V: %v\n%s", err, v)
	}
	for _, s := range []string{"Type: ABORT (4)", "Feedback: abort reason 3 (read_only), speaks for 1, reporter 128", "Transfer Epoch present: True", "Transfer Epoch: 0xabcdef01"} {
		if !bytes.Contains(v, []byte(s)) {
			t.Errorf("tshark -V lacks %q:\n%s", s, v)
		}
	}
}

// The lab capture: what TestLabCapture sends and where it captures. A
// single-leaf fabric (lab.StartFabric) with a sender tx (host 0) and
// receivers r1-r3 (IDs 1-3); tx sends capCount DATA packets, each to a
// seeded random subset of 1-3 (`sparsecast send --subsets-of`), and dumpcap
// records tx's eth0 (the full sets, to the switch's port) and r1's eth0
// (what the switch sent r1: the set cut down to 1). Addresses follow
// StartFabric's plan: host i is 10.78.i.2, its gateway 10.78.i.1.
const (
	capSeed    = 5
	capSource  = 42
	capSession = 3
	capCount   = 30
	capSize    = 64 // payload bytes after SMH
	capTxIP    = "10.78.0.2"
	capTxGW    = "10.78.0.1"
	capR1IP    = "10.78.1.2"
	capR1ID    = 1
)

var capSchedule = endpoint.Schedule{Seed: capSeed, Receivers: []uint16{1, 2, 3}}

// capFields are the columns checkLabCapture asks tshark for.
var capFields = []string{"frame.protocols", "ip.src", "ip.dst", "smh.version", "smh.type", "smh.flags",
	"smh.hop", "smh.enc", "smh.setcount", "smh.src", "smh.sess", "smh.seq", "smh.receivers",
	"smh.payload_len", "smh.error"}

// tsharkColumns runs tshark with smh.lua over pcap and returns one row per
// frame, a column per field. It fails the test on any Lua error.
func tsharkColumns(t *testing.T, tshark, lua, pcap string, fields []string) [][]string {
	t.Helper()
	args := []string{"-X", "lua_script:" + lua, "-r", pcap, "-T", "fields",
		"-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command(tshark, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "Lua:") || strings.Contains(stderr.String(), "lua_script") {
		t.Fatalf("tshark reported a Lua problem:\n%s", stderr.String())
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		cols := strings.Split(line, "|")
		if len(cols) != len(fields) {
			t.Fatalf("%d columns, want %d: %q", len(cols), len(fields), line)
		}
		rows = append(rows, cols)
	}
	return rows
}

// checkLabCapture decodes a lab capture with smh.lua and checks every SMH
// field against what the sender sent: on tx's side every sequence number
// 0..capCount-1 once, in order, each with the schedule's receiver set; on
// r1's side exactly the sequence numbers whose set holds receiver 1, the
// set cut down to "1" and the hop limit one lower than as sent.
func checkLabCapture(t *testing.T, tshark, lua, pcap string) {
	t.Helper()
	rows := tsharkColumns(t, tshark, lua, pcap, capFields)
	col := map[string]int{}
	for i, f := range capFields {
		col[f] = i
	}
	want := capSchedule.Expected(capR1ID, 0, capCount)
	sentHop := map[uint32]int{}
	var sentSeqs, gotSeqs []uint32
	for i, r := range rows {
		get := func(f string) string { return r[col[f]] }
		where := fmt.Sprintf("frame %d (%s > %s, seq %s)", i+1, get("ip.src"), get("ip.dst"), get("smh.seq"))
		if !strings.HasSuffix(get("frame.protocols"), ":udp:smh") && !strings.Contains(get("frame.protocols"), ":udp:smh:") {
			t.Errorf("%s: protocols %q: not dissected as SMH", where, get("frame.protocols"))
			continue
		}
		for f, v := range map[string]string{
			"ip.src": capTxIP, "smh.version": "1", "smh.type": "0", "smh.flags": "0x00", "smh.enc": "0",
			"smh.src": strconv.Itoa(capSource), "smh.sess": strconv.Itoa(capSession),
			"smh.payload_len": strconv.Itoa(capSize), "smh.error": "",
		} {
			if get(f) != v {
				t.Errorf("%s: %s = %q, want %q", where, f, get(f), v)
			}
		}
		seq64, err := strconv.ParseUint(get("smh.seq"), 10, 32)
		if err != nil {
			t.Errorf("%s: smh.seq: %v", where, err)
			continue
		}
		seq := uint32(seq64)
		hop, _ := strconv.Atoi(get("smh.hop"))
		switch get("ip.dst") {
		case capTxGW: // as sent, to the switch
			set := capSchedule.Set(seq)
			if s := headers.FormatIDSet(set); get("smh.receivers") != s || get("smh.setcount") != strconv.Itoa(len(set)) {
				t.Errorf("%s: receivers %q (count %s), sent %q", where, get("smh.receivers"), get("smh.setcount"), s)
			}
			sentHop[seq] = hop
			sentSeqs = append(sentSeqs, seq)
		case capR1IP: // as the switch forwarded it to r1
			if get("smh.receivers") != strconv.Itoa(capR1ID) || get("smh.setcount") != "1" {
				t.Errorf("%s: receivers %q (count %s), want %d alone", where, get("smh.receivers"), get("smh.setcount"), capR1ID)
			}
			if sh, ok := sentHop[seq]; ok && hop != sh-1 {
				t.Errorf("%s: hop limit %d, sent with %d", where, hop, sh)
			}
			gotSeqs = append(gotSeqs, seq)
		default:
			t.Errorf("%s: a frame to neither the switch nor r1", where)
		}
	}
	if len(sentSeqs) != capCount {
		t.Errorf("%d frames from tx, want %d: %v", len(sentSeqs), capCount, sentSeqs)
	}
	for i, q := range sentSeqs {
		if q != uint32(i) {
			t.Errorf("tx's frame %d has seq %d, want %d", i+1, q, i)
			break
		}
	}
	got := &endpoint.SeqSet{}
	for _, q := range gotSeqs {
		got.Add(q)
	}
	if uint64(len(gotSeqs)) != want.Len() || want.Minus(got).Len() != 0 || got.Minus(want).Len() != 0 {
		t.Errorf("r1 got seqs %v (%d frames), the schedule sent it %v", got, len(gotSeqs), want)
	}
	t.Logf("%s: %d frames from tx, %d to r1 (seqs %v)", filepath.Base(pcap), len(sentSeqs), len(gotSeqs), got)
}

// assertNoLuaErrors fails the test when the dissector raised a Lua error on
// any frame: tshark reports those as expert info in the tree, not on
// stderr, and the frame's remaining fields are just missing.
func assertNoLuaErrors(t *testing.T, tshark, lua, pcap string) {
	t.Helper()
	out, err := exec.Command(tshark, "-X", "lua_script:"+lua, "-r", pcap, "-T", "fields", "-e", "frame.number", "-e", "_ws.expert").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "Lua Error") {
			t.Errorf("smh.lua failed on frame %s", line)
		}
	}
}

func TestDissectorLabCapture(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark is not installed (apt-get install tshark, or testbeds/setup-debian.sh)")
	}
	lua, err := filepath.Abs("smh.lua")
	if err != nil {
		t.Fatal(err)
	}
	checkLabCapture(t, tshark, lua, filepath.Join("testdata", "lab-capture.pcap"))
	assertNoLuaErrors(t, tshark, lua, filepath.Join("testdata", "lab-capture.pcap"))
}
