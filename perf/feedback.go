package perf

// The feedback benchmark: a leaf-spine fabric of real switches
// (dataplane.NewSwitch, Run) joined by in-memory ports, in one process. One
// host sends a file reliably (dataplane/endpoint) to every other host; the
// fault injector drops a fraction of the frames on every host-facing egress
// port. It reports whether every receiver got the file byte-exact (SHA-256),
// how many feedback packets reached the sender per DATA packet it sent
// (aggregation on or off), the NACKs the switches suppressed, and goodput.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/endpoint"
	"github.com/sparsecast/sparsecast/headers"
)

// FeedbackOptions configure BenchFeedback.
type FeedbackOptions struct {
	// Receivers is the number of receiving hosts (default 64).
	Receivers int
	// Loss is the fault injector's loss on host-facing egress ports.
	Loss float64
	// Aggregate sets feedback.aggregate on every switch.
	Aggregate bool
	// Size is the file size in bytes (default 4 MiB).
	Size int
	// Spines and HostsPerLeaf shape the fabric (defaults 2 and 8).
	Spines, HostsPerLeaf int
	// Seed seeds the file contents and the loss patterns (default 1).
	Seed uint64
	// Timeout bounds the transfer (default 45 s per 256 receivers, at
	// least 45 s: the in-memory fabric runs every endpoint and switch in
	// one process, so its work grows with the receivers; 1,024 on two
	// cores take 80-150 s).
	Timeout time.Duration
	// FECBlock and RepairWindow set the sender's SessionConfig fields of
	// those names (0: their defaults; -1: no parity, no repair merging:
	// the sender as it was before either).
	FECBlock     int
	RepairWindow time.Duration
	// Prefix names the veth lab's namespaces (BenchFeedbackVeth only;
	// default FeedbackVethPrefix), so that runs do not collide. Window is
	// the sender's and receivers' window in packets (0: the in-memory
	// endpoints' default, 1024; the veth lab's FeedbackVethWindow).
	Prefix string
	Window int
}

// DefaultFeedbackTimeout is the default bound of a feedback benchmark's
// transfer to n receivers: 45 s per 256 receivers, at least 45 s.
func DefaultFeedbackTimeout(n int) time.Duration {
	return 45 * time.Second * time.Duration(max(1, (n+255)/256))
}

// defaults fills the zero fields and checks the rest.
func (o *FeedbackOptions) defaults() error {
	if o.Receivers == 0 {
		o.Receivers = 64
	}
	if o.Size == 0 {
		o.Size = 4 << 20
	}
	if o.Spines == 0 {
		o.Spines = 2
	}
	if o.HostsPerLeaf == 0 {
		o.HostsPerLeaf = 8
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultFeedbackTimeout(o.Receivers)
	}
	switch {
	case o.Receivers < 1 || o.Receivers > 4096:
		return fmt.Errorf("bench feedback: receivers %d: want 1-4096", o.Receivers)
	case o.Loss < 0 || o.Loss >= 1:
		return fmt.Errorf("bench feedback: loss %v: want 0 <= loss < 1", o.Loss)
	case o.Size < 0 || o.Size > 1<<30:
		return fmt.Errorf("bench feedback: size %d: want 0-1 GiB", o.Size)
	case o.Spines < 1 || o.Spines > 16 || o.HostsPerLeaf < 1 || o.HostsPerLeaf > 64:
		return fmt.Errorf("bench feedback: %d spines, %d hosts per leaf: want 1-16 and 1-64", o.Spines, o.HostsPerLeaf)
	}
	return nil
}

// FeedbackResult is what `bench feedback --json` prints.
type FeedbackResult struct {
	// Ports is "mem" (in-process, in-memory ports) or "veth" (the lab).
	Ports        string  `json:"ports"`
	Receivers    int     `json:"receivers"`
	Leaves       int     `json:"leaves"`
	Spines       int     `json:"spines"`
	Loss         float64 `json:"loss"`
	Aggregate    bool    `json:"aggregate"`
	Size         int     `json:"size"`
	DeliveredOK  bool    `json:"delivered_ok"`
	FeedbackPerD float64 `json:"feedback_pkts_at_sender_per_data_pkt"`
	// FeedbackPerOriginal divides by the file's packets alone, without the
	// retransmissions: without aggregation there are many more of those, so
	// the per-datagram figure flatters the baseline.
	FeedbackPerOriginal float64 `json:"feedback_pkts_at_sender_per_original_pkt"`
	// FeedbackPerOrig is the same figure under the name issue 13's targets
	// use; RetransmissionsPerOriginal is the repair datagrams (NACK, RTO
	// and parity repairs) per original DATA packet of the transfer.
	FeedbackPerOrig            float64 `json:"feedback_per_original"`
	RetransmissionsPerOriginal float64 `json:"retransmissions_per_original"`
	// NACKsSuppressed sums the switches' suppressed-NACK counters
	// (sparsecast_switch_feedback_total{type="NACK",action="suppressed"}).
	NACKsSuppressed uint64  `json:"nacks_suppressed"`
	GoodputMbps     float64 `json:"goodput_mbps"`
	ElapsedS        float64 `json:"elapsed_s"`
	// The sender's counts.
	DataPkts         uint64 `json:"data_pkts"`
	DataDatagrams    uint64 `json:"data_datagrams_sent"`
	Retransmissions  uint64 `json:"retransmissions"`
	RetransmitCopies uint64 `json:"retransmit_copies"`
	// Retransmissions by cause: NACKed packets, RTO (tail loss), parity
	// packets (block NACKs); requests merged into a pending repair.
	NACKRetransmits uint64 `json:"nack_retransmissions"`
	RTORetransmits  uint64 `json:"rto_retransmissions"`
	ParityRepairs   uint64 `json:"parity_repairs"`
	BlockNACKs      uint64 `json:"block_nacks_at_sender"`
	// StaleBlockNACKs: block NACKs the sender dropped as answered by
	// parity sent within its holdoff (docs/feedback.md).
	StaleBlockNACKs uint64  `json:"stale_block_nacks"`
	MergedRequests  uint64  `json:"merged_requests"`
	SRTTms          float64 `json:"srtt_ms"`
	FeedbackPkts    uint64  `json:"feedback_pkts_at_sender"`
	ACKs            uint64  `json:"acks_at_sender"`
	AggregatedACKs  uint64  `json:"aggregated_acks_at_sender"`
	AmbiguousACKs   uint64  `json:"ambiguous_acks_at_sender"`
	NACKs           uint64  `json:"nacks_at_sender"`
	CNPs            uint64  `json:"cnps_at_sender"`
	RateDecreases   uint64  `json:"rate_decreases"`
	FinalRatePPS    float64 `json:"final_rate_pps"`
	// The receivers' counts, summed.
	ReceiverACKs  uint64 `json:"receiver_acks_sent"`
	ReceiverNACKs uint64 `json:"receiver_nacks_sent"`
	// ReceiverBlockNACKs: of those, block NACKs (parity asked for).
	ReceiverBlockNACKs uint64 `json:"receiver_block_nacks_sent"`
	// ReceiverNamedLosses: packets NACKed by name instead of by block,
	// by reason (no block yet, stream paused in the block, undecodable,
	// block tries used up, only parity-held slots missing).
	ReceiverNamedLosses [5]uint64 `json:"receiver_named_losses_by_reason"`
	// The switches' counts, summed.
	FaultDrops     uint64   `json:"fault_drops"`
	QueueFullDrops uint64   `json:"queue_full_drops"`
	FailedReceiver []uint16 `json:"failed_receivers,omitempty"`
	Errors         []string `json:"errors,omitempty"`
}

// fromSender fills the sender's counts from its report, with the DATA
// datagrams it sent and the feedback packets that reached it.
func (res *FeedbackResult) fromSender(rep *endpoint.SenderReport, datagrams, feedback uint64) {
	res.DataPkts, res.DataDatagrams = rep.Packets, datagrams
	res.Retransmissions, res.RetransmitCopies = rep.Retransmissions, rep.RetransmitCopies
	res.NACKRetransmits, res.RTORetransmits, res.ParityRepairs = rep.NACKRetransmits, rep.RTORetransmits, rep.ParityRepairs
	res.BlockNACKs, res.MergedRequests, res.SRTTms = rep.BlockNACKs, rep.MergedRequests, float64(rep.SRTT)/1e6
	res.StaleBlockNACKs = rep.StaleBlockNACKs
	res.FeedbackPkts, res.ACKs, res.AggregatedACKs, res.AmbiguousACKs = feedback, rep.ACKs, rep.AggregatedACKs, rep.AmbiguousACKs
	res.NACKs, res.CNPs, res.RateDecreases, res.FinalRatePPS = rep.NACKs, rep.CNPs, rep.RateDecreases, rep.FinalRatePPS
	if datagrams > 0 {
		res.FeedbackPerD = float64(feedback) / float64(datagrams)
	}
	if rep.Packets > 0 {
		res.FeedbackPerOriginal = float64(feedback) / float64(rep.Packets)
		res.FeedbackPerOrig = res.FeedbackPerOriginal
		res.RetransmissionsPerOriginal = float64(rep.Retransmissions) / float64(rep.Packets)
	}
}

const (
	spineIDBase = 0xFF00
	leafIDBase  = 0xFE00
)

type memHost struct {
	id  uint16
	tr  *endpoint.MemTransport
	ip  netip.Addr
	mac net.HardwareAddr
}

// BenchFeedback builds the fabric, runs one transfer and tears it down.
func BenchFeedback(ctx context.Context, o FeedbackOptions) (*FeedbackResult, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	leaves := (o.Receivers + 1 + o.HostsPerLeaf - 1) / o.HostsPerLeaf
	if leaves > 200 {
		return nil, fmt.Errorf("bench feedback: %d leaves: too many", leaves)
	}
	res := &FeedbackResult{Ports: "mem", Receivers: o.Receivers, Leaves: leaves, Spines: o.Spines, Loss: o.Loss, Aggregate: o.Aggregate, Size: o.Size}

	sws, hosts, err := buildFabric(o, leaves)
	if err != nil {
		return nil, err
	}
	swCtx, stopSwitches := context.WithCancel(context.Background())
	var swWG sync.WaitGroup
	swErrs := make([]error, len(sws))
	for i, sw := range sws {
		swWG.Add(1)
		go func() {
			defer swWG.Done()
			swErrs[i] = sw.Run(swCtx)
		}()
	}
	defer func() {
		stopSwitches()
		swWG.Wait()
	}()

	// The file.
	data := make([]byte, o.Size)
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x5eed))
	for i := 0; i+8 <= len(data); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(data) &^ 7; i < len(data); i++ {
		data[i] = byte(rng.Uint32())
	}
	sum := sha256.Sum256(data)

	// Receivers.
	sender := hosts[0]
	rcvIDs := make([]uint16, 0, o.Receivers)
	sinks := make([]*endpoint.FileSink, o.Receivers)
	reps := make([]*endpoint.SessionReport, o.Receivers)
	rcvCtx, stopReceivers := context.WithCancel(ctx)
	defer stopReceivers()
	var rcvWG sync.WaitGroup
	var errMu sync.Mutex
	for i, h := range hosts[1:] {
		rcvIDs = append(rcvIDs, h.id)
		sinks[i] = &endpoint.FileSink{}
		r, err := endpoint.NewReliableReceiver(h.tr, endpoint.SessionReceiverConfig{ID: h.id, Sink: sinks[i], Window: o.Window})
		if err != nil {
			return nil, err
		}
		rcvWG.Add(1)
		go func() {
			defer rcvWG.Done()
			rep, err := r.Run(rcvCtx)
			reps[i] = rep
			if err != nil {
				errMu.Lock()
				res.Errors = append(res.Errors, fmt.Sprintf("receiver %d: %v", h.id, err))
				errMu.Unlock()
			}
		}()
	}

	s, err := endpoint.NewReliableSender(sender.tr, endpoint.SessionConfig{
		SourceID: sender.id, SessionID: 1, Receivers: rcvIDs, GiveUp: o.Timeout,
		FECBlock: o.FECBlock, RepairWindow: o.RepairWindow, Window: o.Window,
	})
	if err != nil {
		return nil, err
	}
	tctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	err = endpoint.SendFile(tctx, s, "bench.bin", bytes.NewReader(data), int64(len(data)), sum)
	var rep *endpoint.SenderReport
	if err == nil {
		rep, err = s.Flush(tctx)
	} else {
		rep = s.Report()
	}
	elapsed := time.Since(start)
	if err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("sender: %v", err))
	}
	// The receivers have delivered everything they acknowledged; give the
	// last deliveries a moment (they precede the ACKs that completed the
	// sender) and stop them.
	time.Sleep(20 * time.Millisecond)
	stopReceivers()
	rcvWG.Wait()

	res.ElapsedS = elapsed.Seconds()
	res.DeliveredOK = err == nil && rep.Complete
	want := fmt.Sprintf("%x", sum)
	for i, sk := range sinks {
		files := sk.Results()
		if len(files) != 1 || !files[0].OK || files[0].SHA256 != want {
			res.DeliveredOK = false
			res.FailedReceiver = append(res.FailedReceiver, rcvIDs[i])
		}
		if reps[i] != nil {
			for _, st := range reps[i].Streams {
				res.ReceiverACKs += st.ACKs
				res.ReceiverNACKs += st.NACKs
				res.ReceiverBlockNACKs += st.BlockNACKs
				for k, n := range st.NamedLosses {
					res.ReceiverNamedLosses[k] += n
				}
			}
		}
	}
	ts := sender.tr.Stats()
	res.fromSender(rep, ts.SentData, ts.RecvFeedback)
	if elapsed > 0 && res.DeliveredOK {
		res.GoodputMbps = float64(o.Size) * 8 / elapsed.Seconds() / 1e6
	}
	for _, sw := range sws {
		for _, c := range sw.Counters() {
			res.NACKsSuppressed += c.Feedback[headers.TypeNACK][dataplane.FbSuppressed].Load()
			res.FaultDrops += c.Drops[dataplane.DropFaultInjected].Load()
			res.QueueFullDrops += c.Drops[dataplane.DropQueueFull].Load()
		}
	}
	stopSwitches()
	swWG.Wait()
	for i, e := range swErrs {
		if e != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("switch %d: %v", i, e))
		}
	}
	return res, nil
}

// buildFabric makes the switches and hosts: hosts get consecutive IDs, leaf
// by leaf (leaf l's are l*HostsPerLeaf + 0..HostsPerLeaf-1), as a
// deployment numbers its racks: a set of every receiver is then a few
// 64-ID block bitmaps (17 at 1024 receivers, 170 bytes), where one block
// per leaf (129 blocks, 1290 bytes at 1024) left a 1500-byte packet about
// 170 bytes of data. Host 0 of leaf 0 is the sender. A leaf routes remote
// receivers through spine (ID mod spines), the other spines as backups; a
// spine routes each receiver to its leaf.
func buildFabric(o FeedbackOptions, leaves int) ([]*dataplane.Switch, []*memHost, error) {
	const depth, slot = 1024, 2048
	aggregate := o.Aggregate
	type swBuild struct {
		cfg   *dataplane.Config
		ports []dataplane.Port
	}
	newCfg := func(name string, id uint16) *dataplane.Config {
		sid := id
		agg := aggregate
		// Dozens of switches and hundreds of hosts share the machine's
		// cores: a worker blocks as soon as a round finds nothing.
		var spin time.Duration
		return &dataplane.Config{
			Name: name, PollMode: dataplane.PollAdaptive, SpinBeforeBlock: &spin, Workers: 1, Buffers: 2048,
			SwitchID: &sid, Feedback: dataplane.FeedbackConfig{Aggregate: &agg},
		}
	}
	spines := make([]*swBuild, o.Spines)
	for s := range spines {
		spines[s] = &swBuild{cfg: newCfg(fmt.Sprintf("spine%d", s), uint16(spineIDBase+s))}
	}
	leafs := make([]*swBuild, leaves)
	var hosts []*memHost
	total := o.Receivers + 1
	for l := range leafs {
		lb := &swBuild{cfg: newCfg(fmt.Sprintf("leaf%d", l), uint16(leafIDBase+l))}
		leafs[l] = lb
		for s, sp := range spines {
			a, b := dataplane.NewMemPair(fmt.Sprintf("spine%d-p%d", s, l), fmt.Sprintf("leaf%d-up%d", l, s), depth, slot)
			sp.cfg.Ports = append(sp.cfg.Ports, dataplane.PortConfig{Name: a.Name(), Type: "mem", NeighborMAC: b.HardwareAddr().String()})
			sp.ports = append(sp.ports, a)
			lb.cfg.Ports = append(lb.cfg.Ports, dataplane.PortConfig{Name: b.Name(), Type: "mem", NeighborMAC: a.HardwareAddr().String()})
			lb.ports = append(lb.ports, b)
		}
		for h := 0; h < o.HostsPerLeaf && len(hosts) < total; h++ {
			id := uint16(l*o.HostsPerLeaf + h)
			name := fmt.Sprintf("leaf%d-h%d", l, h)
			swEnd, hostEnd := dataplane.NewMemPair(name, fmt.Sprintf("host%d", id), depth, slot)
			ip := netip.AddrFrom4([4]byte{10, 80, byte(l), byte(10 + h)})
			gw := netip.AddrFrom4([4]byte{10, 80, byte(l), 1})
			tr, err := endpoint.NewMemTransport(hostEnd, endpoint.MemConfig{HostIP: ip, GatewayIP: gw, GatewayMAC: swEnd.HardwareAddr()})
			if err != nil {
				return nil, nil, err
			}
			hosts = append(hosts, &memHost{id: id, tr: tr, ip: ip, mac: hostEnd.HardwareAddr()})
			lb.cfg.Ports = append(lb.cfg.Ports, dataplane.PortConfig{
				Name: name, Type: "mem", NeighborMAC: hostEnd.HardwareAddr().String(), NeighborIP: ip.String(),
				Fault: dataplane.FaultConfig{Loss: o.Loss, Seed: o.Seed*7919 + uint64(id) + 1},
			})
			lb.ports = append(lb.ports, swEnd)
		}
	}
	var sws []*dataplane.Switch
	build := func(b *swBuild, routes func(rt *dataplane.RouteTable)) error {
		// A switch holds a buffer per copy queued behind a slow port, and
		// an empty pool stops it receiving on every port: buffers scale
		// with ports, as a bigger switch has more (2048 up to 64 ports,
		// so the 64- and 256-receiver fabrics are as before).
		b.cfg.Buffers = max(b.cfg.Buffers, 32*len(b.cfg.Ports))
		if err := b.cfg.Validate(); err != nil {
			return fmt.Errorf("%s: %w", b.cfg.Name, err)
		}
		rt := dataplane.NewRouteTable()
		routes(rt)
		sw, err := dataplane.NewSwitch(b.cfg, b.ports, &dataplane.Tables{Generation: 1, Routes: rt})
		if err != nil {
			return fmt.Errorf("%s: %w", b.cfg.Name, err)
		}
		sws = append(sws, sw)
		return nil
	}
	for _, sp := range spines {
		if err := build(sp, func(rt *dataplane.RouteTable) {
			for _, h := range hosts {
				rt.Set(h.id, uint8(int(h.id)/o.HostsPerLeaf))
			}
		}); err != nil {
			return nil, nil, err
		}
	}
	for l, lb := range leafs {
		if err := build(lb, func(rt *dataplane.RouteTable) {
			for _, h := range hosts {
				if int(h.id)/o.HostsPerLeaf == l {
					rt.Set(h.id, uint8(o.Spines+int(h.id)%o.HostsPerLeaf))
					continue
				}
				p := uint8(int(h.id) % o.Spines)
				b := uint8(dataplane.NoPort)
				if o.Spines > 1 {
					b = uint8((int(h.id) + 1) % o.Spines)
				}
				rt.SetWithBackup(h.id, p, b)
			}
		}); err != nil {
			return nil, nil, err
		}
	}
	return sws, hosts, nil
}
