package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// sendFileTo runs `recv --out dir --files 1` (ID 3) and `send FILE --to 3`
// against each other on loopback (no switch: DATA goes straight to the
// receiver, feedback straight back) and returns both errors and outputs.
func sendFileTo(t *testing.T, dir string, overwrite, asJSON bool, file string) (sendErr, recvErr error, sendOut, recvOut string) {
	t.Helper()
	senderAddr := freeUDPPort(t)
	ro := &RecvOptions{ID: 3, Listen: "127.0.0.1:0", Via: senderAddr.String(), OutDir: dir, Overwrite: overwrite, Reliable: true,
		Files: 1, Linger: 300 * time.Millisecond, Duration: 20 * time.Second, Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}
	ready := make(chan netip.AddrPort, 1)
	ro.ready = func(a netip.AddrPort) { ready <- a }
	done := make(chan error, 1)
	go func() { done <- runRecvReliable(context.Background(), ro) }()
	var recvAddr netip.AddrPort
	select {
	case recvAddr = <-ready:
	case err := <-done:
		t.Fatalf("recv did not start: %v", err)
	}
	so := &SendOptions{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}, Via: recvAddr.String(), Listen: senderAddr.String(), Local: "127.0.0.1",
		To: "3", Receivers: []uint16{3}, SourceID: 11, Session: 40000 + int(time.Now().UnixNano()%20000), HopLimit: 16,
		GiveUp: 5 * time.Second, File: file, JSON: asJSON, mode: "file"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sendErr = runSendFile(ctx, so)
	recvErr = <-done
	return sendErr, recvErr, so.Out.(*bytes.Buffer).String(), ro.Out.(*bytes.Buffer).String()
}

// TestSendFileReceiverCannotStore: the receiver's directory already holds
// the file and --overwrite is not given: the receiver fails the file and
// tells the sender, which exits with an error naming receiver 3 and the
// reason, and never says complete. With --overwrite the copy is stored.
func TestSendFileReceiverCannotStore(t *testing.T) {
	src := filepath.Join(t.TempDir(), "ckpt.bin")
	data := bytes.Repeat([]byte("sparsecast "), 20000)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ckpt.bin"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}

	sendErr, recvErr, out, _ := sendFileTo(t, dir, false, false, src)
	if sendErr == nil || !strings.Contains(sendErr.Error(), "not stored by 1 of 1 receivers: 3 (exists: the file exists at the receiver") {
		t.Errorf("send error %v", sendErr)
	}
	if !strings.Contains(out, "FAILED for 1 of 1 receivers (3)") || !strings.Contains(out, "receiver 3 FAILED: exists: ") || strings.Contains(out, "complete") {
		t.Errorf("send summary:\n%s", out)
	}
	if recvErr == nil || !strings.Contains(recvErr.Error(), "0 of 1 files") {
		t.Errorf("recv error %v", recvErr)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "ckpt.bin")); string(got) != "old" {
		t.Errorf("the existing file was replaced")
	}

	// The same in JSON: the receiver's entry carries the reason.
	sendErr, _, out, _ = sendFileTo(t, dir, false, true, src)
	var sum TransferSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("send JSON: %v\n%s", err, out)
	}
	if sendErr == nil || sum.Complete || len(sum.Failed) != 1 || sum.Failed[0] != 3 || len(sum.Receivers) != 1 ||
		sum.Receivers[0].AbortReason != "exists" || sum.Receivers[0].Error == "" || sum.Receivers[0].Complete || sum.ABORTs == 0 {
		t.Errorf("send error %v, summary %+v", sendErr, sum)
	}

	sendErr, recvErr, out, _ = sendFileTo(t, dir, true, false, src)
	if sendErr != nil || recvErr != nil || !strings.Contains(out, "complete: every receiver stored it (1)") {
		t.Errorf("with --overwrite: send %v, recv %v\n%s", sendErr, recvErr, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "ckpt.bin")); !bytes.Equal(got, data) {
		t.Errorf("with --overwrite the file holds %d bytes, want %d", len(got), len(data))
	}
}

func TestRecvOverwriteFlag(t *testing.T) {
	if _, err := parseRecv(t, "--id", "1", "--via", "127.0.0.1", "--reliable", "--overwrite"); err == nil || !strings.Contains(err.Error(), "--overwrite applies to --out") {
		t.Errorf("--overwrite without --out: %v", err)
	}
	o, err := parseRecv(t, "--id", "1", "--via", "127.0.0.1", "--out", t.TempDir(), "--overwrite")
	if err != nil || !o.Overwrite || !o.Reliable {
		t.Errorf("--out --overwrite: %+v, %v", o, err)
	}
}
