//go:build lab

package wireshark

// TestLabCapture captures real SMH traffic in a lab and decodes it with
// smh.lua. In order:
//
//  1. Build a one-leaf fabric (lab.StartFabric: namespaces, veths, one
//     `sparsecast switch run`) with a sender tx and receivers r1-r3, and
//     start `sparsecast recv` on r1-r3.
//  2. Start dumpcap (tshark's capture engine, without tshark's start-up
//     cost) on eth0 inside tx's and r1's namespaces and wait until each has
//     its packet socket open.
//  3. `sparsecast send --subsets-of 1-3` from tx: capCount packets through
//     the switch; every receiver checks it got exactly its share.
//  4. Stop dumpcap, merge both captures (mergecap) and check with
//     `tshark -X lua_script:smh.lua -T fields` that every SMH field is what
//     was sent (checkLabCapture, shared with TestDissectorLabCapture).
//  5. Always: stop the processes and delete the namespaces.
//
// SPARSECAST_UPDATE_CAPTURE=1 copies the merged capture over
// testdata/lab-capture.pcap, the file the non-lab test decodes.
//
//	go test -tags lab -run TestLabCapture ./testbeds/wireshark/   (root)

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/control"
	"github.com/sparsecast/sparsecast/dataplane/endpoint"
	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// capPrefix names this test's namespaces, apart from every other lab's.
const capPrefix = "scw-"

const captureTopology = `
switches:
  - {name: leaf1, role: leaf, id: 11, ports: [h0, h1, h2, h3]}
hosts:
  - {name: tx, attach: leaf1:h0, receiver: false}
  - {name: r1, attach: leaf1:h1, id: 1}
  - {name: r2, attach: leaf1:h2, id: 2}
  - {name: r3, attach: leaf1:h3, id: 3}
`

func TestLabCapture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root")
	}
	tools := map[string]string{}
	for _, name := range []string{"tshark", "dumpcap", "mergecap"} {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Skipf("%s is not installed (apt-get install tshark, or testbeds/setup-debian.sh)", name)
		}
		tools[name] = p
	}
	lua, err := filepath.Abs("smh.lua")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := lab.Teardown(ctx, capPrefix, nil); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if left, err := lab.Namespaces(ctx, capPrefix); err != nil || len(left) > 0 {
			t.Errorf("namespaces left after teardown: %v %v", left, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// 1. The fabric and the receivers.
	topo, err := control.ParseTopology([]byte(captureTopology))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var log strings.Builder
	f, err := lab.StartFabric(ctx, lab.FabricOptions{Topology: topo, Binary: bin, Prefix: capPrefix, Dir: dir,
		Log: func(format string, args ...any) { fmt.Fprintf(&log, format+"\n", args...) }})
	if err != nil {
		t.Fatalf("StartFabric: %v\n%s", err, log.String())
	}
	defer f.Close()
	tx, r1 := f.Hosts["tx"], f.Hosts["r1"]
	if tx.IP != capTxIP || tx.GatewayIP != capTxGW || r1.IP != capR1IP || r1.ID != capR1ID {
		t.Fatalf("addresses tx %s via %s, r1 %s id %d: the constants of checkLabCapture no longer match StartFabric",
			tx.IP, tx.GatewayIP, r1.IP, r1.ID)
	}
	type recv struct {
		h   *lab.FabricHost
		out *bytes.Buffer
		p   *lab.Proc
	}
	var recvs []recv
	for _, h := range f.Receivers() {
		out := &bytes.Buffer{}
		p, err := f.Lab.Start(h.NS, "recv "+h.Name, out, logFile(t, dir, "recv-"+h.Name+".log"), bin, "recv",
			"--id", strconv.Itoa(int(h.ID)), "--listen", f.ListenAddr(h.Name),
			"--idle-timeout", "1s", "--duration", "60s", "--json")
		if err != nil {
			t.Fatal(err)
		}
		recvs = append(recvs, recv{h, out, p})
	}
	for _, r := range recvs {
		waitFor(t, r.p, "UDP port "+strconv.Itoa(int(f.UDPPort)), func() bool { return udpBound(r.p.PID(), f.UDPPort) })
	}

	// 2. The captures.
	type capture struct {
		path string
		p    *lab.Proc
	}
	var caps []capture
	for _, h := range []*lab.FabricHost{tx, r1} {
		path := filepath.Join(dir, h.Name+".pcap")
		p, err := f.Lab.Start(h.NS, "dumpcap "+h.Name, nil, logFile(t, dir, "dumpcap-"+h.Name+".log"), tools["dumpcap"],
			"-i", "eth0", "-f", "udp port "+strconv.Itoa(int(f.UDPPort)), "-P", "-q", "-w", path, "-a", "duration:60")
		if err != nil {
			t.Fatal(err)
		}
		caps = append(caps, capture{path, p})
	}
	for _, c := range caps {
		waitFor(t, c.p, "a packet socket", func() bool { return packetSocketOpen(c.p.PID()) })
	}

	// 3. The traffic.
	var sendOut bytes.Buffer
	sp, err := f.Lab.Start(tx.NS, "send", &sendOut, logFile(t, dir, "send.log"), bin, "send",
		"--via", f.GatewayAddr("tx"), "--subsets-of", "1-3", "--seed", strconv.Itoa(capSeed),
		"--source-id", strconv.Itoa(capSource), "--session", strconv.Itoa(capSession),
		"--count", strconv.Itoa(capCount), "--size", strconv.Itoa(capSize), "--rate", "200", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Wait(ctx); err != nil {
		t.Fatalf("send: %v\n%s", err, readLog(dir, "send.log"))
	}
	for _, r := range recvs {
		if err := r.p.Wait(ctx); err != nil {
			t.Fatalf("%v\n%s", err, readLog(dir, "recv-"+r.h.Name+".log"))
		}
		var rep endpoint.Report
		if err := json.Unmarshal(r.out.Bytes(), &rep); err != nil {
			t.Fatalf("recv %s: %v: %q", r.h.Name, err, r.out.String())
		}
		res := lab.Compare(r.h.ID, capSchedule.Expected(r.h.ID, 0, capCount), &rep, capSource, capSession)
		if !res.OK {
			t.Errorf("receiver %d: %+v", r.h.ID, res)
		}
	}

	// 4. Stop the captures (dumpcap closes its file on SIGTERM), merge and
	// decode.
	for _, c := range caps {
		if err := c.p.Stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(c.path); err != nil || fi.Size() <= 24 {
			t.Fatalf("capture %s is empty (%v)\n%s", c.path, err, readLog(dir, "dumpcap-"+strings.TrimSuffix(filepath.Base(c.path), ".pcap")+".log"))
		}
	}
	merged := filepath.Join(dir, "lab-capture.pcap")
	if out, err := exec.Command(tools["mergecap"], "-F", "pcap", "-w", merged, caps[0].path, caps[1].path).CombinedOutput(); err != nil {
		t.Fatalf("mergecap: %v\n%s", err, out)
	}
	checkLabCapture(t, tools["tshark"], lua, merged)
	if t.Failed() {
		t.Logf("capture kept in %s", merged)
		return
	}
	if os.Getenv("SPARSECAST_UPDATE_CAPTURE") != "" {
		data, err := os.ReadFile(merged)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "lab-capture.pcap"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("testdata/lab-capture.pcap updated (%d bytes)", len(data))
	}
}

// buildBinary builds the sparsecast binary the lab runs.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sparsecast")
	if err := lab.BuildBinary(bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func logFile(t *testing.T, dir, name string) io.Writer {
	t.Helper()
	fh, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	return fh
}

func readLog(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	return string(b)
}

// waitFor polls ready until it holds, failing the test if p exits first or
// 15 s pass.
func waitFor(t *testing.T, p *lab.Proc, what string, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ready() {
		if p.Exited() {
			t.Fatalf("%s exited before opening %s: %v", p.Name, what, p.Wait(context.Background()))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not open %s within 15 s", p.Name, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// udpBound reports whether pid's network namespace has a UDP socket bound to
// port (/proc/PID/net shows the namespace of PID).
func udpBound(pid int, port uint16) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/udp", pid))
	if err != nil {
		return false
	}
	want := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(data), "\n") {
		// "  sl  local_address rem_address ...": local is field 1.
		if f := strings.Fields(line); len(f) > 2 && strings.HasSuffix(f[1], want) {
			return true
		}
	}
	return false
}

// packetSocketOpen reports whether pid's network namespace has an AF_PACKET
// socket bound to an interface: in a host's namespace, only a capture's.
func packetSocketOpen(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/packet", pid))
	if err != nil {
		return false
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for _, line := range lines[1:] {
		// sk RefCnt Type Proto Iface R Rmem User Inode
		if f := strings.Fields(line); len(f) >= 5 && f[4] != "0" {
			return true
		}
	}
	return false
}
