package trex

// Checks of the TRex profile without TRex:
//
//  1. TestProfilePcap runs pcapgen.py (plain scapy, the profile's own packet
//     builder and its field engine replayed in Python) for several tunable
//     sets, decodes every packet with gopacket and headers.SMHLayer, and
//     compares it field for field with the JSON sidecar pcapgen writes from
//     the profile's model.
//  2. TestReplayThroughSwitch (root) replays those pcaps into a one-switch
//     veth lab (generator -> p0, receivers behind p1..p3, receiver r routed
//     to p(1 + r%3)) from a Go AF_PACKET writer, captures every egress port
//     with raw AF_PACKET sockets, and checks that each DATA packet left on
//     exactly the ports that have receivers of its set, once per port, with
//     the set reduced to that port's receivers, Hop Limit one lower and the
//     rest unchanged.
//  3. TestDUTConfigLoads: dut-switch.yaml (the 2-port switch-under-test
//     config of README.md) loads with dataplane.LoadConfig.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/afpacket"
	"github.com/sparsecast/sparsecast/headers"
	"github.com/sparsecast/sparsecast/testbeds/lab"
)

const python = "/usr/bin/python3"

// scenario is one pcapgen run.
type scenario struct {
	name     string
	tunables string
}

var scenarios = []scenario{
	{"default", ""},
	{"list-random-varied", "receivers=9,domain=256,encoding=list,sessions=3,rx_variants=4,seq_start=4294967294"},
	{"blocks-clustered", "receivers=70,domain=1024,encoding=blocks,layout=clustered,rx_variants=3,sessions=2,size=256"},
	{"auto-clustered", "receivers=9,domain=4096,layout=clustered,rx_variants=2,hop=8"},
	{"group", "encoding=group,receivers=12,domain=64,rx_variants=3,sessions=2,group_base=42"},
	{"large-list", "receivers=200,domain=65535,encoding=list,size=64,vary_seq=1"},
	{"ack-exceptions", "type=ack,receivers=3,domain=512,sessions=2"},
	{"ack-plain", "type=ack,receivers=0"},
	{"nack", "type=nack,receivers=2,rx_variants=2"},
	{"cnp-blocks", "type=cnp,receivers=64,layout=clustered,encoding=blocks,domain=128"},
}

// sidecar is pcapgen's JSON.
type sidecar struct {
	Options   map[string]any `json:"options"`
	PerStream int            `json:"per_stream"`
	Streams   int            `json:"streams"`
	Groups    []struct {
		ID      uint32   `json:"id"`
		Members []uint16 `json:"members"`
	} `json:"groups"`
	Packets []expectPkt `json:"packets"`
}

type expectPkt struct {
	Index      int      `json:"index"`
	Stream     int      `json:"session_index"`
	Variant    int      `json:"variant"`
	FrameLen   int      `json:"frame_len"`
	SMHOffset  int      `json:"smh_offset"`
	HeaderLen  int      `json:"header_len"`
	PayloadLen int      `json:"payload_len"`
	SrcIP      string   `json:"src_ip"`
	DstIP      string   `json:"dst_ip"`
	Sport      uint16   `json:"sport"`
	Dport      uint16   `json:"dport"`
	Version    uint8    `json:"version"`
	Type       string   `json:"type"`
	Flags      uint8    `json:"flags"`
	Hop        uint8    `json:"hop"`
	Enc        string   `json:"enc"`
	SetCount   int      `json:"setcount"`
	Src        uint16   `json:"src"`
	Sess       uint16   `json:"sess"`
	Seq        uint32   `json:"seq"`
	Count      uint16   `json:"count"`
	SpeaksFor  uint16   `json:"speaks_for"`
	Reporter   uint16   `json:"reporter"`
	Receivers  []uint16 `json:"receivers"`
	Group      uint32   `json:"group"`
	Members    []uint16 `json:"members"`
}

// needScapy skips when Debian's python3-scapy is not installed.
func needScapy(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s not found: install python3-scapy (testbeds/setup-debian.sh)", python)
	}
	if out, err := exec.Command(python, "-c", "import scapy.all").CombinedOutput(); err != nil {
		t.Skipf("python3-scapy is not installed for %s (apt-get install python3-scapy): %v: %s", python, err, out)
	}
}

// generate runs pcapgen.py for sc into dir and returns the frames and the
// sidecar.
func generate(t *testing.T, dir string, sc scenario) ([][]byte, *sidecar) {
	t.Helper()
	pcapPath := filepath.Join(dir, sc.name+".pcap")
	args := []string{"pcapgen.py", "--out", pcapPath}
	if sc.tunables != "" {
		args = append(args, "-t", sc.tunables)
	}
	cmd := exec.Command(python, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pcapgen.py %s: %v\n%s", sc.tunables, err, out)
	}
	frames, err := readPcap(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, sc.name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var side sidecar
	if err := json.Unmarshal(js, &side); err != nil {
		t.Fatalf("sidecar: %v", err)
	}
	if len(frames) != len(side.Packets) || len(frames) == 0 {
		t.Fatalf("%s: %d frames in the pcap, %d in the sidecar", sc.name, len(frames), len(side.Packets))
	}
	return frames, &side
}

// readPcap reads the frames of a classic pcap file with Ethernet link type.
// (gopacket's pcapgo would need golang.org/x/net/bpf, which go.sum does not
// carry; the format is small enough to read here.)
func readPcap(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, fmt.Errorf("%s: %d bytes, too short for a pcap header", path, len(b))
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("%s: not a pcap file (magic %#x)", path, binary.LittleEndian.Uint32(b))
	}
	if lt := bo.Uint32(b[20:]); lt != uint32(layers.LinkTypeEthernet) {
		return nil, fmt.Errorf("%s: link type %d, want Ethernet (1)", path, lt)
	}
	var frames [][]byte
	for off := 24; off < len(b); {
		if off+16 > len(b) {
			return nil, fmt.Errorf("%s: truncated record header at %d", path, off)
		}
		incl := int(bo.Uint32(b[off+8:]))
		off += 16
		if off+incl > len(b) {
			return nil, fmt.Errorf("%s: truncated record at %d", path, off)
		}
		frames = append(frames, b[off:off+incl])
		off += incl
	}
	return frames, nil
}

// decodeSMH decodes an Ethernet frame down to SMH.
func decodeSMH(frame []byte) (*layers.IPv4, *layers.UDP, *headers.SMHLayer, error) {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		return nil, nil, nil, fmt.Errorf("decode: %v", el.Error())
	}
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	s, _ := p.Layer(headers.LayerTypeSMH).(*headers.SMHLayer)
	if ip == nil || udp == nil || s == nil {
		return nil, nil, nil, fmt.Errorf("not Ethernet/IPv4/UDP/SMH: %v", p)
	}
	return ip, udp, s, nil
}

func encName(e headers.Encoding) string { return e.String() }

// checkPacket compares one decoded frame with its sidecar record.
func checkPacket(frame []byte, e expectPkt) error {
	ip, udp, s, err := decodeSMH(frame)
	if err != nil {
		return err
	}
	var diffs []string
	chk := func(name string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", name, got, want))
		}
	}
	chk("frame length", len(frame), e.FrameLen)
	chk("ip src", ip.SrcIP, e.SrcIP)
	chk("ip dst", ip.DstIP, e.DstIP)
	chk("udp sport", uint16(udp.SrcPort), e.Sport)
	chk("udp dport", uint16(udp.DstPort), e.Dport)
	chk("udp length", int(udp.Length), len(frame)-e.SMHOffset+8)
	chk("ip total length", int(ip.Length), len(frame)-14)
	chk("version", s.Version, e.Version)
	chk("type", s.Type.String(), e.Type)
	chk("flags", uint8(s.Flags), e.Flags)
	chk("hop", s.HopLimit, e.Hop)
	chk("enc", encName(s.Encoding), e.Enc)
	chk("reserved", s.Reserved, 0)
	chk("source", s.SourceID, e.Src)
	chk("session", s.SessionID, e.Sess)
	chk("sequence", s.Sequence, e.Seq)
	chk("count", s.Count, e.Count)
	chk("speaks for", s.SpeaksFor, e.SpeaksFor)
	chk("reporter", s.ReporterID, e.Reporter)
	chk("group", s.Group, e.Group)
	chk("receivers", headers.FormatIDSet(s.Receivers), headers.FormatIDSet(e.Receivers))
	chk("header length", len(s.Contents), e.HeaderLen)
	chk("payload length", len(s.Payload), e.PayloadLen)
	setCount := int(binary.BigEndian.Uint16(frame[e.SMHOffset+4:]))
	chk("set count", setCount, e.SetCount)
	if e.Type == "DATA" && len(s.Payload) < 16 {
		diffs = append(diffs, fmt.Sprintf("payload %d bytes: TRex latency needs 16", len(s.Payload)))
	}
	if len(diffs) > 0 {
		return errors.New(strings.Join(diffs, "; "))
	}
	return nil
}

func TestProfilePcap(t *testing.T) {
	needScapy(t)
	dir := t.TempDir()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			frames, side := generate(t, dir, sc)
			seen := map[string]bool{}
			for i, f := range frames {
				e := side.Packets[i]
				if err := checkPacket(f, e); err != nil {
					t.Errorf("packet %d (variant %d): %v", i, e.Variant, err)
				}
				seen[strconv.Itoa(e.Stream)+"/"+headers.FormatIDSet(e.Receivers)+"/"+strconv.Itoa(int(e.Group))] = true
			}
			// rx_variants > 1 must really produce that many distinct sets.
			if v, _ := side.Options["rx_variants"].(float64); v > 1 && len(seen) < int(v)*side.Streams {
				t.Errorf("rx_variants=%v over %d streams gave only %d distinct (stream, set) pairs", v, side.Streams, len(seen))
			}
		})
	}
}

// TestProfileRejects checks that bad tunables fail with a clear message.
func TestProfileRejects(t *testing.T) {
	needScapy(t)
	dir := t.TempDir()
	for _, c := range []struct{ tunables, want string }{
		{"receivers=9,domain=256,rx_variants=300", "raise domain or lower rx_variants"},
		{"type=ack,encoding=group", "encoding=group is for DATA only"},
		{"receivers=0", "DATA needs receivers >= 1"},
		{"domain=70000", "domain=70000: want 1-65535"},
		{"encoding=bitmap", "invalid choice: 'bitmap'"},
		{"src_mac=nope", "src_mac='nope'"},
		{"bogus=1", "unrecognized arguments: --bogus=1"},
	} {
		cmd := exec.Command(python, "pcapgen.py", "--out", filepath.Join(dir, "x.pcap"), "-t", c.tunables)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("pcapgen -t %s succeeded, want an error", c.tunables)
			continue
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("pcapgen -t %s: output %q lacks %q", c.tunables, out, c.want)
		}
	}
}

// TestProfileWithoutTRex checks the profile module imports without TRex and
// that get_streams then says what is missing instead of failing obscurely.
func TestProfileWithoutTRex(t *testing.T) {
	needScapy(t)
	code := `
import smh_stl
assert not smh_stl.HAVE_TREX
p = smh_stl.register()
try:
    p.get_streams(port_id=0, tunables=["receivers=3"])
except RuntimeError as e:
    print("ERR", e)
o = smh_stl.parse_options(["--receivers", "5", "domain=64"], sessions=2)
print(o.receivers, o.domain, o.sessions)
`
	out, err := exec.Command(python, "-c", code).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := string(out)
	if !strings.Contains(got, "ERR smh_stl.get_streams needs TRex's Python API") || !strings.Contains(got, "5 64 2") {
		t.Fatalf("unexpected output:\n%s", got)
	}
}

func TestNDRDryRun(t *testing.T) {
	needScapy(t)
	dir := t.TempDir()
	csv := filepath.Join(dir, "ndr.csv")
	out, err := exec.Command(python, "ndr.py", "--dry-run", "--server", "10.0.0.9", "--rate-lo", "100kpps",
		"--rate-hi", "10mpps", "--precision", "0.05", "--csv", csv, "-t", "receivers=9,sessions=2,latency_pps=1000").CombinedOutput()
	if err != nil {
		t.Fatalf("ndr.py --dry-run: %v\n%s", err, out)
	}
	for _, want := range []string{
		"server 10.0.0.9", "tx port 0, rx port 1", "search 100000-10000000 pps",
		"streams on port 0: 2 data + 2 latency", "csv " + csv,
		"trial 1: 5050000 pps",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(csv); err == nil {
		t.Errorf("dry run wrote %s", csv)
	}
	out, err = exec.Command(python, "ndr.py", "--dry-run", "--rate-lo", "10mpps", "--rate-hi", "1mpps").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--rate-lo must be below --rate-hi") {
		t.Errorf("inverted range: err %v, output %s", err, out)
	}
}

func TestDUTConfigLoads(t *testing.T) {
	c, err := dataplane.LoadConfig("dut-switch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Ports) != 2 || c.UDPPort != headers.DefaultUDPPort {
		t.Fatalf("dut-switch.yaml: %d ports, udp_port %d; want 2 and %d", len(c.Ports), c.UDPPort, headers.DefaultUDPPort)
	}
	// Every receiver ID the profile can draw (domain up to 65280) goes to
	// the port cabled to TRex port 1, the Source IDs above (the profile's
	// source and latency_source defaults) to the one cabled to TRex port 0,
	// where feedback must go.
	tables, err := dataplane.TablesFromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint16{0, 255, 65279} {
		if p := tables.Routes.Lookup(id); int(p) != 1 {
			t.Errorf("receiver %d routed to port %d, want p1", id, p)
		}
	}
	for _, id := range []uint16{65280, 65534, 65535} {
		if p := tables.Routes.Lookup(id); int(p) != 0 {
			t.Errorf("source %d routed to port %d, want p0", id, p)
		}
	}
}

// ---- replay through a switch (root) ----------------------------------------

const (
	labPrefix = "sctrex-"
	egress    = 3 // receivers behind p1..p3
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

func portMAC(i int) string { return fmt.Sprintf("02:54:52:00:%02x:01", i) }
func hostMAC(i int) string { return fmt.Sprintf("02:54:52:00:%02x:02", i) }

// labConfig routes receiver r (of the domain) to p(1 + r%3) and defines the
// sidecars' groups.
func labConfig(domain int, groups map[uint32][]uint16) []byte {
	var b bytes.Buffer
	b.WriteString("name: trex-replay\npoll_mode: adaptive\nworkers: 1\nmetrics_addr: 127.0.0.1:0\nports:\n")
	for i := 0; i <= egress; i++ {
		fmt.Fprintf(&b, "  - {name: p%d, type: afpacket, iface: p%d, neighbor_mac: %q}\n", i, i, hostMAC(i))
	}
	b.WriteString("routes:\n")
	for p := 1; p <= egress; p++ {
		var ids []uint16
		for r := p - 1; r < domain; r += egress {
			ids = append(ids, uint16(r))
		}
		fmt.Fprintf(&b, "  - {receivers: %q, port: p%d}\n", headers.FormatIDSet(ids), p)
	}
	if len(groups) > 0 {
		b.WriteString("groups:\n")
		keys := make([]uint32, 0, len(groups))
		for g := range groups {
			keys = append(keys, g)
		}
		slices.Sort(keys)
		for _, g := range keys {
			fmt.Fprintf(&b, "  - {id: %d, members: %q}\n", g, headers.FormatIDSet(groups[g]))
		}
	}
	return b.Bytes()
}

// rawSocket opens an AF_PACKET socket on dev inside namespace ns.
func rawSocket(ns, dev string) (int, error) {
	fd := -1
	err := afpacket.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
			unix.Close(s)
			return err
		}
		fd = s
		return nil
	})
	return fd, err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// capture reads frames from fd until stop is closed and the socket has been
// idle for a read timeout.
func capture(fd int, stop <-chan struct{}) (frames [][]byte, err error) {
	tv := unix.Timeval{Usec: 200000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	buf := make([]byte, 65536)
	for {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				select {
				case <-stop:
					return frames, nil
				default:
					continue
				}
			}
			return frames, err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		frames = append(frames, append([]byte(nil), buf[:n]...))
	}
}

type copyKey struct {
	sess uint16
	seq  uint32
	port int
}

func TestReplayThroughSwitch(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the veth lab replay")
	}
	if os.Geteuid() != 0 {
		t.Skip("replaying through a switch needs root (network namespaces, AF_PACKET)")
	}
	needScapy(t)
	dir := t.TempDir()
	// DATA scenarios only (feedback is aggregated by the switch, not split);
	// every packet of a stream has its own sequence number, so (session,
	// sequence) names a packet.
	replay := []scenario{
		{"list-random-varied", "receivers=9,domain=256,encoding=list,sessions=3,rx_variants=4"},
		{"blocks-clustered", "receivers=70,domain=1024,encoding=blocks,layout=clustered,rx_variants=3,sessions=2,size=256,session_base=10"},
		{"auto-random", "receivers=40,domain=1024,sessions=2,rx_variants=5,session_base=100"},
		{"group", "encoding=group,receivers=12,domain=64,rx_variants=3,sessions=2,group_base=42,session_base=200"},
	}
	var frames [][]byte
	var expect []expectPkt
	groups := map[uint32][]uint16{}
	domain := 0
	for _, sc := range replay {
		f, side := generate(t, dir, sc)
		frames = append(frames, f...)
		expect = append(expect, side.Packets...)
		for _, g := range side.Groups {
			groups[g.ID] = g.Members
		}
		if d := int(side.Options["domain"].(float64)); d > domain {
			domain = d
		}
	}

	bin := filepath.Join(dir, "sparsecast")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sparsecast")
	build.Dir = moduleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := lab.Teardown(ctx, labPrefix, nil); err != nil {
		t.Fatal(err)
	}
	l, err := lab.New(labPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab teardown: %v", err)
		}
	})
	sw, err := l.AddNamespace(ctx, "sw")
	if err != nil {
		t.Fatal(err)
	}
	hostNS := make([]string, egress+1)
	for i := 0; i <= egress; i++ {
		if hostNS[i], err = l.AddNamespace(ctx, "h"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		port := "p" + strconv.Itoa(i)
		if err := l.AddVeth(ctx, lab.Link{NS: hostNS[i], Dev: "eth0", MAC: hostMAC(i)}, lab.Link{NS: sw, Dev: port, MAC: portMAC(i)}); err != nil {
			t.Fatal(err)
		}
		if err := l.Up(ctx, hostNS[i], "eth0"); err != nil {
			t.Fatal(err)
		}
		if err := l.Up(ctx, sw, port); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "switch.yaml")
	if err := os.WriteFile(cfg, labConfig(domain, groups), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := dataplane.LoadConfig(cfg); err != nil {
		t.Fatalf("generated config: %v", err)
	}
	swLog, err := os.Create(filepath.Join(dir, "switch.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer swLog.Close()
	proc, err := l.Start(sw, "switch", swLog, swLog, bin, "switch", "run", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitSwitchPortsTest(ctx, sw, egress+1, proc); err != nil {
		log, _ := os.ReadFile(swLog.Name())
		t.Fatalf("%v\n%s", err, log)
	}

	// Capture every egress port (and the ingress port, which must get
	// nothing back), then inject.
	stop := make(chan struct{})
	got := make([][][]byte, egress+1)
	errs := make([]error, egress+1)
	var wg sync.WaitGroup
	for i := 0; i <= egress; i++ {
		fd, err := rawSocket(hostNS[i], "eth0")
		if err != nil {
			t.Fatalf("capture socket in %s: %v", hostNS[i], err)
		}
		defer unix.Close(fd)
		wg.Add(1)
		go func() { defer wg.Done(); got[i], errs[i] = capture(fd, stop) }()
	}
	tx, err := rawSocket(hostNS[0], "eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tx)
	for i, f := range frames {
		if err := unix.Send(tx, f, 0); err != nil {
			t.Fatalf("inject frame %d: %v", i, err)
		}
		time.Sleep(2 * time.Millisecond) // well below what the lab switch carries
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("capture on h%d: %v", i, err)
		}
	}

	// What must arrive: per packet, per port with receivers, one copy.
	want := map[copyKey][]uint16{}
	byKey := map[copyKey]expectPkt{}
	for _, e := range expect {
		set := e.Receivers
		if e.Enc == "group" {
			set = e.Members
		}
		for p := 1; p <= egress; p++ {
			var sub []uint16
			for _, r := range set {
				if int(r)%egress == p-1 {
					sub = append(sub, r)
				}
			}
			if len(sub) > 0 {
				k := copyKey{e.Sess, e.Seq, p}
				if _, dup := want[k]; dup {
					t.Fatalf("two packets with session %d sequence %d: the replay cannot tell them apart", e.Sess, e.Seq)
				}
				want[k] = sub
				byKey[k] = e
			}
		}
	}
	if len(got[0]) > 0 {
		t.Errorf("the ingress port sent %d frames back to the generator", len(got[0]))
	}
	arrived := map[copyKey]int{}
	other := 0
	for p := 1; p <= egress; p++ {
		for _, f := range got[p] {
			_, _, s, err := decodeSMH(f)
			if err != nil {
				other++
				continue
			}
			k := copyKey{s.SessionID, s.Sequence, p}
			arrived[k]++
			sub, ok := want[k]
			if !ok {
				t.Errorf("p%d: unexpected copy session %d seq %d receivers %s", p, s.SessionID, s.Sequence, headers.FormatIDSet(s.Receivers))
				continue
			}
			e := byKey[k]
			if g, w := headers.FormatIDSet(s.Receivers), headers.FormatIDSet(sub); g != w {
				t.Errorf("p%d session %d seq %d: receivers %s, want %s", p, s.SessionID, s.Sequence, g, w)
			}
			cp := &headers.SMHLayer{Receivers: s.Receivers}
			cp.UseSmallerEncoding()
			if s.Encoding != cp.Encoding {
				t.Errorf("p%d session %d seq %d: encoding %v, want the smaller, %v", p, s.SessionID, s.Sequence, s.Encoding, cp.Encoding)
			}
			if s.HopLimit != e.Hop-1 || s.SourceID != e.Src || s.Type != headers.TypeData {
				t.Errorf("p%d session %d seq %d: hop %d source %d type %v, want %d %d DATA", p, s.SessionID, s.Sequence, s.HopLimit, s.SourceID, s.Type, e.Hop-1, e.Src)
			}
			if len(s.Payload) != e.PayloadLen {
				t.Errorf("p%d session %d seq %d: payload %d bytes, want %d", p, s.SessionID, s.Sequence, len(s.Payload), e.PayloadLen)
			}
			if dst := net.HardwareAddr(f[0:6]).String(); dst != hostMAC(p) {
				t.Errorf("p%d: destination MAC %s, want the neighbour %s", p, dst, hostMAC(p))
			}
			if src := net.HardwareAddr(f[6:12]).String(); src != portMAC(p) {
				t.Errorf("p%d: source MAC %s, want the port's %s", p, src, portMAC(p))
			}
		}
	}
	var missing []string
	for k := range want {
		switch n := arrived[k]; {
		case n == 0:
			missing = append(missing, fmt.Sprintf("p%d/s%d/seq%d", k.port, k.sess, k.seq))
		case n > 1:
			t.Errorf("p%d session %d seq %d: %d copies, want 1", k.port, k.sess, k.seq, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		log, _ := os.ReadFile(swLog.Name())
		t.Errorf("%d of %d expected copies missing, e.g. %v\nswitch log:\n%s", len(missing), len(want), missing[:min(len(missing), 10)], log)
	}
	t.Logf("replayed %d frames; %d copies on %d ports as expected (%d non-SMH frames ignored)", len(frames), len(want), egress, other)
}

// waitSwitchPortsTest waits for the switch's AF_PACKET sockets, then gives
// its worker a moment to start polling them.
func waitSwitchPortsTest(ctx context.Context, ns string, n int, sw *lab.Proc) error {
	if err := lab.WaitPacketSockets(ctx, ns, n, sw, 20*time.Second); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	return nil
}

// TestScapyLayerEpochAndAbort: smh.py writes the Transfer Epoch (E) and
// ABORT byte for byte as headers.PutHeader does, and decodes what the Go
// encoder writes: the epoch, and an ABORT's reason by name.
func TestScapyLayerEpochAndAbort(t *testing.T) {
	needScapy(t)
	cases := []struct {
		py     string // smh_header arguments
		f      headers.Fields
		ids    []uint16
		reason string
	}{
		{"[64, 128, 192], epoch=0xdeadbeef, src=7, sess=9, seq=3, hop=16",
			headers.Fields{Type: headers.TypeData, HopLimit: 16, SourceID: 7, SessionID: 9, Sequence: 3, Epoch: 0xdeadbeef}, []uint16{64, 128, 192}, ""},
		{"[128], type='ABORT', epoch=0x01020304, fb_count=3, speaks_for=1, reporter=128, src=7, sess=9, seq=12, hop=16",
			headers.Fields{Type: headers.TypeABORT, HopLimit: 16, SourceID: 7, SessionID: 9, Sequence: 12, Epoch: 0x01020304,
				Count: uint16(headers.AbortReadOnly), SpeaksFor: 1, ReporterID: 128}, []uint16{128}, "read_only"},
		{"[1, 3], type='ABORT', fb_count=5, speaks_for=2, reporter=65534, src=1, sess=2, seq=0, hop=4",
			headers.Fields{Type: headers.TypeABORT, HopLimit: 4, SourceID: 1, SessionID: 2, Count: uint16(headers.AbortExists), SpeaksFor: 2, ReporterID: 65534}, []uint16{1, 3}, "exists"},
	}
	// One Python run for all cases (importing scapy takes seconds): per
	// case, the header smh_header writes, then how it decodes Go's.
	code := "import binascii, sys\nfrom smh import SMH, smh_header\nfrom scapy.all import raw\n"
	var args []string
	for i, c := range cases {
		want := make([]byte, 64)
		want = want[:headers.PutHeader(want, c.f, c.ids)]
		args = append(args, fmt.Sprintf("%x", want))
		code += fmt.Sprintf(`p = smh_header(%s)
print(binascii.hexlify(raw(p)).decode(), p.header_len())
q = SMH(binascii.unhexlify(sys.argv[%d]))
print(q.type, q.e, q.epoch if q.e else 0, q.fb_count if q.fb_count is not None else 0, q.abort_reason(), ",".join(str(i) for i in q.receivers()), q.header_len())
`, c.py, i+1)
	}
	out, err := exec.Command(python, append([]string{"-c", code}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2*len(cases) {
		t.Fatalf("output %q", out)
	}
	for i, c := range cases {
		if got := fmt.Sprintf("%s %d", args[i], len(args[i])/2); lines[2*i] != got {
			t.Errorf("smh_header(%s) wrote %s, Go writes %s", c.py, lines[2*i], got)
		}
		reason := c.reason
		if reason == "" {
			reason = "None"
		}
		e := 0
		if c.f.Epoch != 0 {
			e = 1
		}
		if got := fmt.Sprintf("%d %d %d %d %s %s %d", c.f.Type, e, c.f.Epoch, c.f.Count, reason, joinIDs(c.ids), len(args[i])/2); lines[2*i+1] != got {
			t.Errorf("smh.py decodes the Go header of %s as %q, want %q", c.py, lines[2*i+1], got)
		}
	}
}

func joinIDs(ids []uint16) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ",")
}

// TestProfileLoader loads smh_stl.py through TRex's loader calling
// convention on ports 0-3 for every tunable set (loader_test.py says what
// it checks). Here that is testdata/faketrex, a copy of TRex's loader; with
// TREX_DIR set (a TRex install, or a source tree's scripts/) it also runs
// against TRex's own client library.
func TestProfileLoader(t *testing.T) {
	needScapy(t)
	runs := [][]string{{"loader_test.py"}}
	if dir := os.Getenv("TREX_DIR"); dir != "" {
		runs = append(runs, []string{"loader_test.py", "--trex-dir", dir})
	}
	for _, args := range runs {
		out, err := exec.Command(python, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(string(out), "all ok") || strings.Contains(string(out), "FAIL") {
			t.Fatalf("%s:\n%s", strings.Join(args, " "), out)
		}
		t.Logf("%s: %d checks ok", strings.Join(args, " "), strings.Count(string(out), "\nok "))
	}
}

// TestNDRClassify: ndr.py puts a failed trial's loss on the side the
// switch's counters say lost it.
func TestNDRClassify(t *testing.T) {
	needScapy(t)
	code := `
import ndr
def sw(rx, tx, drops=None, kernel=None):
    return dict(rx_in=rx, tx_out=tx, drops=drops or {}, kernel=kernel or {})
cases = [
    ((1000, 1000, 1, sw(1000, 1000)), "none"),
    ((1000, 980, 1, sw(1000, 1000)), "generator"),
    ((1000, 980, 1, sw(1000, 980, {"queue_full": 20})), "switch"),
    ((1000, 990, 1, sw(1000, 990)), "switch"),
    ((1000, 990, 1, sw(1000, 1000, None, {"p0": 3})), "switch"),
    ((1000, 950, 1, sw(950, 950)), "wire"),
    ((1000, 1800, 2, sw(1000, 2000)), "generator"),
    ((1000, 990, 1, None), "end-to-end"),
]
for args, want in cases:
    got = ndr.classify(*args)[3]
    print("ok" if got == want else "FAIL %r: %s, want %s" % (args, got, want))
m = ndr.parse_metrics('sparsecast_switch_port_receive_packets_total{port="p0",worker="0"} 5\nsparsecast_switch_port_receive_packets_total{port="p0",worker="1"} 7\n# HELP x\nsparsecast_switch_drops_total{reason="queue_full"} 3\n')
print("ok" if ndr.metric_sum(m, "sparsecast_switch_port_receive_packets_total", port="p0") == 12 else "FAIL sum")
`
	out, err := exec.Command(python, "-c", code).CombinedOutput()
	if err != nil || strings.Contains(string(out), "FAIL") || strings.Count(string(out), "ok") != 9 {
		t.Fatalf("%v\n%s", err, out)
	}
}
