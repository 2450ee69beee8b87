package lab

// The single-switch scenario, in order:
//
//  1. Clear what an earlier run left (Teardown of the prefix), then build
//     namespaces sw and h0..hN and one veth per host: eth0 in h<i> to p<i> in
//     sw. Host i has 10.77.<i>.2/24 (or fd77:<i>::2/64), a permanent neighbor
//     entry for the switch port's address 10.77.<i>.1 (the switch does not
//     answer ARP) and a default route through it, and tx checksum offload
//     off. The switch ports have no kernel address: the switch owns them.
//  2. Write switch.yaml (afpacket ports on the low-latency V2 ring,
//     neighbor = the host's MAC and IP, route receiver i -> p<i>), check it
//     with dataplane.LoadConfig, start `sparsecast switch run` in sw and
//     wait until it has AF_PACKET sockets on every port.
//  3. Start `sparsecast recv --id i --json` in h1..hN, wait until each has
//     bound its UDP port, then run `sparsecast send --subsets-of 1-N` from
//     h0 and wait for the receivers' idle timeouts.
//  4. Compare every receiver's sequence numbers with Schedule.Expected.
//  5. Always: stop the processes and delete the namespaces.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/afpacket"
	"github.com/sparsecast/sparsecast/dataplane/endpoint"
	"github.com/sparsecast/sparsecast/headers"
)

// Options configure SingleSwitch. Zero values take the defaults.
type Options struct {
	// Binary is the sparsecast binary to run in the namespaces (required).
	Binary string
	// Packets to send (default 10,000).
	Packets int
	// Receivers is the number of receiving hosts h1..hN (default 4, max 250).
	Receivers int
	// Rate in packets per second (default 5,000: what a 2-core machine
	// carries through a userspace switch with room to spare).
	Rate float64
	// Size is the payload size in bytes (default 64).
	Size int
	// Seed of the subset schedule (default 1) and Session of the stream
	// (default 1).
	Seed    uint64
	Session uint16
	// UDPPort is SMH's port (default 9471).
	UDPPort uint16
	// IPv6 runs the hosts and the switch's neighbors on IPv6 instead of IPv4.
	IPv6 bool
	// IdleTimeout is how long receivers wait after their last packet
	// (default 2s).
	IdleTimeout time.Duration
	// Prefix names the namespaces (default "sc-").
	Prefix string
	// Dir receives switch.yaml and the processes' logs (default: a new
	// temporary directory, kept so a failure can be read).
	Dir string
	// Log gets progress lines and the commands run (nil: silent).
	Log io.Writer
}

func (o *Options) defaults() error {
	if o.Binary == "" {
		return fmt.Errorf("single-switch: no sparsecast binary")
	}
	if fi, err := os.Stat(o.Binary); err != nil {
		return fmt.Errorf("single-switch: binary: %w", err)
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("single-switch: binary %s is not an executable file", o.Binary)
	}
	if o.Packets == 0 {
		o.Packets = 10000
	}
	if o.Receivers == 0 {
		o.Receivers = 4
	}
	if o.Rate == 0 {
		o.Rate = 5000
	}
	if o.Size == 0 {
		o.Size = 64
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Session == 0 {
		o.Session = 1
	}
	if o.UDPPort == 0 {
		o.UDPPort = headers.DefaultUDPPort
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Second
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	switch {
	case o.Packets < 0 || o.Packets > 100_000_000:
		return fmt.Errorf("single-switch: packets %d: want 1-100000000", o.Packets)
	case o.Receivers < 1 || o.Receivers > 250:
		return fmt.Errorf("single-switch: receivers %d: want 1-250", o.Receivers)
	case o.Rate < 0:
		return fmt.Errorf("single-switch: rate %v: want > 0", o.Rate)
	case o.Size < endpoint.MinPayload || o.Size > 1400:
		return fmt.Errorf("single-switch: size %d: want %d-1400 (one Ethernet frame)", o.Size, endpoint.MinPayload)
	case o.IdleTimeout < 0:
		return fmt.Errorf("single-switch: negative idle timeout")
	}
	return CheckPrefix(o.Prefix)
}

// Host i's addressing: the host end eth0 and the switch port p<i>.
type hostAddr struct {
	Index            int
	HostMAC, PortMAC string
	HostIP, PortIP   string
	PrefixLen        int
}

func addrFor(i int, v6 bool) hostAddr {
	a := hostAddr{
		Index:   i,
		HostMAC: fmt.Sprintf("02:53:43:00:%02x:02", i),
		PortMAC: fmt.Sprintf("02:53:43:00:%02x:01", i),
	}
	if v6 {
		a.HostIP, a.PortIP, a.PrefixLen = fmt.Sprintf("fd77:%x::2", i), fmt.Sprintf("fd77:%x::1", i), 64
	} else {
		a.HostIP, a.PortIP, a.PrefixLen = fmt.Sprintf("10.77.%d.2", i), fmt.Sprintf("10.77.%d.1", i), 24
	}
	return a
}

// SwitchConfigFor renders the switch.yaml of a single switch whose port p<i>
// faces host i (i = 0..hosts-1, host 0 the sender), routing receiver i to
// p<i> for i >= 1.
func SwitchConfigFor(hosts int, udpPort uint16, v6 bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# single-switch lab, written by sparsecast testbed\n")
	fmt.Fprintf(&b, "name: sw\nudp_port: %d\npoll_mode: adaptive\nworkers: 1\nmetrics_addr: 127.0.0.1:0\n", udpPort)
	b.WriteString("ports:\n")
	for i := 0; i < hosts; i++ {
		a := addrFor(i, v6)
		fmt.Fprintf(&b, "  - name: p%d\n    type: afpacket\n    iface: p%d\n    neighbor_mac: %q\n    neighbor_ip: %q\n    rx_ring: %s\n",
			i, i, a.HostMAC, a.HostIP, LabRxRing)
	}
	b.WriteString("routes:\n")
	for i := 1; i < hosts; i++ {
		fmt.Fprintf(&b, "  - receivers: %q\n    port: p%d\n", strconv.Itoa(i), i)
	}
	return b.Bytes()
}

// ReceiverResult compares what one receiver got with what the schedule sent it.
type ReceiverResult struct {
	ID       uint16 `json:"id"`
	Expected uint64 `json:"expected"`
	// Received counts valid DATA packets of the stream (duplicates included).
	Received      uint64 `json:"received"`
	Duplicates    uint64 `json:"duplicates"`
	Missing       uint64 `json:"missing"`
	Unexpected    uint64 `json:"unexpected"`
	SetViolations uint64 `json:"set_violations"`
	Malformed     uint64 `json:"malformed"`
	OtherStreams  int    `json:"other_streams"`
	// MissingSeqs and UnexpectedSeqs list the differences (truncated).
	MissingSeqs    string `json:"missing_seqs,omitempty"`
	UnexpectedSeqs string `json:"unexpected_seqs,omitempty"`
	AvgLatencyNS   int64  `json:"avg_latency_ns"`
	OK             bool   `json:"ok"`
	Error          string `json:"error,omitempty"`
}

// Summary is the scenario's result.
type Summary struct {
	Scenario    string           `json:"scenario"`
	DeliveredOK bool             `json:"delivered_ok"`
	Packets     int              `json:"packets"`
	Sent        uint64           `json:"sent"`
	SendPPS     float64          `json:"send_pps"`
	Seed        uint64           `json:"seed"`
	Session     uint16           `json:"session"`
	IPv6        bool             `json:"ipv6"`
	Receivers   []ReceiverResult `json:"receivers"`
	ElapsedNS   int64            `json:"elapsed_ns"`
	Dir         string           `json:"dir"`
	Problems    []string         `json:"problems,omitempty"`
}

// Table renders the summary for people.
func (s *Summary) Table() string {
	var b bytes.Buffer
	verdict := "FAILED"
	if s.DeliveredOK {
		verdict = "OK"
	}
	fam := "IPv4"
	if s.IPv6 {
		fam = "IPv6"
	}
	fmt.Fprintf(&b, "%s (%s): %s, %d of %d packets sent at %.0f pps, seed %d, session %d, %v\n",
		s.Scenario, fam, verdict, s.Sent, s.Packets, s.SendPPS, s.Seed, s.Session,
		time.Duration(s.ElapsedNS).Round(time.Millisecond))
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "RECEIVER\tEXPECTED\tRECEIVED\tDUPLICATES\tMISSING\tUNEXPECTED\tSET-VIOLATIONS\tMALFORMED\tLATENCY\tOK\t")
	for _, r := range s.Receivers {
		ok := "yes"
		if !r.OK {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%v\t%s\t\n", r.ID, r.Expected, r.Received, r.Duplicates,
			r.Missing, r.Unexpected, r.SetViolations, r.Malformed, time.Duration(r.AvgLatencyNS).Round(time.Microsecond), ok)
	}
	tw.Flush()
	for _, p := range s.Problems {
		fmt.Fprintf(&b, "problem: %s\n", p)
	}
	fmt.Fprintf(&b, "logs and switch.yaml in %s\n", s.Dir)
	return b.String()
}

// JSON renders the summary as indented JSON.
func (s *Summary) JSON() ([]byte, error) { return json.MarshalIndent(s, "", "  ") }

// Compare checks one receiver's report against the schedule's expectation
// for stream (source, session).
func Compare(id uint16, expected *endpoint.SeqSet, rep *endpoint.Report, source, session uint16) ReceiverResult {
	r := ReceiverResult{ID: id, Expected: expected.Len(), Malformed: rep.Malformed}
	got := &endpoint.SeqSet{}
	for _, st := range rep.Streams {
		if st.Source != source || st.Session != session {
			r.OtherStreams++
			continue
		}
		got = st.Seqs
		r.Received, r.Duplicates, r.SetViolations = st.Received, st.Duplicates, st.SetViolations
		r.AvgLatencyNS = int64(st.Latency.Avg)
	}
	missing, unexpected := expected.Minus(got), got.Minus(expected)
	r.Missing, r.Unexpected = missing.Len(), unexpected.Len()
	r.MissingSeqs, r.UnexpectedSeqs = truncate(missing.String()), truncate(unexpected.String())
	r.OK = r.Missing == 0 && r.Unexpected == 0 && r.Duplicates == 0 && r.SetViolations == 0 &&
		r.Malformed == 0 && r.OtherStreams == 0 && r.Received == r.Expected && rep.ID == id
	return r
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// SingleSwitch runs the single-switch scenario and always tears its lab
// down. The error reports a lab that could not be built or run; wrong
// deliveries come back as a Summary with DeliveredOK false.
func SingleSwitch(ctx context.Context, o Options) (sum *Summary, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	start := time.Now()
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "sparsecast-single-switch-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	if err := Teardown(ctx, o.Prefix, o.Log); err != nil {
		return nil, fmt.Errorf("single-switch: clearing an earlier lab: %w", err)
	}
	l, err := New(o.Prefix)
	if err != nil {
		return nil, err
	}
	l.Log = o.Log
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("single-switch: teardown: %w", cerr)
		}
	}()

	hosts := o.Receivers + 1
	logf("== building lab: sw and h0..h%d", o.Receivers)
	sw, err := l.AddNamespace(ctx, "sw")
	if err != nil {
		return nil, err
	}
	addrs := make([]hostAddr, hosts)
	hostNS := make([]string, hosts)
	for i := 0; i < hosts; i++ {
		a := addrFor(i, o.IPv6)
		addrs[i] = a
		if hostNS[i], err = l.AddNamespace(ctx, fmt.Sprintf("h%d", i)); err != nil {
			return nil, err
		}
		ns, port := hostNS[i], fmt.Sprintf("p%d", i)
		if err := l.AddVeth(ctx, Link{NS: ns, Dev: "eth0", MAC: a.HostMAC}, Link{NS: sw, Dev: port, MAC: a.PortMAC}); err != nil {
			return nil, err
		}
		if o.IPv6 {
			if err := l.EnableIPv6(ctx, ns, "eth0"); err != nil {
				return nil, err
			}
			// Loopback too: Go probes IPv6 support by binding ::1.
			if err := l.EnableIPv6(ctx, ns, "lo"); err != nil {
				return nil, err
			}
		}
		steps := []func() error{
			func() error { return l.AddAddr(ctx, ns, "eth0", fmt.Sprintf("%s/%d", a.HostIP, a.PrefixLen)) },
			func() error { return l.DisableTxOffload(ctx, ns, "eth0") },
			func() error { return l.Up(ctx, ns, "eth0") },
			func() error { return l.Up(ctx, sw, port) },
			func() error { return l.AddNeighbor(ctx, ns, "eth0", a.PortIP, a.PortMAC) },
			func() error { return l.AddDefaultRoute(ctx, ns, "eth0", a.PortIP) },
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return nil, err
			}
		}
	}

	cfgPath := filepath.Join(o.Dir, "switch.yaml")
	if err := os.WriteFile(cfgPath, SwitchConfigFor(hosts, o.UDPPort, o.IPv6), 0o644); err != nil {
		return nil, err
	}
	if _, err := dataplane.LoadConfig(cfgPath); err != nil {
		return nil, fmt.Errorf("single-switch: generated config does not load: %w", err)
	}
	swLog, err := os.Create(filepath.Join(o.Dir, "switch.log"))
	if err != nil {
		return nil, err
	}
	defer swLog.Close()
	logf("== starting switch")
	swProc, err := l.Start(sw, "switch", swLog, swLog, o.Binary, "switch", "run", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	if err := waitSwitchPorts(ctx, sw, hosts, swProc, 15*time.Second); err != nil {
		return nil, fmt.Errorf("single-switch: %w (see %s)", err, swLog.Name())
	}

	logf("== starting %d receivers", o.Receivers)
	sendTime := time.Duration(float64(o.Packets) / o.Rate * float64(time.Second))
	maxRun := sendTime*3 + o.IdleTimeout + 60*time.Second
	outs := make([]*bytes.Buffer, hosts)
	recvs := make([]*Proc, hosts)
	for i := 1; i < hosts; i++ {
		outs[i] = &bytes.Buffer{}
		errLog, err := os.Create(filepath.Join(o.Dir, fmt.Sprintf("recv-%d.log", i)))
		if err != nil {
			return nil, err
		}
		defer errLog.Close()
		listen := net.JoinHostPort(addrs[i].HostIP, strconv.Itoa(int(o.UDPPort)))
		recvs[i], err = l.Start(hostNS[i], fmt.Sprintf("recv %d", i), outs[i], errLog, o.Binary, "recv",
			"--id", strconv.Itoa(i), "--listen", listen, "--idle-timeout", o.IdleTimeout.String(),
			"--duration", maxRun.String(), "--json")
		if err != nil {
			return nil, err
		}
	}
	for i := 1; i < hosts; i++ {
		if err := waitUDPBound(ctx, recvs[i], o.UDPPort, 10*time.Second); err != nil {
			return nil, fmt.Errorf("single-switch: receiver %d: %w", i, err)
		}
	}

	logf("== sending %d packets from h0 at %.0f pps", o.Packets, o.Rate)
	var sendOut bytes.Buffer
	sendLog, err := os.Create(filepath.Join(o.Dir, "send.log"))
	if err != nil {
		return nil, err
	}
	defer sendLog.Close()
	recvIDs := fmt.Sprintf("1-%d", o.Receivers)
	if o.Receivers == 1 {
		recvIDs = "1"
	}
	sender, err := l.Start(hostNS[0], "send", &sendOut, sendLog, o.Binary, "send",
		"--via", net.JoinHostPort(addrs[0].PortIP, strconv.Itoa(int(o.UDPPort))),
		"--subsets-of", recvIDs, "--seed", strconv.FormatUint(o.Seed, 10),
		"--source-id", "0", "--session", strconv.Itoa(int(o.Session)),
		"--count", strconv.Itoa(o.Packets), "--size", strconv.Itoa(o.Size),
		"--rate", strconv.FormatFloat(o.Rate, 'f', -1, 64), "--json")
	if err != nil {
		return nil, err
	}
	sendCtx, cancel := context.WithTimeout(ctx, maxRun)
	defer cancel()
	if err := sender.Wait(sendCtx); err != nil {
		return nil, fmt.Errorf("single-switch: sender: %w (see %s)", err, sendLog.Name())
	}
	var sent struct {
		Packets uint64  `json:"packets"`
		PPS     float64 `json:"pps"`
	}
	if err := json.Unmarshal(sendOut.Bytes(), &sent); err != nil {
		return nil, fmt.Errorf("single-switch: sender output: %w: %q", err, sendOut.String())
	}

	logf("== waiting for receivers (idle timeout %v)", o.IdleTimeout)
	sum = &Summary{
		Scenario: "single-switch", Packets: o.Packets, Sent: sent.Packets, SendPPS: sent.PPS,
		Seed: o.Seed, Session: o.Session, IPv6: o.IPv6, Dir: o.Dir,
	}
	if sent.Packets != uint64(o.Packets) {
		sum.Problems = append(sum.Problems, fmt.Sprintf("sender sent %d of %d packets", sent.Packets, o.Packets))
	}
	sched := endpoint.Schedule{Seed: o.Seed, Receivers: make([]uint16, o.Receivers)}
	for i := range sched.Receivers {
		sched.Receivers[i] = uint16(i + 1)
	}
	recvCtx, cancel2 := context.WithTimeout(ctx, maxRun)
	defer cancel2()
	for i := 1; i < hosts; i++ {
		id := uint16(i)
		exp := sched.Expected(id, 0, o.Packets)
		res := ReceiverResult{ID: id, Expected: exp.Len()}
		if err := recvs[i].Wait(recvCtx); err != nil {
			res.Error = err.Error()
		} else {
			var rep endpoint.Report
			if err := json.Unmarshal(outs[i].Bytes(), &rep); err != nil {
				res.Error = fmt.Sprintf("report: %v", err)
			} else {
				res = Compare(id, exp, &rep, 0, o.Session)
			}
		}
		if res.Error != "" {
			sum.Problems = append(sum.Problems, fmt.Sprintf("receiver %d: %s", i, res.Error))
		}
		sum.Receivers = append(sum.Receivers, res)
	}
	if swProc.Exited() {
		sum.Problems = append(sum.Problems, fmt.Sprintf("the switch exited during the run (see %s)", swLog.Name()))
	}
	_ = swProc.Stop(3 * time.Second)
	sum.DeliveredOK = len(sum.Problems) == 0
	for _, r := range sum.Receivers {
		sum.DeliveredOK = sum.DeliveredOK && r.OK
	}
	sum.ElapsedNS = int64(time.Since(start))
	if js, err := sum.JSON(); err == nil {
		_ = os.WriteFile(filepath.Join(o.Dir, "summary.json"), js, 0o644)
	}
	return sum, nil
}

// WaitPacketSockets waits until namespace ns has AF_PACKET sockets bound to
// n distinct interfaces (/proc/net/packet is per namespace), or proc exits.
func WaitPacketSockets(ctx context.Context, ns string, n int, proc *Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var table []byte
		err := afpacket.InNetns(ns, func() error {
			var err error
			table, err = os.ReadFile("/proc/thread-self/net/packet")
			return err
		})
		if err != nil {
			return err
		}
		ifaces := map[string]bool{}
		lines := strings.Split(strings.TrimSpace(string(table)), "\n")
		for _, line := range lines[1:] {
			// sk RefCnt Type Proto Iface R Rmem User Inode
			if f := strings.Fields(line); len(f) >= 5 && f[4] != "0" {
				ifaces[f[4]] = true
			}
		}
		if len(ifaces) >= n {
			return nil
		}
		if proc.Exited() {
			return fmt.Errorf("the switch exited before opening its ports: %v", proc.Wait(ctx))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the switch opened AF_PACKET sockets on %d of %d ports within %v", len(ifaces), n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitSwitchPorts is WaitPacketSockets, then a moment for the workers to
// start polling the bound sockets.
func waitSwitchPorts(ctx context.Context, ns string, n int, proc *Proc, timeout time.Duration) error {
	if err := WaitPacketSockets(ctx, ns, n, proc, timeout); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	return nil
}

// waitUDPBound waits until proc has a UDP socket bound to port. It reads
// /proc/PID/net/udp{,6}, which shows the network namespace of PID, so it
// starts no process: cheap enough to look every 10 ms. Until `ip netns
// exec` has exec'd the command (its comm is still "ip"), PID is in the
// caller's namespace and is not looked at.
func waitUDPBound(ctx context.Context, proc *Proc, port uint16, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := fmt.Sprintf(":%04X ", port)
	pid := proc.PID()
	for {
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) != "ip" {
			for _, file := range []string{"udp", "udp6"} {
				// udp6 is absent without IPv6 in some kernels.
				out, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, file))
				for _, line := range strings.Split(string(out), "\n") {
					// "  sl  local_address rem_address ...": local is field 1.
					if f := strings.Fields(line); len(f) > 2 && strings.HasSuffix(f[1]+" ", want) {
						return nil
					}
				}
			}
		}
		if proc.Exited() {
			return fmt.Errorf("exited before binding port %d: %v", port, proc.Wait(ctx))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d not bound within %v", port, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
