package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/dataplane/endpoint"
)

func parseSend(t *testing.T, args ...string) (*SendOptions, error) {
	t.Helper()
	var got *SendOptions
	cmd := NewCmdSend(func(o *SendOptions) error { got = o; return nil })
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	err := cmd.Execute()
	return got, err
}

func parseRecv(t *testing.T, args ...string) (*RecvOptions, error) {
	t.Helper()
	var got *RecvOptions
	cmd := NewCmdRecv(func(o *RecvOptions) error { got = o; return nil })
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	err := cmd.Execute()
	return got, err
}

func TestSendFlags(t *testing.T) {
	o, err := parseSend(t, "--via", "10.77.0.1:9471", "--subsets-of", "4,1-3", "--seed", "9",
		"--source-id", "65535", "--session", "7", "--count", "10", "--size", "100", "--rate", "0", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Receivers, []uint16{1, 2, 3, 4}) || o.Seed != 9 || o.SourceID != 65535 ||
		o.Session != 7 || o.Count != 10 || o.Size != 100 || o.Rate != 0 || !o.JSON || o.HopLimit != 16 {
		t.Errorf("options %+v", o)
	}
	o, err = parseSend(t, "--via", "[fd00::1]", "--to", "9,5,1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Receivers, []uint16{1, 5, 9}) || o.Count != 1000 || o.Rate != 1000 || o.Size != 64 {
		t.Errorf("defaults %+v", o)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "1"}, "--via is required"},
		{[]string{"--via", "10.0.0.1:99999", "--to", "1"}, "--via"},
		{[]string{"--via", "not an address!", "--to", "1"}, "--via"},
		{[]string{"--via", "10.0.0.1"}, "--to IDS or --subsets-of"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--subsets-of", "1-4"}, "exclusive"},
		{[]string{"--via", "10.0.0.1", "--to", "1,x"}, "--to"},
		{[]string{"--via", "10.0.0.1", "--to", "70000"}, "out of range"},
		{[]string{"--via", "10.0.0.1", "--subsets-of", "4-1"}, "backwards"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--seed", "3"}, "--seed only applies"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--source-id", "65536"}, "--source-id"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--session", "-1"}, "--session"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--count", "-1"}, "--count -1"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--size", "5"}, "--size 5"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--rate", "-3"}, "--rate"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--hop-limit", "0"}, "--hop-limit"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--local", "1.2.3.4:x"}, "--local"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "a", "b"}, "accepts at most 1 arg"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--group", "3"}, "--group applies to a reliable"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "no/such/file"}, "FILE"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--count", "5", "sendrecv.go"}, "--count applies to plain"},
		{[]string{"--via", "10.0.0.1", "--group", "3", "sendrecv.go"}, "needs --members"},
		{[]string{"--via", "10.0.0.1", "--to", "1", "--group", "3", "--members", "1", "sendrecv.go"}, "exclusive"},
		{[]string{"--via", "10.0.0.1", "--moe", "--topk", "300", "--experts", "256"}, "--topk"},
		{[]string{"--via", "10.0.0.1", "--moe", "--experts", "4", "--topk", "2", "--to", "1,2"}, "--to lists 2 IDs for 4 experts"},
		{[]string{"--via", "10.0.0.1", "--moe", "sendrecv.go"}, "not a FILE"},
	} {
		_, err := parseSend(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("send %v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestSendReliableFlags(t *testing.T) {
	o, err := parseSend(t, "--via", "10.0.0.1", "--group", "77", "--members", "1-3", "--source-id", "100", "sendrecv.go")
	if err != nil {
		t.Fatal(err)
	}
	if o.mode != "file" || o.File != "sendrecv.go" || o.Group != 77 || !slices.Equal(o.Receivers, []uint16{1, 2, 3}) || o.Session == 0 {
		t.Errorf("file options %+v", o)
	}
	o, err = parseSend(t, "--via", "10.0.0.1", "--moe", "--experts", "16", "--topk", "4", "--tokens", "10", "--session", "5")
	if err != nil {
		t.Fatal(err)
	}
	if o.mode != "moe" || len(o.Receivers) != 16 || o.Receivers[15] != 15 || o.Session != 5 {
		t.Errorf("moe options %+v", o)
	}
	r, err := parseRecv(t, "--id", "4", "--out", t.TempDir(), "--via", "10.0.0.1", "--files", "1")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Reliable || r.Files != 1 || r.Linger != time.Second {
		t.Errorf("recv options %+v", r)
	}
	for _, args := range [][]string{
		{"--id", "4", "--out", "/no/such/dir", "--via", "10.0.0.1"},
		{"--id", "4", "--files", "1"},
		{"--id", "4", "--reliable", "--via", "10.0.0.1", "--count", "3"},
	} {
		if _, err := parseRecv(t, args...); err == nil {
			t.Errorf("recv %v accepted", args)
		}
	}
}

func TestDefaultGateway(t *testing.T) {
	p := filepath.Join(t.TempDir(), "route")
	table := "Iface\tDestination\tGateway \tFlags\nveth0\t004E0A0A\t00000000\t0001\neth0\t00000000\t014E0A0A\t0003\n"
	if err := os.WriteFile(p, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	if gw, err := defaultGateway(p); err != nil || gw != "10.10.78.1" {
		t.Errorf("gateway %q, %v", gw, err)
	}
	if err := os.WriteFile(p, []byte("Iface\tDestination\tGateway\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := defaultGateway(p); err == nil {
		t.Error("no default route, but a gateway")
	}
}

func TestRecvFlags(t *testing.T) {
	o, err := parseRecv(t, "--id", "3")
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != 3 || o.Listen != ":9471" || o.Count != 0 || o.setCheck != endpoint.SetExact {
		t.Errorf("defaults %+v", o)
	}
	o, err = parseRecv(t, "--id", "0", "--listen", "[::1]:5000", "--count", "5", "--duration", "3s",
		"--idle-timeout", "500ms", "--set-check", "member", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != 0 || o.Count != 5 || o.Duration != 3*time.Second || o.IdleTimeout != 500*time.Millisecond ||
		o.setCheck != endpoint.SetMember || !o.JSON {
		t.Errorf("options %+v", o)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--id is required"},
		{[]string{"--id", "65536"}, "--id 65536"},
		{[]string{"--id", "-2"}, "--id -2"},
		{[]string{"--id", "1", "--listen", "1.2.3.4:notaport"}, "--listen"},
		{[]string{"--id", "1", "--count", "-5"}, "--count -5"},
		{[]string{"--id", "1", "--duration", "-1s"}, "--duration"},
		{[]string{"--id", "1", "--idle-timeout", "-1s"}, "--idle-timeout"},
		{[]string{"--id", "1", "--set-check", "some"}, "--set-check"},
		{[]string{"--id", "1", "--duration", "soon"}, "invalid argument"},
	} {
		_, err := parseRecv(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("recv %v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

// startRecv runs runRecv in the background and returns its bound address
// and a channel with its error and output.
func startRecv(t *testing.T, o *RecvOptions) (netip.AddrPort, chan error, *bytes.Buffer) {
	t.Helper()
	out := &bytes.Buffer{}
	o.Out, o.ErrOut = out, &bytes.Buffer{}
	ready := make(chan netip.AddrPort, 1)
	o.ready = func(a netip.AddrPort) { ready <- a }
	done := make(chan error, 1)
	go func() { done <- runRecv(context.Background(), o) }()
	select {
	case a := <-ready:
		return a, done, out
	case err := <-done:
		t.Fatalf("recv did not start: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("recv did not start")
	}
	return netip.AddrPort{}, nil, nil
}

func TestSendRecvFixed(t *testing.T) {
	addr, done, recvOut := startRecv(t, &RecvOptions{ID: 3, Listen: "127.0.0.1:0", Count: 50, Duration: 10 * time.Second, JSON: true})
	sendOut := &bytes.Buffer{}
	err := runSend(context.Background(), &SendOptions{Out: sendOut, Via: addr.String(), Local: "127.0.0.1",
		To: "3", Receivers: []uint16{3}, SourceID: 11, Session: 2, HopLimit: 16, Count: 50, Size: 64, Rate: 0, FirstSeq: 100, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var sum SendSummary
	if err := json.Unmarshal(sendOut.Bytes(), &sum); err != nil {
		t.Fatalf("send JSON: %v\n%s", err, sendOut)
	}
	if sum.Packets != 50 || sum.FirstSeq != 100 || sum.LastSeq != 149 || sum.Mode != "fixed" ||
		sum.Receivers != "3" || sum.SourcePort != endpoint.SourcePort(11, 2) {
		t.Errorf("send summary %+v", sum)
	}
	var rep endpoint.Report
	if err := json.Unmarshal(recvOut.Bytes(), &rep); err != nil {
		t.Fatalf("recv JSON: %v\n%s", err, recvOut)
	}
	str, ok := rep.Stream(11, 2)
	if !ok || rep.StopReason != "count" || str.Seqs.String() != "100-149" || str.SetViolations != 0 || str.Duplicates != 0 {
		t.Errorf("recv report %+v, stream %+v", rep, str)
	}
	if !strings.Contains(recvOut.String(), `"seqs": "100-149"`) {
		t.Errorf("recv JSON lacks the compact ranges:\n%s", recvOut)
	}
}

func TestSendRecvSubsetsText(t *testing.T) {
	addr, done, recvOut := startRecv(t, &RecvOptions{ID: 2, Listen: "127.0.0.1:0", setCheck: endpoint.SetMember,
		IdleTimeout: 300 * time.Millisecond, Duration: 10 * time.Second})
	sendOut := &bytes.Buffer{}
	ids := []uint16{1, 2, 3, 4}
	err := runSend(context.Background(), &SendOptions{Out: sendOut, Via: addr.String(), Local: "127.0.0.1",
		SubsetsOf: "1-4", Receivers: ids, Seed: 5, HopLimit: 16, Count: 400, Size: 32, Rate: 20000})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sendOut.String(), "sent 400 packets") || !strings.Contains(sendOut.String(), "subsets of 1-4 (seed 5)") {
		t.Errorf("send output:\n%s", sendOut)
	}
	// Without a switch every packet reaches the receiver; those whose subset
	// lacks 2 are set violations under --set-check member.
	viol := 400 - endpoint.Schedule{Seed: 5, Receivers: ids}.Expected(2, 0, 400).Len()
	text := recvOut.String()
	if !strings.Contains(text, "400 DATA packets") || !strings.Contains(text, "stopped: idle") {
		t.Errorf("recv output:\n%s", text)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	fields := strings.Fields(lines[len(lines)-1])
	// SOURCE SESSION RECEIVED UNIQUE DUPLICATES OUT-OF-ORDER MISSING SET-VIOLATIONS ...
	if len(fields) < 9 || fields[2] != "400" || fields[4] != "0" || fields[6] != "0" || fields[7] != strconv.FormatUint(viol, 10) {
		t.Errorf("stream row %q, want 400 received, %d set violations", lines[len(lines)-1], viol)
	}
}

func TestRecvBindError(t *testing.T) {
	addr, done, _ := startRecv(t, &RecvOptions{ID: 1, Listen: "127.0.0.1:0", Duration: 300 * time.Millisecond})
	err := runRecv(context.Background(), &RecvOptions{ID: 1, Listen: addr.String(), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second receiver on %s: %v", addr, err)
	}
	<-done
}

// The testbed commands' flags are checked here too (testbed.go has no test
// file of its own).
func TestTestbedFlags(t *testing.T) {
	var got *SingleSwitchOptions
	cmd := NewCmdSingleSwitch(func(o *SingleSwitchOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--packets", "500", "--ipv6", "--json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Packets != 500 || !got.IPv6 || !got.JSON || got.Binary == "" || got.Prefix != "sc-" || got.Receivers != 4 {
		t.Errorf("options %+v", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--packets", "0"}, "--packets 0"},
		{[]string{"--receivers", "251"}, "--receivers"},
		{[]string{"--rate", "0"}, "--rate"},
		{[]string{"--size", "2000"}, "--size"},
		{[]string{"--session", "0"}, "--session"},
		{[]string{"--idle-timeout", "0s"}, "--idle-timeout"},
		{[]string{"--prefix", ""}, "--prefix"},
	} {
		cmd := NewCmdSingleSwitch(func(*SingleSwitchOptions) error { return nil })
		cmd.SetArgs(tc.args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("single-switch %v: %v, want %q", tc.args, err, tc.want)
		}
	}
	var down *TestbedDownOptions
	dcmd := NewCmdTestbedDown(func(o *TestbedDownOptions) error { down = o; return nil })
	dcmd.SetArgs([]string{"--prefix", "sct-"})
	if err := dcmd.Execute(); err != nil || down.Prefix != "sct-" {
		t.Errorf("down: %v %+v", err, down)
	}
	dcmd = NewCmdTestbedDown(func(o *TestbedDownOptions) error { return nil })
	dcmd.SetArgs([]string{"--prefix", "*"})
	dcmd.SetOut(&bytes.Buffer{})
	dcmd.SetErr(&bytes.Buffer{})
	if err := dcmd.Execute(); err == nil || !strings.Contains(err.Error(), "--prefix") {
		t.Errorf("down with a wildcard prefix: %v", err)
	}
	// The tree stays open for `testbed up`: run and down hang off testbed.
	tb := newTestbedCmd()
	var names []string
	for _, c := range tb.Commands() {
		names = append(names, c.Name())
	}
	if !slices.Contains(names, "down") || !slices.Contains(names, "run") {
		t.Errorf("testbed subcommands %v", names)
	}
}
