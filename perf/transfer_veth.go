// The transfer benchmark (`bench transfer`, as root): how much of what the
// leaf-spine lab can carry a reliable transfer gets, both measured in the
// same run on the same fabric, sender and receivers.
//
//  1. The fabric is a testbed of its own (lab.Up of testbeds/leafspine.yaml
//     under its own prefix, "scbt-", taken down afterwards), or, with
//     Testbed, the running testbed of that prefix (left up).
//  2. Capacity: the sender and receivers are those of `testbed run
//     checkpoint` (lab.StorageHosts: h11 to h21, h31 and h41). Unreliable
//     `sparsecast send` streams of 1400-byte payloads go to them for a
//     step each, at rising rates: doubled from StartRate while every
//     receiver loses at most MaxLoss, then bisected between the last good and the first bad rate. What a
//     step carried is the rate its slowest receiver got the packets at:
//     received over the arrival span, bounded by the sending time plus
//     the growth of the one-way delay (latest minus earliest). A switch's
//     receive ring holds 8,192 frames, so a one-second step at a rate the
//     fabric cannot carry used to come through without loss, queued
//     (at 10,000 packets/s the receivers saw 0.8 s of delay on average):
//     counting the sent rate measured the rings, not the fabric. The
//     capacity is the highest carried rate of a good step, times 1400
//     bytes.
//  3. Goodput: lab.TransferOn copies a Size file reliably (congestion
//     control on) to the same receivers and checks every copy; goodput is
//     the file's bytes over the sender's transfer time.
//  4. Ratio is goodput over capacity.
package perf

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sparsecast/sparsecast/dataplane/endpoint"
	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// TransferBenchPrefix names the namespaces of the benchmark's own fabric.
const TransferBenchPrefix = "scbt-"

// CapacityPayload is the payload of the capacity streams, in bytes.
const CapacityPayload = 1400

// TransferBenchOptions configure BenchTransfer.
type TransferBenchOptions struct {
	// Binary is the sparsecast binary the lab runs; Topology the fabric
	// (default testbeds/leafspine.yaml under the module root).
	Binary   string
	Topology string
	// Testbed, if set, is the prefix of a running testbed to measure on
	// instead of a fabric of the benchmark's own.
	Testbed string
	// Size is the reliable transfer's file (default 64 MiB).
	Size int
	// StepDuration is each capacity step's stream (default 1 s), StartRate
	// its first rate (default 10,000 packets per second), MaxLoss the
	// worst receiver's loss a step may have and count as good (default
	// 0.001), Bisections the steps between good and bad (default 3).
	StepDuration time.Duration
	StartRate    float64
	MaxLoss      float64
	Bisections   int
	// Timeout bounds the reliable transfer (default 2 minutes).
	Timeout time.Duration
	// Window, if above 0, is the reliable transfer's sender and receiver
	// --window (0: send's and recv's default).
	Window int
	Log    func(format string, args ...any)
}

// CapacityStep is one unreliable stream of the capacity search.
type CapacityStep struct {
	RatePPS float64 `json:"rate_pps"`
	// SentPPS is the rate the sender achieved, Sent its packets.
	SentPPS float64 `json:"sent_pps"`
	Sent    uint64  `json:"sent"`
	// CarriedPPS is the rate the slowest receiver got its packets at
	// (received over the sending time plus its delay's growth), and
	// DelayGrowthMs the largest such growth: a fabric that queues what it
	// cannot carry shows it here, not as loss.
	CarriedPPS    float64 `json:"carried_pps"`
	DelayGrowthMs float64 `json:"delay_growth_ms"`
	// Loss is each receiver's lost fraction, WorstLoss the largest.
	Loss      map[string]float64 `json:"loss"`
	WorstLoss float64            `json:"worst_loss"`
	MBps      float64            `json:"MBps"`
	OK        bool               `json:"ok"`
}

// TransferBenchResult is the benchmark's outcome.
type TransferBenchResult struct {
	Fabric    string   `json:"fabric"`
	Sender    string   `json:"sender"`
	Receivers []string `json:"receivers"`
	// Capacity: the highest good step's achieved rate, in packets and in
	// MB/s (1e6 bytes) of 1400-byte payloads.
	PayloadBytes int            `json:"payload_bytes"`
	MaxLoss      float64        `json:"max_loss"`
	CapacityPPS  float64        `json:"capacity_pps"`
	CapacityMBps float64        `json:"capacity_MBps"`
	Steps        []CapacityStep `json:"steps"`
	// The reliable transfer.
	Size                       int     `json:"size"`
	DeliveredOK                bool    `json:"delivered_ok"`
	Session                    uint16  `json:"session"`
	SenderS                    float64 `json:"sender_s"`
	TransferWallS              float64 `json:"transfer_wall_s"`
	GoodputMBps                float64 `json:"goodput_MBps"`
	Ratio                      float64 `json:"ratio"`
	Packets                    uint64  `json:"packets"`
	Retransmissions            uint64  `json:"retransmissions"`
	RetransmissionsPerOriginal float64 `json:"retransmissions_per_original"`
	NACKs                      uint64  `json:"nacks"`
	CNPs                       uint64  `json:"cnps"`
	RateDecreases              uint64  `json:"rate_decreases"`
	FinalRatePPS               float64 `json:"final_rate_pps"`
	// Errors says what went wrong with the transfer, per receiver.
	Errors []string `json:"errors,omitempty"`
	WallS  float64  `json:"wall_s"`
}

// Check fills in the defaults and checks the options.
func (o *TransferBenchOptions) Check() error {
	if o.Topology == "" && o.Testbed == "" {
		root, err := lab.ModuleRoot()
		if err != nil {
			return fmt.Errorf("bench transfer: no topology given and %w", err)
		}
		o.Topology = filepath.Join(root, "testbeds", "leafspine.yaml")
	}
	if o.Size == 0 {
		o.Size = 64 << 20
	}
	if o.StepDuration == 0 {
		o.StepDuration = time.Second
	}
	if o.StartRate == 0 {
		o.StartRate = 10000
	}
	if o.MaxLoss == 0 {
		o.MaxLoss = 0.001
	}
	if o.Bisections == 0 {
		o.Bisections = 3
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	switch {
	case o.Size < 1 || o.Size > 1<<30:
		return fmt.Errorf("bench transfer: size %d: want 1 byte to 1 GiB", o.Size)
	case o.StepDuration < 100*time.Millisecond || o.StepDuration > time.Minute:
		return fmt.Errorf("bench transfer: step %v: want 100 ms to 1 minute", o.StepDuration)
	case o.StartRate < 100 || o.StartRate > 1e7:
		return fmt.Errorf("bench transfer: start rate %v: want 100 to 10,000,000 packets per second", o.StartRate)
	case o.MaxLoss <= 0 || o.MaxLoss >= 1:
		return fmt.Errorf("bench transfer: max loss %v: want 0-1", o.MaxLoss)
	case o.Bisections < 0 || o.Bisections > 10:
		return fmt.Errorf("bench transfer: bisections %d: want 0-10", o.Bisections)
	case o.Window != 0 && (o.Window < 2 || o.Window > 1<<16 || o.Window&(o.Window-1) != 0):
		return fmt.Errorf("bench transfer: window %d: want a power of two, 2-65536", o.Window)
	}
	return nil
}

// BenchTransfer runs the benchmark described at the top of the file.
func BenchTransfer(ctx context.Context, o TransferBenchOptions) (res *TransferBenchResult, err error) {
	start := time.Now()
	if err := o.Check(); err != nil {
		return nil, err
	}
	prefix := o.Testbed
	if prefix == "" {
		prefix = TransferBenchPrefix
		o.Log("== building the fabric of %s (prefix %s)", o.Topology, prefix)
		if _, err := lab.Up(ctx, lab.UpOptions{Topology: o.Topology, Binary: o.Binary, Prefix: prefix, Log: o.Log}); err != nil {
			return nil, err
		}
		defer func() {
			if derr := lab.Down(context.Background(), prefix, nil); derr != nil && err == nil {
				err = fmt.Errorf("bench transfer: teardown: %w", derr)
			}
		}()
	}
	st, err := lab.LoadState(prefix)
	if err != nil {
		return nil, err
	}
	f, err := st.Attach()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sender, to := lab.StorageHosts(f, 3)
	if sender == "" || len(to) == 0 {
		return nil, fmt.Errorf("bench transfer: the fabric has no sender and storage hosts")
	}
	res = &TransferBenchResult{Fabric: "testbed " + prefix, Sender: sender, Receivers: to, PayloadBytes: CapacityPayload, MaxLoss: o.MaxLoss, Size: o.Size}
	if o.Testbed == "" {
		res.Fabric = "own testbed " + prefix + " of " + o.Topology
	}
	if err := benchCapacity(ctx, f, &o, res); err != nil {
		return nil, err
	}
	o.Log("== capacity %.0f packets/s, %.1f MB/s; now %d bytes reliably", res.CapacityPPS, res.CapacityMBps, o.Size)
	tr, err := lab.TransferOn(ctx, f, lab.TransferOptions{Binary: o.Binary, Sender: sender, Receivers: to, Size: o.Size, Timeout: o.Timeout, Window: o.Window, Log: o.Log})
	if err != nil {
		return nil, err
	}
	res.DeliveredOK, res.Session, res.SenderS, res.TransferWallS = tr.DeliveredOK, tr.Session, tr.SenderS, tr.WallS
	for _, r := range tr.Receivers {
		if !r.OK {
			res.Errors = append(res.Errors, r.Host+": "+r.Error)
		}
	}
	var s struct {
		endpoint.SenderReport
		Complete bool `json:"complete"`
	}
	if len(tr.Sender) == 0 || json.Unmarshal(tr.Sender, &s) != nil {
		res.DeliveredOK = false
		res.Errors = append(res.Errors, "sender: no summary")
	}
	res.Packets, res.Retransmissions, res.NACKs, res.CNPs = s.Packets, s.Retransmissions, s.NACKs, s.CNPs
	res.RateDecreases, res.FinalRatePPS = s.RateDecreases, s.FinalRatePPS
	if s.Packets > 0 {
		res.RetransmissionsPerOriginal = float64(s.Retransmissions) / float64(s.Packets)
	}
	if res.DeliveredOK && res.SenderS > 0 {
		res.GoodputMBps = float64(o.Size) / res.SenderS / 1e6
		if res.CapacityMBps > 0 {
			res.Ratio = res.GoodputMBps / res.CapacityMBps
		}
	}
	res.WallS = time.Since(start).Seconds()
	return res, nil
}

// benchCapacity runs the capacity search: rates doubled from StartRate
// until a step is bad (or the sender cannot go faster), then bisected.
func benchCapacity(ctx context.Context, f *lab.Fabric, o *TransferBenchOptions, res *TransferBenchResult) error {
	var rcv []*lab.FabricHost
	for _, name := range res.Receivers {
		rcv = append(rcv, f.Hosts[name])
	}
	// step streams at rate, or (rate 0) count packets as fast as the
	// sender can.
	step := func(rate float64, count int) (CapacityStep, error) {
		st, err := f.Stream(ctx, lab.StreamOptions{
			Sender: res.Sender, SourceID: f.Hosts[res.Sender].ID, Receivers: rcv, Rate: rate, Count: count,
			Duration: o.StepDuration, Size: CapacityPayload, Settle: 300 * time.Millisecond,
		})
		if err != nil {
			return CapacityStep{}, fmt.Errorf("bench transfer: capacity step at %.0f packets/s: %w", rate, err)
		}
		cs := CapacityStep{RatePPS: rate, SentPPS: st.PPS, Sent: st.Sent, Loss: map[string]float64{}}
		counts := make([]lab.ReceiverCount, 0, len(rcv))
		for _, h := range rcv {
			c := st.Receivers[h.ID]
			counts = append(counts, c)
			loss := 1.0
			if st.Sent > 0 {
				loss = float64(c.Lost) / float64(st.Sent)
			}
			cs.Loss[h.Name] = loss
			cs.WorstLoss = max(cs.WorstLoss, loss)
		}
		cs.CarriedPPS, cs.DelayGrowthMs = carried(st.Sent, st.PPS, counts)
		cs.OK = st.Sent > 0 && cs.WorstLoss <= o.MaxLoss
		cs.MBps = cs.CarriedPPS * CapacityPayload / 1e6
		o.Log("   %8.0f packets/s asked (0: unpaced), %8.0f sent, %8.0f carried (delay grew %.0f ms): worst loss %.4f%% (%s)",
			rate, st.PPS, cs.CarriedPPS, cs.DelayGrowthMs, cs.WorstLoss*100, map[bool]string{true: "good", false: "bad"}[cs.OK])
		res.Steps = append(res.Steps, cs)
		if cs.OK && cs.CarriedPPS > res.CapacityPPS {
			res.CapacityPPS, res.CapacityMBps = cs.CarriedPPS, cs.MBps
		}
		return cs, nil
	}

	good, bad := 0.0, 0.0
	for rate := o.StartRate; rate <= 1e7; rate *= 2 {
		cs, err := step(rate, 0)
		if err != nil {
			return err
		}
		if !cs.OK {
			bad = rate
			break
		}
		good = rate
		if cs.SentPPS < 0.9*rate {
			// The sender cannot pace this fast (on a busy machine every
			// paced packet is a wakeup that may come late): one step
			// unpaced, a step's worth at twice what it achieved.
			cs, err := step(0, int(2*cs.SentPPS*o.StepDuration.Seconds())+1)
			if err != nil {
				return err
			}
			if cs.OK {
				return nil
			}
			bad = max(cs.SentPPS, good)
			break
		}
	}
	if bad == 0 || bad <= good {
		return nil
	}
	if good == 0 {
		// Even the first rate lost too much: look below it.
		good = o.StartRate / 16
	}
	for range o.Bisections {
		mid := math.Sqrt(good * bad)
		cs, err := step(mid, 0)
		if err != nil {
			return err
		}
		if cs.OK {
			good = mid
		} else {
			bad = mid
		}
	}
	return nil
}

// carried is the rate the slowest of the receivers got a stream's packets
// at, and the largest growth of their one-way delay in milliseconds: sent
// packets at pps took sent/pps seconds to send, and a receiver's arrivals
// spanned at most that plus its delay's growth (latest minus earliest), so
// received over that span is the least rate it got them at. Never more than
// pps; 0 when nothing was sent.
func carried(sent uint64, pps float64, counts []lab.ReceiverCount) (carriedPPS, growthMs float64) {
	if sent == 0 || pps <= 0 {
		return 0, 0
	}
	sending := float64(sent) / pps
	carriedPPS = pps
	for _, c := range counts {
		growth := max(c.LatencyMax-c.LatencyMin, 0).Seconds()
		growthMs = max(growthMs, growth*1e3)
		carriedPPS = min(carriedPPS, float64(c.Received)/(sending+growth))
	}
	return carriedPPS, growthMs
}

// Table renders a result for people.
func (r *TransferBenchResult) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s to %s\n", r.Fabric, r.Sender, strings.Join(r.Receivers, ","))
	fmt.Fprintf(&b, "capacity (unreliable %d-byte payloads, every receiver losing at most %.2f%%):\n", r.PayloadBytes, r.MaxLoss*100)
	fmt.Fprintf(&b, "  %10s  %10s  %11s  %8s  %12s  %10s  %s\n", "ASKED PPS", "SENT PPS", "CARRIED PPS", "MB/s", "DELAY GREW", "WORST LOSS", "")
	steps := slices.Clone(r.Steps)
	slices.SortStableFunc(steps, func(a, b CapacityStep) int { return cmp.Compare(a.RatePPS, b.RatePPS) })
	for _, s := range steps {
		verdict := "good"
		if !s.OK {
			verdict = "bad"
		}
		fmt.Fprintf(&b, "  %10.0f  %10.0f  %11.0f  %8.1f  %9.0f ms  %9.3f%%  %s\n", s.RatePPS, s.SentPPS, s.CarriedPPS, s.MBps, s.DelayGrowthMs, s.WorstLoss*100, verdict)
	}
	fmt.Fprintf(&b, "  capacity %.0f packets/s = %.1f MB/s\n", r.CapacityPPS, r.CapacityMBps)
	fmt.Fprintf(&b, "reliable transfer of %d bytes (session %d): delivered_ok %v, sender %.2f s (wall %.2f s)\n", r.Size, r.Session, r.DeliveredOK, r.SenderS, r.TransferWallS)
	fmt.Fprintf(&b, "  goodput %.1f MB/s, ratio %.2f of capacity; %d packets, %.4f retransmissions per original, %d NACKs, %d CNPs, %d rate decreases, final rate %.0f packets/s\n",
		r.GoodputMBps, r.Ratio, r.Packets, r.RetransmissionsPerOriginal, r.NACKs, r.CNPs, r.RateDecreases, r.FinalRatePPS)
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}
