package lab

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/control"
)

// TestTransferOnTimeout runs the transfer scenario with the real send and
// recv on loopback, without namespaces (so without root), through a
// "switch" that swallows everything: the receivers never get a packet and
// never answer. The scenario must stop the sender and the receivers by
// its timeout and say, per receiver, that it got nothing.
func TestTransferOnTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "sparsecast")
	if err := BuildBinary(bin); err != nil {
		t.Fatal(err)
	}
	// The gateway every host sends to: reads and drops.
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 9)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	topo, err := control.ParseTopology([]byte(transferTopology))
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{Prefix: "sct-"}
	f := &Fabric{Lab: l, Topo: topo, Dir: t.TempDir(), UDPPort: uint16(sink.LocalAddr().(*net.UDPAddr).Port), Hosts: map[string]*FabricHost{}}
	for i, name := range []string{"tx", "r1", "r2"} {
		f.Hosts[name] = &FabricHost{Name: name, IP: net.IPv4(127, 0, 0, byte(1+i)).String(), GatewayIP: "127.0.0.9"}
	}
	const timeout = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	res, err := TransferOn(ctx, f, TransferOptions{Binary: bin, Sender: "tx", Receivers: []string{"r1", "r2"}, Size: 200_000, Timeout: timeout})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after %v:\n%s", took, res.Table())
	// The scenario stops everything before its timeout; the slack only
	// keeps a starved machine from failing the test.
	if took > timeout+5*time.Second {
		t.Errorf("returned after %v, timeout %v", took, timeout)
	}
	if !res.TimedOut || res.DeliveredOK || res.Session == 0 {
		t.Errorf("timed_out %v, delivered_ok %v, session %d: want true, false, a session", res.TimedOut, res.DeliveredOK, res.Session)
	}
	if len(res.Receivers) != 2 {
		t.Fatalf("%d receivers, want 2", len(res.Receivers))
	}
	for _, r := range res.Receivers {
		// The sender's give-up time is the timeout, and its clock starts
		// after the scenario's, so it is always stopped before it gives up.
		if r.OK || r.SenderView != "incomplete" || r.Acked != 0 || r.Received != 0 || r.Stopped != "canceled" ||
			!strings.Contains(r.Error, "not finished when the sender ended") || !strings.Contains(r.Error, "no copy stored") {
			t.Errorf("receiver %+v", r)
		}
	}
	for _, p := range l.procs {
		if !p.Exited() {
			t.Errorf("%s still running", p.Name)
		}
	}
}
