//go:build dpdk

// The switch on DPDK's net_af_packet driver over veth pairs in a network
// namespace of the test's own: SMH frames written into one veth by a raw
// socket come out of two others, one copy per receiver branch, each byte
// for byte what BuildFrame makes for that branch. Needs root; without it
// the test skips.
package dpdkport

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/afpacket"
	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
)

// dpdkTestEAL is the tests' EAL command line: on hugepages when
// SPARSECAST_DPDK_HUGE_DIR names a hugetlbfs mount (make test-dpdk reserves
// pages and mounts one through testbeds/dpdk/with-hugepages.sh), else
// without them.
func dpdkTestEAL() []string {
	eal := []string{"-l", "0", "--no-pci", "--file-prefix", "sc-dpdkport-test", "--log-level", "*:error"}
	if dir := os.Getenv("SPARSECAST_DPDK_HUGE_DIR"); dir != "" {
		return append(eal, "--huge-dir", dir, "--huge-unlink")
	}
	return append(eal, "--no-huge", "-m", "1024")
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// vethNet makes a namespace with veth pairs sw<i> <-> h<i>, all up, IPv6
// off (no neighbour discovery on the links), deleted when the test ends.
func vethNet(t *testing.T, pairs int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace and veth pairs")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	ns := fmt.Sprintf("scdp-%d", os.Getpid())
	exec.Command("ip", "netns", "del", ns).Run() // left by an earlier run of this PID
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", ns, err, out)
		}
	})
	sh(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	for i := 0; i < pairs; i++ {
		sw, h := fmt.Sprintf("sw%d", i), fmt.Sprintf("h%d", i)
		sh(t, "ip", "-n", ns, "link", "add", sw, "type", "veth", "peer", "name", h)
		sh(t, "ip", "-n", ns, "link", "set", sw, "up")
		sh(t, "ip", "-n", ns, "link", "set", h, "up")
	}
	// Until the kernel activates a link its qdisc is noop, which drops
	// what is sent without an error.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < pairs; i++ {
		for _, l := range []string{fmt.Sprintf("sw%d", i), fmt.Sprintf("h%d", i)} {
			for {
				out, _ := exec.Command("ip", "-n", ns, "-o", "link", "show", l).CombinedOutput()
				if s := string(out); strings.Contains(s, "state UP") && !strings.Contains(s, "qdisc noop") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("link %s not up: %s", l, out)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	return ns
}

// rawSocket opens an AF_PACKET socket on iface inside ns for EtherType
// proto, with a receive buffer that holds the whole test.
func rawSocket(t *testing.T, ns, iface string, proto uint16) (fd int, addr *unix.SockaddrLinklayer) {
	t.Helper()
	err := afpacket.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		p := int(proto>>8 | proto<<8&0xff00) // network byte order
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, p)
		if err != nil {
			return err
		}
		addr = &unix.SockaddrLinklayer{Protocol: uint16(p), Ifindex: ifi.Index}
		if err := unix.Bind(fd, addr); err != nil {
			unix.Close(fd)
			return err
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("raw socket on %s: %v", iface, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, addr
}

// TestAfPacketSwitch runs a switch whose three ports are net_af_packet
// devices on sw0 (in), sw1 and sw2 (receivers 1 and 98), sends frames of
// distinct payloads to both receivers into h0, and expects every frame on
// h1 and on h2 exactly once, rewritten for its branch.
func TestAfPacketSwitch(t *testing.T) {
	ns := vethNet(t, 3)
	// EAL starts here, outside the namespace, so its own threads stay in
	// the test process's namespace; the devices are probed inside it.
	if err := ffi.EALInit(testEAL); err != nil {
		t.Fatal(err)
	}
	const n = 300
	spec := dataplane.FrameSpec{
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		SrcIP: net.IPv4(10, 0, 0, 2), DstIP: net.IPv4(10, 0, 0, 1), SrcPort: 5000,
		Fields:    headers.Fields{Type: headers.TypeData, HopLimit: 16, SessionID: 9},
		Receivers: []uint16{1, 98},
	}
	cfg := &dataplane.Config{Name: "t-afp", PollMode: dataplane.PollBusy, Buffers: 1024, EAL: testEAL}
	cfg.Ports = []dataplane.PortConfig{
		{Name: "in", Type: "dpdk", Device: "net_af_packet30,iface=sw0"},
		{Name: "a", Type: "dpdk", Device: "net_af_packet31,iface=sw1", NeighborMAC: "02:00:00:00:0a:01", NeighborIP: "10.9.0.1"},
		{Name: "b", Type: "dpdk", Device: "net_af_packet32,iface=sw2", NeighborMAC: "02:00:00:00:0b:01", NeighborIP: "10.9.0.2"},
	}
	cfg.Routes = []dataplane.RouteEntry{{Receivers: "1", Port: "a"}, {Receivers: "98", Port: "b"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var ports []dataplane.Port
	var dp []*Port
	err := afpacket.InNetns(ns, func() error {
		for i := range cfg.Ports {
			p, err := OpenPort(FromConfig(cfg, &cfg.Ports[i]))
			if err != nil {
				return fmt.Errorf("port %s: %w", cfg.Ports[i].Name, err)
			}
			ports = append(ports, p)
			dp = append(dp, p)
		}
		return nil
	})
	// The driver may touch its interface by name on close: close there too.
	t.Cleanup(func() {
		afpacket.InNetns(ns, func() error {
			for _, p := range dp {
				p.Close()
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	tables, err := dataplane.TablesFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := dataplane.NewSwitch(cfg, ports, tables)
	if err != nil {
		t.Fatal(err)
	}

	// What each branch must carry: frame i's payload, headers rewritten.
	branch := func(p *Port, id uint16, mac string, ip net.IP) map[string]int {
		want := map[string]int{}
		for i := 0; i < n; i++ {
			s := spec
			s.Payload = payload(i)
			s.SrcMAC = p.HardwareAddr()
			s.DstMAC, _ = net.ParseMAC(mac)
			s.DstIP = ip
			s.Fields.HopLimit--
			s.Receivers = []uint16{id}
			f, err := dataplane.BuildFrame(s)
			if err != nil {
				t.Fatal(err)
			}
			want[string(f)] = 0
		}
		return want
	}
	wantA := branch(dp[1], 1, "02:00:00:00:0a:01", net.IPv4(10, 9, 0, 1))
	wantB := branch(dp[2], 98, "02:00:00:00:0b:01", net.IPv4(10, 9, 0, 2))

	tx, txAddr := rawSocket(t, ns, "h0", unix.ETH_P_ALL)
	rxA, _ := rawSocket(t, ns, "h1", unix.ETH_P_IP)
	rxB, _ := rawSocket(t, ns, "h2", unix.ETH_P_IP)

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	running := true
	stopSwitch := func() error {
		if !running {
			return nil
		}
		running = false
		stop()
		return <-done
	}
	defer stopSwitch() // before the ports close
	time.Sleep(50 * time.Millisecond)
	for i := 0; i < n; i++ {
		s := spec
		s.DstMAC = dp[0].HardwareAddr()
		s.Payload = payload(i)
		f, err := dataplane.BuildFrame(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Sendto(tx, f, 0, txAddr); err != nil {
			t.Fatalf("send frame %d: %v", i, err)
		}
		if i%16 == 15 {
			// Well inside the driver's receive ring (512 frames) even
			// when the worker is scheduled out for a moment.
			time.Sleep(time.Millisecond)
		}
	}
	for _, c := range []struct {
		name string
		fd   int
		want map[string]int
	}{{"h1 (receiver 1)", rxA, wantA}, {"h2 (receiver 98)", rxB, wantB}} {
		got, bad, dup := 0, 0, 0
		buf := make([]byte, 4096)
		deadline := time.Now().Add(5 * time.Second)
		for got < n && time.Now().Before(deadline) {
			k, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				continue // the receive timeout: look at the deadline
			}
			f := buf[:k]
			if !isSMH(f) {
				continue // not the switch's (nothing else should be there)
			}
			seen, ok := c.want[string(f)]
			switch {
			case !ok:
				if bad == 0 {
					t.Errorf("%s: unexpected frame %x", c.name, f)
				}
				bad++
			case seen > 0:
				dup++
			default:
				got++
			}
			if ok {
				c.want[string(f)]++
			}
		}
		if got != n || bad != 0 || dup != 0 {
			t.Errorf("%s: %d of %d frames, %d wrong, %d duplicates", c.name, got, n, bad, dup)
		}
	}
	if err := stopSwitch(); err != nil {
		t.Fatal(err)
	}
	var drops []string
	for _, c := range sw.Counters() {
		for r := range c.Drops {
			if v := c.Drops[r].Load(); v > 0 {
				drops = append(drops, fmt.Sprintf("%v=%d", dataplane.DropReason(r), v))
			}
		}
	}
	if len(drops) > 0 {
		t.Errorf("switch drops: %s", strings.Join(drops, " "))
	}
	// The devices' own counters (what /metrics exports) saw the traffic.
	in, err := dp[0].Stats()
	if err != nil {
		t.Fatal(err)
	}
	if in.Device.RxPackets < n {
		t.Errorf("in: device counted %d frames received, want at least %d: %+v", in.Device.RxPackets, n, in.Device)
	}
	for _, p := range dp[1:] {
		s, err := p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if s.Device.TxPackets != n || s.TxSent != n {
			t.Errorf("%s: device sent %d, queue %d, want %d: %+v", p.Name(), s.Device.TxPackets, s.TxSent, n, s)
		}
	}
}

// payload is frame i's payload: its number, then a pattern of its own.
func payload(i int) []byte {
	p := make([]byte, 200)
	binary.BigEndian.PutUint32(p, uint32(i))
	for j := 4; j < len(p); j++ {
		p[j] = byte(i + j)
	}
	return p
}

// isSMH reports whether f is IPv4/UDP to SMH's port.
func isSMH(f []byte) bool {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[14+9] != unix.IPPROTO_UDP {
		return false
	}
	ihl := int(f[14]&0x0f) * 4
	return len(f) >= 14+ihl+8 && binary.BigEndian.Uint16(f[14+ihl+2:]) == headers.DefaultUDPPort
}
