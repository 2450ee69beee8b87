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
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sparsecast/sparsecast/control"
	"github.com/sparsecast/sparsecast/dataplane"
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
	// Spoofer names a host outside the receiver set that forges ACKs for
	// the receivers throughout the transfer (their own ACKs and aggregates
	// naming all of them, at sequence numbers across the file), sent to its
	// switch from a port the stream never went out of: they must be
	// dropped as feedback_spoofed and change nothing.
	Spoofer string
	// Timeout bounds the transfer (default 2 minutes).
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
	// ACKs and NACKs it sent, from its report.
	ACKs  uint64 `json:"acks_sent"`
	NACKs uint64 `json:"nacks_sent"`
}

// TransferResult is the scenario's outcome.
type TransferResult struct {
	Size        int                `json:"size"`
	Loss        float64            `json:"loss"`
	FailedLink  string             `json:"failed_link,omitempty"`
	DeliveredOK bool               `json:"delivered_ok"`
	Receivers   []TransferReceiver `json:"receivers"`
	// Sender is `sparsecast send --json`'s summary.
	Sender   json.RawMessage `json:"sender"`
	ElapsedS float64         `json:"elapsed_s"`
	Dir      string          `json:"dir"`
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
	fmt.Fprintf(&b, "transfer of %d bytes, loss %.3f%s: delivered_ok %v in %.1f s\n", r.Size, r.Loss, fail, r.DeliveredOK, r.ElapsedS)
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
		res.ElapsedS = time.Since(start).Seconds()
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
// any, is the fabric's) and checks every receiver's copy.
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
	byName := map[string]*control.Host{}
	var ids []string
	for _, h := range rcv {
		byName[h.Name] = h
		ids = append(ids, strconv.Itoa(int(h.ID)))
	}
	res = &TransferResult{Size: o.Size, Loss: o.Loss, FailedLink: o.FailLink, Dir: f.Dir}

	// The file.
	src := filepath.Join(f.Dir, "checkpoint.bin")
	data, err := writeCheckpoint(src, o.Size, 42)
	if err != nil {
		return nil, err
	}

	type recvProc struct {
		host *control.Host
		dir  string
		out  *bytes.Buffer
		proc *Proc
	}
	var recvs []recvProc
	for _, name := range o.Receivers {
		h, fh := byName[name], f.Hosts[name]
		dir := filepath.Join(f.Dir, "out-"+name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		out := &bytes.Buffer{}
		p, err := startFileReceiver(ctx, f, o.Binary, fh, dir, 1, o.Timeout+30*time.Second, out)
		if err != nil {
			return nil, fmt.Errorf("transfer: %w", err)
		}
		recvs = append(recvs, recvProc{host: h, dir: dir, out: out, proc: p})
	}
	if o.FailLink != "" {
		// Let probes establish every link first.
		time.Sleep(300 * time.Millisecond)
	}

	logf("== copying %d bytes from %s to %s (loss %.3f)", o.Size, o.Sender, strings.Join(o.Receivers, ","), o.Loss)
	sendOut := &bytes.Buffer{}
	sendLog, err := os.Create(filepath.Join(f.Dir, "send.log"))
	if err != nil {
		return nil, err
	}
	defer sendLog.Close()
	args := []string{"send", "--via", f.GatewayAddr(o.Sender), "--listen", f.ListenAddr(o.Sender),
		"--to", strings.Join(ids, ","), "--source-id", strconv.Itoa(int(sender.ID)), "--session", "9",
		"--give-up", "20s", "--json"}
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
	sp, err := f.Lab.Start(f.Hosts[o.Sender].NS, "send", sendOut, sendLog, append([]string{o.Binary}, args...)...)
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
	tctx, cancel := context.WithTimeout(ctx, o.Timeout+40*time.Second)
	defer cancel()
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
		dgrams := forgedACKs(sender.ID, 9, rids, xs)
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
			spoofDone <- spoof.run(tctx, len(dgrams), 100*time.Millisecond, sp.Done())
		}()
	}
	sendErr := sp.Wait(tctx)
	if spoof != nil {
		if err := <-spoofDone; err != nil {
			return nil, err
		}
		res.SpoofedSent = spoof.sent
		n, err := f.SwitchDrops(tctx, f.hostSwitch(o.Spoofer), "feedback_spoofed")
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
			if res.FaultDrops[sw], err = f.SwitchDrops(tctx, sw, "fault_injected"); err != nil {
				return nil, err
			}
		}
	}
	res.Progress = rec.Stop()
	res.Sender = json.RawMessage(bytes.TrimSpace(sendOut.Bytes()))
	if !json.Valid(res.Sender) {
		res.Sender = nil
	}
	res.DeliveredOK = sendErr == nil
	for _, rp := range recvs {
		rr := TransferReceiver{Host: rp.host.Name, ID: rp.host.ID}
		if err := rp.proc.Wait(tctx); err != nil {
			rr.Error = fmt.Sprintf("recv: %v", err)
		}
		// Keep the receiver's report next to its log.
		_ = os.WriteFile(filepath.Join(f.Dir, "recv-"+rp.host.Name+".json"), rp.out.Bytes(), 0o644)
		var rep struct {
			Report struct {
				Streams []struct {
					ACKs  uint64 `json:"acks_sent"`
					NACKs uint64 `json:"nacks_sent"`
				} `json:"streams"`
			} `json:"report"`
		}
		if json.Unmarshal(rp.out.Bytes(), &rep) == nil {
			for _, st := range rep.Report.Streams {
				rr.ACKs += st.ACKs
				rr.NACKs += st.NACKs
			}
		}
		got, rerr := os.ReadFile(filepath.Join(rp.dir, "checkpoint.bin"))
		rr.Bytes = int64(len(got))
		switch {
		case rerr != nil:
			rr.Error = strings.TrimSpace(rr.Error + " " + rerr.Error())
		case !bytes.Equal(got, data):
			rr.Error = strings.TrimSpace(rr.Error + " contents differ from the original")
		default:
			rr.OK = rr.Error == ""
		}
		if !rr.OK {
			res.DeliveredOK = false
		}
		res.Receivers = append(res.Receivers, rr)
	}
	_ = os.WriteFile(filepath.Join(f.Dir, "send.json"), sendOut.Bytes(), 0o644)
	if sendErr != nil {
		logf("sender: %v (see %s)", sendErr, sendLog.Name())
	}
	if !res.DeliveredOK {
		f.DumpMetrics(tctx)
	}
	res.ElapsedS = time.Since(start).Seconds()
	return res, nil
}

// writeCheckpoint writes size pseudo-random bytes drawn from seed to path
// and returns them.
func writeCheckpoint(path string, size int, seed uint64) ([]byte, error) {
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(uint64(size), seed))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	return data, os.WriteFile(path, data, 0o644)
}

// startFileReceiver starts `recv --out dir` on host h for files files,
// its report to out and its log to recv-NAME.log, and waits until it
// listens.
func startFileReceiver(ctx context.Context, f *Fabric, bin string, h *FabricHost, dir string, files int, wait time.Duration, out io.Writer) (*Proc, error) {
	errLog, err := os.Create(filepath.Join(f.Dir, "recv-"+h.Name+".log"))
	if err != nil {
		return nil, err
	}
	defer errLog.Close() // the process has its own descriptor
	p, err := f.Lab.Start(h.NS, "recv "+h.Name, out, errLog, bin, "recv",
		"--id", strconv.Itoa(int(h.ID)), "--listen", f.ListenAddr(h.Name), "--via", f.GatewayAddr(h.Name),
		"--out", dir, "--files", strconv.Itoa(files), "--linger", "2s", "--duration", wait.String(), "--json")
	if err != nil {
		return nil, err
	}
	if err := waitUDPBound(ctx, f.Lab, h.NS, f.UDPPort, p, 10*time.Second); err != nil {
		return nil, fmt.Errorf("receiver %s: %w", h.Name, err)
	}
	return p, nil
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
