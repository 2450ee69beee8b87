package lab

// The transfer scenario (a checkpoint copy): a leaf-spine fabric, a sender
// host and four receivers on two other leaves; the fault injector drops a
// fraction of the frames on the receivers' leaf ports; the sender copies a
// file to all four with `sparsecast send FILE` (reliable, docs/feedback.md)
// and each receiver writes it with `sparsecast recv --out`. Optionally a
// spine link goes down mid-transfer. The scenario passes when every
// receiver's file is byte-identical to the original.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/control"
	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/endpoint"
)

// transferTopology is the built-in fabric: tx (ID 100, a host with an ID so
// that feedback can be routed to it) on leaf1, r1/r2 (IDs 1, 2) on leaf2,
// r3/r4 (IDs 64, 65) on leaf3, two spines.
const transferTopology = `
switches:
  - {name: spine1, role: spine, id: 1001, ports: [p1, p2, p3]}
  - {name: spine2, role: spine, id: 1002, ports: [p1, p2, p3]}
  - {name: leaf1, role: leaf, id: 1011, ports: [p1, p2, h0]}
  - {name: leaf2, role: leaf, id: 1012, ports: [p1, p2, h1, h2]}
  - {name: leaf3, role: leaf, id: 1013, ports: [p1, p2, h1, h2]}
links:
  - {a: spine1:p1, b: leaf1:p1}
  - {a: spine2:p1, b: leaf1:p2}
  - {a: spine1:p2, b: leaf2:p1}
  - {a: spine2:p2, b: leaf2:p2}
  - {a: spine1:p3, b: leaf3:p1}
  - {a: spine2:p3, b: leaf3:p2}
hosts:
  - {name: tx, attach: leaf1:h0, id: 100, ips: [10.0.1.100]}
  - {name: r1, attach: leaf2:h1, id: 1, ips: [10.0.2.1]}
  - {name: r2, attach: leaf2:h2, id: 2, ips: [10.0.2.2]}
  - {name: r3, attach: leaf3:h1, id: 64, ips: [10.0.3.1]}
  - {name: r4, attach: leaf3:h2, id: 65, ips: [10.0.3.2]}
`

// TransferOptions configure Transfer.
type TransferOptions struct {
	Binary string
	// Topology is a fabric YAML; empty means the built-in one. Sender names
	// the sending host (default "tx") and Receivers the receiving hosts
	// (default: every other host with an ID).
	Topology  string
	Sender    string
	Receivers []string
	// Size is the file size (default 4 MiB); Loss the fault loss on the
	// receivers' leaf ports (default 0.05; negative: none).
	Size int
	Loss float64
	// FailLink, "switch:port", is taken down FailAfter (default 300 ms)
	// after the transfer starts; with Silent, both ends of its link drop
	// every frame for Silent instead, carrier up (a silent failure).
	FailLink  string
	FailAfter time.Duration
	Silent    time.Duration
	// Control runs a control process (Transfer only; TransferOn uses the
	// fabric's), which recomputes and pushes tables when a link fails.
	Control bool
	// MaxRate caps the sender (packets per second; default 0: its own
	// congestion control).
	MaxRate float64
	// Window, if set, is the sender's and every receiver's --window
	// (default: theirs).
	Window int
	// Spoofer names a host outside the receiver set that forges ACKs for
	// the receivers throughout the transfer (their own ACKs and aggregates
	// naming all of them, at sequence numbers across the file), sent to its
	// switch from a port the stream never went out of: they must be
	// dropped as feedback_spoofed and change nothing.
	Spoofer string
	// OutDirs gives receiving hosts their --out directory (default
	// DIR/out-HOST), say one on a read-only or a full file system: such a
	// receiver cannot store the file, and the sender must name it.
	OutDirs map[string]string
	// Group, with UseGroup, addresses the stream to that SMH group (`send
	// --group G --members` the receivers) instead of to the receiver list:
	// the switches must have the group, from the control process.
	UseGroup bool
	Group    uint32
	// Session is the stream's SMH session (0: a fresh random one, reserved
	// on the fabric for the run).
	Session uint16
	// Timeout bounds the transfer (default 2 minutes): by then it has
	// finished or been stopped.
	Timeout time.Duration
	Prefix  string
	Dir     string
	Log     func(format string, args ...any)
}

// TransferReceiver is one receiver's outcome.
type TransferReceiver struct {
	Host  string `json:"host"`
	ID    uint16 `json:"id"`
	OK    bool   `json:"ok"`
	Bytes int64  `json:"bytes"`
	Error string `json:"error,omitempty"`
	// ACKs and NACKs it sent and the app bytes delivered to it (the
	// manifest's too), from its report, and why it stopped ("canceled": by the scenario, once the
	// sender had exited).
	ACKs  uint64 `json:"acks_sent"`
	NACKs uint64 `json:"nacks_sent"`
	// BlockNACKs of those NACKs asked for parity of a block (SMH P).
	BlockNACKs uint64 `json:"block_nacks_sent"`
	// NamedLosses: packets it NACKed by name, by reason (the report's
	// named_losses_by_reason).
	NamedLosses [5]uint64 `json:"named_losses_by_reason"`
	Received    uint64    `json:"bytes_received"`
	Stopped     string    `json:"recv_stopped,omitempty"`
	// SenderView is the sender's verdict on it (complete, failed: given
	// up, incomplete: stopped first) and Acked of Packets what it
	// acknowledged of the packets addressed to it.
	SenderView string `json:"sender_view,omitempty"`
	Acked      uint64 `json:"packets_acked"`
	Packets    uint64 `json:"packets"`
}

// TransferResult is the scenario's outcome.
type TransferResult struct {
	Size        int     `json:"size"`
	Loss        float64 `json:"loss"`
	FailedLink  string  `json:"failed_link,omitempty"`
	DeliveredOK bool    `json:"delivered_ok"`
	// TimedOut: the transfer had not finished by the timeout and was
	// stopped.
	TimedOut  bool               `json:"timed_out"`
	Session   uint16             `json:"session"`
	Receivers []TransferReceiver `json:"receivers"`
	// Sender is `sparsecast send --json`'s summary; SenderS its transfer
	// time (from its first packet to its end) and WallS the whole run's,
	// from the file's creation to the copies' check (with Transfer, the
	// fabric's build and teardown too).
	Sender  json.RawMessage `json:"sender"`
	SenderS float64         `json:"sender_s"`
	WallS   float64         `json:"wall_s"`
	Dir     string          `json:"dir"`
	// SenderError is how the sender exited (empty: status 0; its message
	// is in DIR/send.log).
	SenderError string `json:"sender_error,omitempty"`
	// Progress is every receiver's bytes over time, from the sender's
	// start to its end (for PlotProgress); FailAt is when FailLink went
	// down on that clock (0: no failure).
	Progress []ReceiverProgress `json:"-"`
	FailAt   time.Duration      `json:"-"`
	// SpoofedSent counts the forged ACKs the Spoofer sent and
	// SpoofedDropped its switch's feedback_spoofed drops.
	SpoofedSent    int    `json:"spoofed_sent,omitempty"`
	SpoofedDropped uint64 `json:"spoofed_dropped,omitempty"`
	// FaultDrops is each silenced switch's fault_injected drops by the end
	// (a silent failure; the count includes any configured loss).
	FaultDrops map[string]uint64 `json:"fault_drops,omitempty"`
	// SwitchesUpdated counts the switches that applied a table from the
	// control process during the transfer (Control only).
	SwitchesUpdated int `json:"switches_updated_by_control,omitempty"`
}

// Table renders a result for people.
func (r *TransferResult) Table() string {
	var b strings.Builder
	fail := ""
	if r.FailedLink != "" {
		fail = ", link " + r.FailedLink + " failed mid-transfer"
	}
	if len(r.FaultDrops) > 0 {
		fail += fmt.Sprintf(" silently (fault_injected drops %v)", r.FaultDrops)
	}
	if r.TimedOut {
		fail += ", NOT FINISHED by the timeout"
	}
	fmt.Fprintf(&b, "transfer of %d bytes, loss %.3f%s, session %d: delivered_ok %v, sender %.2f s, wall %.2f s\n",
		r.Size, r.Loss, fail, r.Session, r.DeliveredOK, r.SenderS, r.WallS)
	for _, rc := range r.Receivers {
		fmt.Fprintf(&b, "  %-4s id %-5d ok %-5v %d bytes %s\n", rc.Host, rc.ID, rc.OK, rc.Bytes, rc.Error)
	}
	if r.SpoofedSent > 0 {
		fmt.Fprintf(&b, "  forged ACKs sent %d, dropped by the switch as feedback_spoofed %d\n", r.SpoofedSent, r.SpoofedDropped)
	}
	return b.String()
}

// Transfer runs the scenario and tears the fabric down.
func Transfer(ctx context.Context, o TransferOptions) (res *TransferResult, err error) {
	start := time.Now()
	if o.Size == 0 {
		o.Size = 4 << 20
	}
	if o.Loss == 0 {
		o.Loss = 0.05
	}
	if o.Loss < 0 {
		o.Loss = 0
	}
	if o.FailAfter == 0 {
		o.FailAfter = 300 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Prefix == "" {
		o.Prefix = "sct-"
	}
	if o.Sender == "" {
		o.Sender = "tx"
	}
	if o.Size < 0 || o.Size > 1<<30 || o.Loss >= 1 {
		return nil, fmt.Errorf("transfer: size %d, loss %v: want 0-1 GiB and loss below 1", o.Size, o.Loss)
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var topo *control.Topology
	if o.Topology == "" {
		topo, err = control.ParseTopology([]byte(transferTopology))
	} else {
		topo, err = control.LoadTopology(o.Topology)
	}
	if err != nil {
		return nil, err
	}
	faults := map[string]dataplane.FaultConfig{}
	if o.Loss > 0 {
		_, rcv, err := transferHosts(topo, &o)
		if err != nil {
			return nil, err
		}
		for i, h := range rcv {
			sw := topo.Switches[h.Switch]
			faults[sw.Name+":"+sw.Ports[h.Port].Name] = dataplane.FaultConfig{Loss: o.Loss, Seed: uint64(i) + 11}
		}
	}
	fo := FabricOptions{Topology: topo, Binary: o.Binary, Prefix: o.Prefix, Dir: o.Dir, Probes: o.FailLink != "", Faults: faults, Log: logf}
	if o.Control {
		fo.Control, fo.TopologyPath = true, o.Topology
		if o.Topology == "" {
			// The control process reads the built-in fabric from a file.
			if o.Dir == "" {
				if o.Dir, err = os.MkdirTemp("", "sparsecast-transfer-"); err != nil {
					return nil, err
				}
				fo.Dir = o.Dir
			} else if err := os.MkdirAll(o.Dir, 0o755); err != nil {
				return nil, err
			}
			fo.TopologyPath = filepath.Join(o.Dir, "transfer.yaml")
			if err := os.WriteFile(fo.TopologyPath, []byte(transferTopology), 0o644); err != nil {
				return nil, err
			}
		}
	}
	f, err := StartFabric(ctx, fo)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("transfer: teardown: %w", cerr)
		}
	}()
	gen0 := map[string]uint64{}
	if o.Control {
		for _, sw := range topo.Switches {
			if gen0[sw.Name], err = f.AppliedGeneration(sw.Name); err != nil {
				return nil, err
			}
		}
	}
	res, err = TransferOn(ctx, f, o)
	if res != nil {
		for sw, g := range gen0 {
			if g1, err := f.AppliedGeneration(sw); err == nil && g1 > g {
				res.SwitchesUpdated++
			}
		}
		res.WallS = time.Since(start).Seconds()
	}
	return res, err
}

// transferHosts resolves the sender and the receiving hosts of a transfer
// (by default every other host with an ID).
func transferHosts(topo *control.Topology, o *TransferOptions) (*control.Host, []*control.Host, error) {
	var sender *control.Host
	byName := map[string]*control.Host{}
	for i := range topo.Hosts {
		h := &topo.Hosts[i]
		byName[h.Name] = h
		if h.Name == o.Sender {
			sender = h
		}
	}
	if sender == nil || !sender.Receiver {
		return nil, nil, fmt.Errorf("transfer: sender %q must be a host with an ID (feedback is routed to it)", o.Sender)
	}
	if len(o.Receivers) == 0 {
		for _, h := range topo.Hosts {
			if h.Receiver && h.Name != o.Sender {
				o.Receivers = append(o.Receivers, h.Name)
			}
		}
	}
	var rcv []*control.Host
	for _, name := range o.Receivers {
		h := byName[name]
		if h == nil || !h.Receiver || name == o.Sender {
			return nil, nil, fmt.Errorf("transfer: %q is not a receiving host", name)
		}
		rcv = append(rcv, h)
	}
	return sender, rcv, nil
}

// TransferOn copies a file over a running fabric (the injected loss, if
// any, is the fabric's) and checks every receiver's copy. It ends by
// o.Timeout: a transfer that cannot finish by then is stopped, its sender
// and receivers with it, and each receiver's outcome says how far it got
// (TimedOut is set and DeliveredOK false). Once the sender has exited, the
// receivers are stopped at once: a sender that completed holds every
// receiver's final ACK, which a receiver sends only after delivering the
// file's last byte, so none of them has anything left to answer.
func TransferOn(ctx context.Context, f *Fabric, o TransferOptions) (res *TransferResult, err error) {
	start := time.Now()
	if o.Size == 0 {
		o.Size = 4 << 20
	}
	if o.FailAfter == 0 {
		o.FailAfter = 300 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Binary == "" {
		o.Binary = f.bin
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	sender, rcv, err := transferHosts(f.Topo, &o)
	if err != nil {
		return nil, err
	}
	// Everything ends by the timeout; the sender is stopped stopMargin
	// before it, which leaves the time to stop the processes, read their
	// reports and check the copies.
	ctx, cancel := context.WithDeadline(ctx, start.Add(o.Timeout))
	defer cancel()
	stopMargin := min(max(o.Timeout/10, 200*time.Millisecond), 2*time.Second)
	sessions, err := reserveSessions(f.Dir, 1, o.Session)
	if err != nil {
		return nil, err
	}
	defer sessions.Release()
	session := sessions.IDs[0]
	byName := map[string]*control.Host{}
	var ids []string
	for _, h := range rcv {
		byName[h.Name] = h
		ids = append(ids, strconv.Itoa(int(h.ID)))
	}
	res = &TransferResult{Size: o.Size, Loss: o.Loss, FailedLink: o.FailLink, Session: session, Dir: f.Dir}
	defer func() {
		if res != nil {
			res.WallS = time.Since(start).Seconds()
		}
	}()

	type recvProc struct {
		host *control.Host
		dir  string
		out  *bytes.Buffer
		proc *Proc
	}
	var recvs []recvProc
	// Whatever happens, no process of this run outlives it.
	var sp *Proc
	defer func() {
		if sp != nil {
			sp.Stop(500 * time.Millisecond)
		}
		for _, rp := range recvs {
			rp.proc.Stop(500 * time.Millisecond)
		}
	}()
	// Receivers start together and are then waited for together.
	for _, name := range o.Receivers {
		h, fh := byName[name], f.Hosts[name]
		dir := o.OutDirs[name]
		if dir == "" {
			dir = filepath.Join(f.Dir, "out-"+name)
			// A copy left by an earlier run must not pass for this one's.
			if err := os.RemoveAll(dir); err != nil {
				return nil, err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
		}
		out := &bytes.Buffer{}
		p, err := launchFileReceiver(f, o.Binary, fh, dir, 1, o.Timeout, out, o.Window)
		if err != nil {
			return nil, fmt.Errorf("transfer: %w", err)
		}
		recvs = append(recvs, recvProc{host: h, dir: dir, out: out, proc: p})
	}
	// The file, while the receivers start.
	src := filepath.Join(f.Dir, "checkpoint.bin")
	if err := checkpointFile(src, o.Size, 42); err != nil {
		return nil, err
	}
	for _, rp := range recvs {
		if err := waitUDPBound(ctx, rp.proc, f.UDPPort, 10*time.Second); err != nil {
			return nil, fmt.Errorf("transfer: receiver %s: %w", rp.host.Name, err)
		}
	}
	logf("== receivers ready after %v", time.Since(start).Round(time.Millisecond))
	if o.FailLink != "" {
		// Let probes establish every link first.
		time.Sleep(300 * time.Millisecond)
	}

	logf("== copying %d bytes from %s to %s (loss %.3f, session %d)", o.Size, o.Sender, strings.Join(o.Receivers, ","), o.Loss, session)
	sendOut := &bytes.Buffer{}
	sendLog, err := os.Create(filepath.Join(f.Dir, "send.log"))
	if err != nil {
		return nil, err
	}
	defer sendLog.Close()
	to := []string{"--to", strings.Join(ids, ",")}
	if o.UseGroup {
		to = []string{"--group", strconv.FormatUint(uint64(o.Group), 10), "--members", strings.Join(ids, ",")}
	}
	args := []string{"send", "--via", f.GatewayAddr(o.Sender), "--listen", f.ListenAddr(o.Sender)}
	args = append(args, to...)
	args = append(args, "--source-id", strconv.Itoa(int(sender.ID)), "--session", strconv.Itoa(int(session)),
		"--give-up", transferGiveUp(o.Timeout).String(), "--json")
	if o.Window > 0 {
		args = append(args, "--window", strconv.Itoa(o.Window))
	}
	if o.MaxRate > 0 {
		args = append(args, "--max-rate", strconv.FormatFloat(o.MaxRate, 'f', -1, 64))
	}
	args = append(args, src)
	// Sample every receiver's interface from the sender's start on.
	targets := make([]progressTarget, len(recvs))
	for i, rp := range recvs {
		targets[i] = progressTarget{host: rp.host.Name, id: rp.host.ID, pid: rp.proc.PID(), dev: "eth0"}
	}
	rec := startProgress(targets, progressInterval)
	defer rec.Stop()
	sendStart := time.Now()
	sp, err = f.Lab.Start(f.Hosts[o.Sender].NS, "send", sendOut, sendLog, append([]string{o.Binary}, args...)...)
	if err != nil {
		return nil, err
	}
	if o.FailLink != "" {
		sw, port, ok := strings.Cut(o.FailLink, ":")
		if !ok || f.SwitchNS[sw] == "" {
			return nil, fmt.Errorf("transfer: fail link %q: want switch:port", o.FailLink)
		}
		select {
		case <-time.After(o.FailAfter):
		case <-sp.Done():
			return nil, fmt.Errorf("transfer: the sender finished before %v; the link failure would not be mid-transfer (lower --max-rate)", o.FailAfter)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		res.FailAt = rec.Elapsed()
		if o.Silent > 0 {
			logf("== silencing both ends of %s for %v", o.FailLink, o.Silent)
			if err := f.SilenceLink(ctx, o.FailLink, o.Silent); err != nil {
				return nil, err
			}
		} else {
			logf("== taking %s down", o.FailLink)
			if err := SetLinkDown(f.SwitchNS[sw], port, true, nil); err != nil {
				return nil, err
			}
		}
	}
	sendCtx, sendCancel := context.WithDeadline(ctx, start.Add(o.Timeout-stopMargin))
	defer sendCancel()
	var spoofDone chan error
	var spoof *spoofer
	if o.Spoofer != "" {
		if f.Hosts[o.Spoofer] == nil || slices.Contains(o.Receivers, o.Spoofer) || o.Spoofer == o.Sender {
			return nil, fmt.Errorf("transfer: spoofer %q: want a host that neither sends nor receives", o.Spoofer)
		}
		var rids []uint16
		for _, r := range o.Receivers {
			rids = append(rids, f.Hosts[r].ID)
		}
		var xs []uint32
		for x := uint32(32); x < uint32(o.Size/1000); x += 96 {
			xs = append(xs, x)
		}
		dgrams := forgedACKs(sender.ID, session, rids, xs)
		spoof = &spoofer{f: f, host: o.Spoofer, dir: filepath.Join(f.Dir, "spoof")}
		if err := spoof.writeFiles(dgrams); err != nil {
			return nil, err
		}
		logf("== %s forges %d ACKs per round", o.Spoofer, len(dgrams))
		spoofDone = make(chan error, 1)
		go func() {
			// Once the stream is under way: a switch forwards feedback for a
			// stream it has no state for unaggregated (a restarted switch
			// must not cut a stream's feedback), so it can tell spoofed
			// feedback only for streams it forwards.
			select {
			case <-time.After(200 * time.Millisecond):
			case <-sp.Done():
			}
			spoofDone <- spoof.run(sendCtx, len(dgrams), 100*time.Millisecond, sp.Done())
		}()
	}
	sendErr := sp.Wait(sendCtx)
	if !sp.Exited() {
		// Out of time (or interrupted): SIGTERM makes the sender print its
		// report of how far each receiver got.
		res.TimedOut = ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded)
		logf("== the transfer did not finish by the timeout (%v): stopping the sender and the receivers", o.Timeout)
		sp.Stop(500 * time.Millisecond)
		sendErr = fmt.Errorf("stopped at the timeout (%v)", o.Timeout)
	}
	sendEnd := time.Since(sendStart)
	if spoof != nil {
		if err := <-spoofDone; err != nil {
			return nil, err
		}
		res.SpoofedSent = spoof.sent
		n, err := f.SwitchDrops(ctx, f.hostSwitch(o.Spoofer), "feedback_spoofed")
		if err != nil {
			return nil, err
		}
		res.SpoofedDropped = n
	}
	if o.FailLink != "" && o.Silent > 0 {
		ends, err := f.LinkEnds(o.FailLink)
		if err != nil {
			return nil, err
		}
		res.FaultDrops = map[string]uint64{}
		for _, e := range ends {
			sw, _, _ := strings.Cut(e, ":")
			if res.FaultDrops[sw], err = f.SwitchDrops(ctx, sw, "fault_injected"); err != nil {
				return nil, err
			}
		}
	}
	res.Progress = rec.Stop()
	var wg sync.WaitGroup
	for _, rp := range recvs {
		wg.Add(1)
		go func() { defer wg.Done(); rp.proc.Stop(500 * time.Millisecond) }()
	}
	wg.Wait()
	res.Sender = json.RawMessage(bytes.TrimSpace(sendOut.Bytes()))
	var sum senderSummary
	if !json.Valid(res.Sender) || json.Unmarshal(res.Sender, &sum) != nil {
		res.Sender = nil
	}
	res.SenderS = time.Duration(sum.ElapsedNS).Seconds()
	logf("== sender ended after %v (%.2f s of transfer); receivers stopped after %v", sendEnd.Round(time.Millisecond), res.SenderS, time.Since(start).Round(time.Millisecond))
	res.DeliveredOK = sendErr == nil
	if sendErr != nil {
		res.SenderError = sendErr.Error()
	}
	// The copies are compared with the original concurrently.
	type copyCheck struct {
		n    int64
		same bool
		err  error
	}
	copies := make([]chan copyCheck, len(recvs))
	for i, rp := range recvs {
		copies[i] = make(chan copyCheck, 1)
		go func() {
			n, same, err := compareFile(filepath.Join(rp.dir, "checkpoint.bin"), src)
			copies[i] <- copyCheck{n, same, err}
		}()
	}
	for i, rp := range recvs {
		rr := TransferReceiver{Host: rp.host.Name, ID: rp.host.ID}
		// Keep the receiver's report next to its log.
		_ = os.WriteFile(filepath.Join(f.Dir, "recv-"+rp.host.Name+".json"), rp.out.Bytes(), 0o644)
		var rep struct {
			Files  []endpoint.FileResult   `json:"files"`
			Report *endpoint.SessionReport `json:"report"`
		}
		var problems []string
		if json.Unmarshal(rp.out.Bytes(), &rep) == nil && rep.Report != nil {
			rr.Stopped = rep.Report.StopReason
			for _, st := range rep.Report.Streams {
				if st.Source == sender.ID && st.Session == session {
					rr.ACKs, rr.NACKs, rr.BlockNACKs, rr.Received = st.ACKs, st.NACKs, st.BlockNACKs, st.Bytes
					rr.NamedLosses = st.NamedLosses
				}
			}
			for _, fr := range rep.Files {
				if fr.Session == session && !fr.OK {
					problems = append(problems, "it rejected the file: "+fr.Error)
				}
			}
		} else {
			problems = append(problems, "it printed no report (see recv-"+rp.host.Name+".log)")
		}
		if c := sum.receiver(rp.host.ID); c != nil {
			rr.SenderView, rr.Acked, rr.Packets = c.view(), c.ackedPackets(), c.Packets
			if !c.Complete {
				problems = append(problems, fmt.Sprintf("%s: it acknowledged %d of the %d packets sent to it", c.describe(), rr.Acked, c.Packets))
			}
		}
		c := <-copies[i]
		rr.Bytes = c.n
		switch {
		case errors.Is(c.err, os.ErrNotExist):
			problems = append(problems, fmt.Sprintf("no copy stored (%d of %d bytes delivered to it)", rr.Received, o.Size))
		case c.err != nil:
			problems = append(problems, fmt.Sprintf("its copy: %v", c.err))
		case !c.same:
			problems = append(problems, "its copy differs from the original")
		}
		rr.OK = len(problems) == 0
		rr.Error = strings.Join(problems, "; ")
		if !rr.OK {
			res.DeliveredOK = false
		}
		res.Receivers = append(res.Receivers, rr)
	}
	logf("== copies checked after %v", time.Since(start).Round(time.Millisecond))
	_ = os.WriteFile(filepath.Join(f.Dir, "send.json"), sendOut.Bytes(), 0o644)
	if sendErr != nil {
		logf("sender: %v (see %s)", sendErr, sendLog.Name())
	}
	if !res.DeliveredOK {
		// Evidence for the failure, also when ctx has ended.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		f.DumpMetrics(dctx)
		dcancel()
	}
	if err := context.Cause(ctx); err != nil && !res.TimedOut && !errors.Is(err, context.DeadlineExceeded) {
		return res, err
	}
	return res, nil
}

// transferGiveUp is the sender's --give-up for a run of timeout: 20 s,
// or a third of a longer timeout (a run given minutes is one whose
// receivers may wait that long for a core: 74 processes on two), never
// past the timeout.
func transferGiveUp(timeout time.Duration) time.Duration {
	return min(max(20*time.Second, timeout/3), timeout)
}

// compareFile reports the size of the file at path and whether it holds
// exactly what the file at orig holds. Files of the same size are mapped
// read-only and compared in place: reading three 64 MiB copies and the
// original three times through buffers took a loaded lab machine 0.1-0.5 s,
// all of it in `testbed run checkpoint`'s wall time after the transfer.
func compareFile(path, orig string) (int64, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	g, err := os.Open(orig)
	if err != nil {
		return 0, false, err
	}
	defer g.Close()
	fs, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	gs, err := g.Stat()
	if err != nil {
		return 0, false, err
	}
	n := fs.Size()
	switch {
	case n != gs.Size():
		return n, false, nil
	case n == 0:
		return 0, true, nil
	}
	if a, err := unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED); err == nil {
		defer unix.Munmap(a)
		if b, err := unix.Mmap(int(g.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED); err == nil {
			defer unix.Munmap(b)
			return n, bytes.Equal(a, b), nil
		}
	}
	// A file system that cannot map: read both.
	return compareRead(f, g)
}

// compareRead is compareFile through 1 MiB buffers.
func compareRead(f, g *os.File) (int64, bool, error) {
	a, b := make([]byte, 1<<20), make([]byte, 1<<20)
	var n int64
	same := true
	for {
		k, err := io.ReadFull(f, a)
		n += int64(k)
		if same {
			m, _ := io.ReadFull(g, b)
			same = m == k && bytes.Equal(a[:k], b[:m])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			if same {
				// Nothing may be left of the original either.
				m, _ := g.Read(b[:1])
				same = m == 0
			}
			return n, same, nil
		}
		if err != nil {
			return n, false, err
		}
	}
}

// checkpointFile makes path hold writeCheckpoint's size bytes from seed.
// An earlier run's file, stamped with the same size and seed, is kept as
// it is: writing 64 MiB again cost a second of a loaded machine per run.
func checkpointFile(path string, size int, seed uint64) error {
	stamp := path + ".stamp"
	want := fmt.Sprintf("%d %d\n", size, seed)
	if b, err := os.ReadFile(stamp); err == nil && string(b) == want {
		if st, err := os.Stat(path); err == nil && st.Size() == int64(size) {
			return nil
		}
	}
	if err := os.Remove(stamp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if _, err := writeCheckpoint(path, size, seed); err != nil {
		return err
	}
	return os.WriteFile(stamp, []byte(want), 0o644)
}

// senderSummary is the part of `send --json`'s summary a transfer reads.
type senderSummary struct {
	ElapsedNS int64                   `json:"elapsed_ns"`
	Complete  bool                    `json:"complete"`
	Receivers []senderReceiverSummary `json:"receivers"`
}

type senderReceiverSummary struct{ endpoint.ReceiverCompletion }

func (s *senderSummary) receiver(id uint16) *senderReceiverSummary {
	for i := range s.Receivers {
		if s.Receivers[i].ID == id {
			return &s.Receivers[i]
		}
	}
	return nil
}

// view is the sender's verdict on the receiver, one word.
func (c *senderReceiverSummary) view() string {
	switch {
	case c.Complete:
		return "complete"
	case c.Failed:
		return "failed"
	}
	return "incomplete"
}

func (c *senderReceiverSummary) describe() string {
	if c.Failed {
		return "the sender gave up on it (no progress for --give-up)"
	}
	return "not finished when the sender ended"
}

// ackedPackets is how many of the packets addressed to the receiver it
// acknowledged (its cumulative ACK: a fixed-set stream numbers them from 0).
func (c *senderReceiverSummary) ackedPackets() uint64 {
	if !c.HasAck {
		return 0
	}
	return min(uint64(c.Acked), c.Packets)
}

// writeCheckpoint writes size pseudo-random bytes drawn from seed to path
// and returns them.
func writeCheckpoint(path string, size int, seed uint64) ([]byte, error) {
	data := make([]byte, size+7)
	rng := rand.New(rand.NewPCG(uint64(size), seed))
	for i := 0; i < size; i += 8 {
		binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
	}
	data = data[:size:size]
	return data, os.WriteFile(path, data, 0o644)
}

// startFileReceiver starts `recv --out dir` on host h for files files,
// its report to out and its log to recv-NAME.log, and waits until it
// listens.
func startFileReceiver(ctx context.Context, f *Fabric, bin string, h *FabricHost, dir string, files int, wait time.Duration, out io.Writer) (*Proc, error) {
	p, err := launchFileReceiver(f, bin, h, dir, files, wait, out, 0)
	if err != nil {
		return nil, err
	}
	if err := waitUDPBound(ctx, p, f.UDPPort, 10*time.Second); err != nil {
		return nil, fmt.Errorf("receiver %s: %w", h.Name, err)
	}
	return p, nil
}

// recvLinger is how long a lab receiver goes on answering after its last
// file (launchFileReceiver).
const recvLinger = 20 * time.Second

// launchFileReceiver starts startFileReceiver's receiver without waiting
// for it to listen (a caller starting several waits for them together).
// A window above 0 is its --window.
func launchFileReceiver(f *Fabric, bin string, h *FabricHost, dir string, files int, wait time.Duration, out io.Writer, window int) (*Proc, error) {
	errLog, err := os.Create(filepath.Join(f.Dir, "recv-"+h.Name+".log"))
	if err != nil {
		return nil, err
	}
	defer errLog.Close() // the process has its own descriptor
	// The linger is long: a receiver that has stored its file keeps
	// answering the sender's retransmissions until the scenario stops it
	// (once the sender exits), for a lost final ACK is repaired only by
	// the next one, an RTO later. With 2 s, at the 64-receiver veth lab's
	// 2.4 s round trips, a receiver that had stored everything exited
	// before its final ACK got through, and the sender gave it up.
	args := []string{bin, "recv",
		"--id", strconv.Itoa(int(h.ID)), "--listen", f.ListenAddr(h.Name), "--via", f.GatewayAddr(h.Name),
		"--out", dir, "--files", strconv.Itoa(files), "--linger", recvLinger.String(), "--duration", wait.String(), "--json"}
	if window > 0 {
		args = append(args, "--window", strconv.Itoa(window))
	}
	return f.Lab.Start(h.NS, "recv "+h.Name, out, errLog, args...)
}

// StorageHosts picks a checkpoint's source and n storage hosts: the first
// host with an ID is the source, and the storage hosts are the first host
// of each other leaf, then any other host, in topology order.
func StorageHosts(f *Fabric, n int) (string, []string) {
	var src string
	var srcLeaf = -1
	leaves := map[int]bool{}
	var first, rest []string
	for _, h := range f.Topo.Hosts {
		if !h.Receiver {
			continue
		}
		switch {
		case src == "":
			src, srcLeaf = h.Name, h.Switch
		case h.Switch != srcLeaf && !leaves[h.Switch]:
			leaves[h.Switch] = true
			first = append(first, h.Name)
		default:
			rest = append(rest, h.Name)
		}
	}
	to := append(first, rest...)
	if len(to) > n {
		to = to[:n]
	}
	return src, to
}
