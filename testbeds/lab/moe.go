package lab

// The MoE dispatch scenario: on a running fabric, one host per leaf is a
// dispatcher and every other host an expert. Each dispatcher sends tokens,
// each to a fresh random top-k set of the experts (`sparsecast send --moe`:
// reliable, with the per-receiver chain so experts detect their losses),
// all dispatchers at once; each expert receives from all of them
// (`sparsecast recv --reliable`). The summary: tokens per second per
// dispatcher, and whether every token reached every expert it was sent to.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MoEOptions configure MoEOn.
type MoEOptions struct {
	Tokens    int // per dispatcher (default 2000)
	TopK      int // experts per token (default 2)
	TokenSize int // bytes (default 256)
	Timeout   time.Duration
	// Dispatchers and Experts name the hosts taking part (default: the
	// first host with an ID on each leaf dispatches, the others are
	// experts), e.g. to leave hosts free for other traffic.
	Dispatchers, Experts []string
	Log                  func(format string, args ...any)
}

// MoEResult is what `testbed run moe` prints.
type MoEResult struct {
	DeliveredOK bool            `json:"delivered_ok"`
	TopK        int             `json:"topk"`
	Experts     []uint16        `json:"experts"`
	Dispatchers []MoEDispatcher `json:"dispatchers"`
	ExpertsRx   []MoEExpert     `json:"experts_received"`
	ElapsedS    float64         `json:"elapsed_s"`
	// Progress is every expert's bytes over time, from the dispatchers'
	// start until the last of them is done (for PlotProgress).
	Progress []ReceiverProgress `json:"-"`
}

// MoEDispatcher is one dispatcher's line.
type MoEDispatcher struct {
	Host         string   `json:"host"`
	ID           uint16   `json:"id"`
	Tokens       int      `json:"tokens"`
	TokensPerSec float64  `json:"tokens_per_s"`
	Complete     bool     `json:"complete"`
	Failed       []uint16 `json:"failed_receivers"`
	Error        string   `json:"error,omitempty"`
}

// MoEExpert is one expert's line.
type MoEExpert struct {
	Host   string `json:"host"`
	ID     uint16 `json:"id"`
	Tokens uint64 `json:"tokens"`
}

// Table renders the result for people.
func (r *MoEResult) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "MoE dispatch, top-%d of %d experts: delivered_ok %v in %.1f s\n", r.TopK, len(r.Experts), r.DeliveredOK, r.ElapsedS)
	fmt.Fprintf(&b, "  %-10s %5s %8s %10s %9s\n", "DISPATCHER", "ID", "TOKENS", "TOKENS/S", "COMPLETE")
	for _, d := range r.Dispatchers {
		fmt.Fprintf(&b, "  %-10s %5d %8d %10.0f %9v %s\n", d.Host, d.ID, d.Tokens, d.TokensPerSec, d.Complete, d.Error)
	}
	fmt.Fprintf(&b, "  %-10s %5s %8s\n", "EXPERT", "ID", "TOKENS")
	for _, e := range r.ExpertsRx {
		fmt.Fprintf(&b, "  %-10s %5d %8d\n", e.Host, e.ID, e.Tokens)
	}
	return b.String()
}

// MoEOn runs the scenario on a running fabric.
func MoEOn(ctx context.Context, f *Fabric, o MoEOptions) (*MoEResult, error) {
	start := time.Now()
	if o.Tokens == 0 {
		o.Tokens = 2000
	}
	if o.TopK == 0 {
		o.TopK = 2
	}
	if o.TokenSize == 0 {
		o.TokenSize = 256
	}
	if o.Timeout == 0 {
		o.Timeout = time.Minute
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	// One dispatcher per leaf, the rest experts.
	var dispatchers, experts []*FabricHost
	leafSeen := map[int]bool{}
	for _, h := range f.Topo.Hosts {
		if !h.Receiver {
			continue
		}
		if !leafSeen[h.Switch] {
			leafSeen[h.Switch] = true
			dispatchers = append(dispatchers, f.Hosts[h.Name])
		} else {
			experts = append(experts, f.Hosts[h.Name])
		}
	}
	if len(o.Dispatchers)+len(o.Experts) > 0 {
		dispatchers, experts = nil, nil
		for _, names := range []struct {
			names []string
			to    *[]*FabricHost
		}{{o.Dispatchers, &dispatchers}, {o.Experts, &experts}} {
			for _, n := range names.names {
				h := f.Hosts[n]
				if h == nil || !h.Receiver || slices.Contains(dispatchers, h) || slices.Contains(experts, h) {
					return nil, fmt.Errorf("moe: %q is not a host with an ID, or named twice", n)
				}
				*names.to = append(*names.to, h)
			}
		}
	}
	if len(experts) < o.TopK || len(dispatchers) == 0 {
		return nil, fmt.Errorf("moe: %d experts and %d dispatchers for top-%d: the fabric needs more hosts per leaf", len(experts), len(dispatchers), o.TopK)
	}
	sort.Slice(experts, func(i, j int) bool { return experts[i].ID < experts[j].ID })
	res := &MoEResult{TopK: o.TopK}
	for _, e := range experts {
		res.Experts = append(res.Experts, e.ID)
	}
	wait := o.Timeout + 30*time.Second
	// One fresh session per dispatcher (see session.go).
	sessions, err := reserveSessions(f.Dir, len(dispatchers), 0)
	if err != nil {
		return nil, err
	}
	defer sessions.Release()
	type proc struct {
		h   *FabricHost
		out *bytes.Buffer
		p   *Proc
	}
	var rx, tx []proc
	for _, e := range experts {
		out := &bytes.Buffer{}
		errLog, err := os.Create(filepath.Join(f.Dir, fmt.Sprintf("moe-expert-%d.log", e.ID)))
		if err != nil {
			return nil, err
		}
		defer errLog.Close()
		p, err := f.Lab.Start(e.NS, fmt.Sprintf("expert %d", e.ID), out, errLog, f.bin, "recv",
			"--id", strconv.Itoa(int(e.ID)), "--listen", f.ListenAddr(e.Name), "--via", f.GatewayAddr(e.Name),
			"--reliable", "--idle-timeout", "3s", "--duration", wait.String(), "--json")
		if err != nil {
			return nil, err
		}
		if err := waitUDPBound(ctx, p, f.UDPPort, 10*time.Second); err != nil {
			return nil, fmt.Errorf("moe: expert %d: %w", e.ID, err)
		}
		rx = append(rx, proc{e, out, p})
	}
	logf("== %d dispatchers send %d tokens each to top-%d of experts %s", len(dispatchers), o.Tokens, o.TopK, ReceiverIDs(experts))
	// Sample every expert's interface from the dispatchers' start on.
	targets := make([]progressTarget, len(rx))
	for i, r := range rx {
		targets[i] = progressTarget{host: r.h.Name, id: r.h.ID, pid: r.p.PID(), dev: "eth0"}
	}
	rec := startProgress(targets, progressInterval)
	defer rec.Stop()
	for i, d := range dispatchers {
		out := &bytes.Buffer{}
		errLog, err := os.Create(filepath.Join(f.Dir, fmt.Sprintf("moe-dispatcher-%d.log", d.ID)))
		if err != nil {
			return nil, err
		}
		defer errLog.Close()
		p, err := f.Lab.Start(d.NS, fmt.Sprintf("dispatcher %d", d.ID), out, errLog, f.bin, "send",
			"--via", f.GatewayAddr(d.Name), "--listen", f.ListenAddr(d.Name), "--moe",
			"--to", ReceiverIDs(experts), "--experts", strconv.Itoa(len(experts)), "--topk", strconv.Itoa(o.TopK),
			"--tokens", strconv.Itoa(o.Tokens), "--token-size", strconv.Itoa(o.TokenSize),
			"--source-id", strconv.Itoa(int(d.ID)), "--session", strconv.Itoa(int(sessions.IDs[i])), "--json")
		if err != nil {
			return nil, err
		}
		tx = append(tx, proc{d, out, p})
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res.DeliveredOK = true
	for _, t := range tx {
		d := MoEDispatcher{Host: t.h.Name, ID: t.h.ID}
		if err := t.p.Wait(wctx); err != nil {
			d.Error = err.Error()
			res.DeliveredOK = false
		}
		if err := json.Unmarshal(bytes.TrimSpace(t.out.Bytes()), &d); err != nil && d.Error == "" {
			d.Error = "no summary: " + err.Error()
		}
		d.Host, d.ID = t.h.Name, t.h.ID
		if !d.Complete || d.Tokens != o.Tokens {
			res.DeliveredOK = false
		}
		res.Dispatchers = append(res.Dispatchers, d)
	}
	res.Progress = rec.Stop()
	for _, r := range rx {
		e := MoEExpert{Host: r.h.Name, ID: r.h.ID}
		_ = r.p.Wait(wctx)
		var rep struct {
			Tokens map[uint16]uint64 `json:"tokens_by_source"`
		}
		if json.Unmarshal(bytes.TrimSpace(r.out.Bytes()), &rep) == nil {
			for _, n := range rep.Tokens {
				e.Tokens += n
			}
		}
		res.ExpertsRx = append(res.ExpertsRx, e)
	}
	// Every token went to TopK experts: what they got must add up.
	var got uint64
	for _, e := range res.ExpertsRx {
		got += e.Tokens
	}
	if want := uint64(len(dispatchers) * o.Tokens * o.TopK); got != want {
		res.DeliveredOK = false
		logf("moe: experts received %d token copies, dispatchers sent %d", got, want)
	}
	res.ElapsedS = time.Since(start).Seconds()
	return res, nil
}
