package wireshark

// TestDissector writes a pcap of generated frames (dataplane.BuildFrame for
// list, blocks and feedback; gopacket with headers.SMHLayer for the group
// encoding and for malformed headers, which BuildFrame refuses to write),
// runs tshark with smh.lua over it, and checks that every field tshark
// prints equals what was encoded. It is a generated pcap, not a lab capture.

import (
	"bytes"
	"encoding/binary"
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
	"smh.src", "smh.sess", "smh.seq", "smh.fb.count", "smh.fb.speaks_for", "smh.fb.reporter",
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
	for _, c := range cs[:6] {
		p := gopacket.NewPacket(c.frame, layers.LayerTypeEthernet, gopacket.Default)
		if p.ErrorLayer() != nil || p.Layer(headers.LayerTypeSMH) == nil {
			t.Fatalf("%s: the Go codec does not decode the test frame: %v", c.name, p)
		}
	}
	frames := make([][]byte, len(cs))
	for i, c := range cs {
		frames[i] = c.frame
	}
	pcap := filepath.Join(t.TempDir(), "smh.pcap")
	if err := writePcap(pcap, frames); err != nil {
		t.Fatal(err)
	}
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
}
