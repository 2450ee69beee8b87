package lab

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
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

// A copy is right only when it holds exactly the original: shorter,
// longer and one byte changed are all wrong. A stamped original is reused,
// an unstamped or resized one rewritten.
func TestCompareFileAndCheckpointFile(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "checkpoint.bin")
	const size = 3<<20 + 5
	if err := checkpointFile(orig, size, 42); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(orig)
	if err != nil || len(data) != size {
		t.Fatalf("original: %d bytes, %v", len(data), err)
	}
	flipped := bytes.Clone(data)
	flipped[size-1] ^= 1
	for name, c := range map[string]struct {
		b    []byte
		same bool
	}{
		"same": {data, true}, "short": {data[:size-1], false}, "long": {append(bytes.Clone(data), 0), false},
		"flipped": {flipped, false}, "empty": {nil, false},
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, c.b, 0o644); err != nil {
			t.Fatal(err)
		}
		n, same, err := compareFile(p, orig)
		if err != nil || same != c.same || n != int64(len(c.b)) {
			t.Errorf("%s: %d bytes, same %v, %v: want %d, %v", name, n, same, err, len(c.b), c.same)
		}
	}
	if _, _, err := compareFile(filepath.Join(dir, "missing"), orig); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing copy: %v", err)
	}
	// Reused as it is when stamped (a changed byte stays), rewritten for
	// another size.
	if err := os.WriteFile(orig, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkpointFile(orig, size, 42); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(orig); !bytes.Equal(b, flipped) {
		t.Errorf("a stamped original was rewritten")
	}
	if err := checkpointFile(orig, 1000, 42); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(orig); len(b) != 1000 {
		t.Errorf("original of %d bytes, want 1000", len(b))
	}
}
