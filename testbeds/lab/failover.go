package lab

// The failover scenario: a fabric streams SMH at a steady rate from one
// sender to every receiver; mid-stream one switch-to-switch link is taken
// down (`ip link set down`, a carrier loss at both ends). The switches detect
// it and reroute locally; the result says how fast (detection, the
// rerouted table's publish, and the first packet over the backup path:
// arrival.go), and who lost what:
// receivers whose primary path used the link may lose the packets in flight,
// every other receiver must lose none.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sparsecast/sparsecast/control"
	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/endpoint"
)

// FailoverOptions configure Failover.
type FailoverOptions struct {
	Topology string // fabric YAML
	Binary   string
	Sender   string        // sending host (default: the first non-receiver host)
	Link     string        // "switch:port" of the link to fail (default: the first link on an affected path)
	Rate     float64       // packets per second (default 5000)
	Duration time.Duration // stream length (default 4s)
	FailAt   time.Duration // when to fail the link (default Duration/2)
	Prefix   string        // namespace prefix (default "scf-")
	Dir      string
	Log      func(format string, args ...any)
}

// FailoverResult is what `bench failover --json` prints.
type FailoverResult struct {
	Link     string  `json:"link"`
	DetectUs float64 `json:"detect_us"`
	// RerouteUs is link down to the rerouted table's publish on the switch
	// upstream of the link (ReroutedBy). RepairUs is link down to the first
	// packet for an affected receiver sent over a backup path (RepairedVia,
	// a switch port their primary paths do not leave by; kernel timestamp).
	// DeliveredUs is link down to the first such packet arriving at the
	// switch in front of them (DeliveredVia): the repair plus the backup
	// path's transit.
	RerouteUs    float64 `json:"reroute_us"`
	RepairUs     float64 `json:"repair_us"`
	RepairedVia  string  `json:"repaired_via"`
	DeliveredUs  float64 `json:"delivered_us"`
	DeliveredVia string  `json:"delivered_via"`
	// HopP50Us and HopP90Us are the forwarding time of the switch upstream
	// of the link (HopSwitch) in a window before the failure, from a
	// frame's arrival to its departure through the port that then fails
	// (kernel timestamps; HopSamples frames): what the machine adds per
	// hop. A repair leaves that switch with the first packet it forwards
	// after its reroute, so it takes about one such hop more than the
	// reroute.
	HopSwitch           string                 `json:"hop_switch"`
	HopP50Us            float64                `json:"hop_p50_us"`
	HopP90Us            float64                `json:"hop_p90_us"`
	HopSamples          int                    `json:"hop_samples"`
	LostAffected        int                    `json:"lost_affected"`
	LostUnaffected      int                    `json:"lost_unaffected"`
	AffectedReceivers   []uint16               `json:"affected_receivers"`
	UnaffectedReceivers []uint16               `json:"unaffected_receivers"`
	DetectedBy          string                 `json:"detected_by"`
	ReroutedBy          string                 `json:"rerouted_by"`
	RoutesMoved         int                    `json:"routes_moved"`
	Sent                uint64                 `json:"sent"`
	RatePPS             float64                `json:"rate_pps"`
	Receivers           []FailoverReceiverStat `json:"receivers"`
	DeliveredUnaffected bool                   `json:"delivered_ok_unaffected"`
	// Losses sorts every receiver's losses by cause: to the reroute
	// (affected receivers, at most losses.reroute_bound each), to stalls
	// of a starved process (drops the kernel and the switches counted, and
	// losses shared by every receiver near a run the sender sent late),
	// and unexplained; a correct reroute leaves none unexplained.
	Losses   *LossReport `json:"losses"`
	ElapsedS float64     `json:"elapsed_s"`
	Dir      string      `json:"dir"`
	// Stream is the raw stream result, for plots.
	Stream *StreamResult `json:"-"`
	FailAt time.Duration `json:"-"`
}

// FailoverReceiverStat is one receiver's count.
type FailoverReceiverStat struct {
	ID         uint16 `json:"id"`
	Affected   bool   `json:"affected"`
	Received   uint64 `json:"received"`
	Lost       uint64 `json:"lost"`
	Duplicates uint64 `json:"duplicates"`
}

// Table renders a result for people.
func (r *FailoverResult) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "failover of %s: detected in %.0f µs (%s), rerouted in %.0f µs (%s, %d routes moved), first packet on the backup path in %.0f µs (%s), there in %.0f µs (%s)\n",
		r.Link, r.DetectUs, r.DetectedBy, r.RerouteUs, r.ReroutedBy, r.RoutesMoved, r.RepairUs, r.RepairedVia, r.DeliveredUs, r.DeliveredVia)
	if r.HopSamples > 0 {
		fmt.Fprintf(&b, "  before the failure %s forwarded in p50 %.0f µs, p90 %.0f µs (%d frames): a repair waits for about one such hop after the reroute\n",
			r.HopSwitch, r.HopP50Us, r.HopP90Us, r.HopSamples)
	}
	fmt.Fprintf(&b, "  %d packets to each receiver at %.0f pps; lost by affected receivers %d, by unaffected %d\n",
		r.Sent, r.RatePPS, r.LostAffected, r.LostUnaffected)
	if r.Losses != nil {
		fmt.Fprintf(&b, "  %s\n", r.Losses.Summary())
	}
	fmt.Fprintf(&b, "  %8s  %8s  %9s  %6s  %10s  %7s  %11s  %s\n", "RECEIVER", "AFFECTED", "RECEIVED", "LOST", "DUPLICATES", "REROUTE", "UNEXPLAINED", "STALL")
	for _, s := range r.Receivers {
		var rl ReceiverLoss
		if r.Losses != nil {
			for _, l := range r.Losses.Receivers {
				if l.ID == s.ID {
					rl = l
				}
			}
		}
		fmt.Fprintf(&b, "  %8d  %8v  %9d  %6d  %10d  %7d  %11d  %s\n", s.ID, s.Affected, s.Received, s.Lost, s.Duplicates, rl.Reroute, rl.Unexplained, rl.Stall)
	}
	return b.String()
}

func (o *FailoverOptions) defaults() error {
	if o.Rate == 0 {
		o.Rate = 5000
	}
	if o.Duration == 0 {
		o.Duration = 4 * time.Second
	}
	if o.FailAt == 0 {
		o.FailAt = o.Duration / 2
	}
	if o.Rate < 1 || o.Rate > 1e6 || o.Duration > 10*time.Minute || o.FailAt >= o.Duration {
		return fmt.Errorf("failover: rate %v, duration %v, fail at %v: want a rate of 1-1e6 pps and the failure inside the stream", o.Rate, o.Duration, o.FailAt)
	}
	return nil
}

// Failover runs the scenario and tears the fabric down again.
func Failover(ctx context.Context, o FailoverOptions) (res *FailoverResult, err error) {
	start := time.Now()
	if o.Prefix == "" {
		o.Prefix = "scf-"
	}
	if err := o.defaults(); err != nil {
		return nil, err
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	topo, err := control.LoadTopology(o.Topology)
	if err != nil {
		return nil, err
	}
	f, err := StartFabric(ctx, FabricOptions{Topology: topo, Binary: o.Binary, Prefix: o.Prefix, Dir: o.Dir, Probes: true,
		Control: true, TopologyPath: o.Topology, Log: logf})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("failover: teardown: %w", cerr)
		}
	}()
	res, err = FailoverOn(ctx, f, o)
	if res != nil {
		res.ElapsedS = time.Since(start).Seconds()
	}
	return res, err
}

// FailoverOn runs the failover scenario on a running fabric and brings the
// link back up afterwards.
func FailoverOn(ctx context.Context, f *Fabric, o FailoverOptions) (res *FailoverResult, err error) {
	start := time.Now()
	topo := f.Topo
	if err := o.defaults(); err != nil {
		return nil, err
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	all, err := control.ComputeAllTables(topo, nil)
	if err != nil {
		return nil, err
	}
	tables := map[string]*control.SwitchTables{}
	for _, t := range all {
		tables[t.Switch] = t
	}
	sender := o.Sender
	if sender == "" {
		for _, h := range topo.Hosts {
			if !h.Receiver {
				sender = h.Name
				break
			}
		}
	}
	if sender == "" && len(topo.Hosts) > 0 {
		sender = topo.Hosts[0].Name
	}
	senderIdx := -1
	for i, h := range topo.Hosts {
		if h.Name == sender {
			senderIdx = i
		}
	}
	if senderIdx < 0 {
		return nil, fmt.Errorf("failover: no sending host %q in %s", sender, o.Topology)
	}
	// Walk every receiver's primary path from the sender's switch.
	paths := map[uint16][]pathHop{}
	var recvIDs []uint16
	for _, r := range topo.Receivers() {
		if r.Host == sender {
			continue
		}
		p, err := primaryPath(topo, tables, topo.Hosts[senderIdx].Switch, r.ID)
		if err != nil {
			return nil, err
		}
		paths[r.ID] = p
		recvIDs = append(recvIDs, r.ID)
	}
	link := o.Link
	if link == "" {
		// The first switch-to-switch hop on receiver paths, preferring a
		// link that some but not all receivers use.
		for _, id := range recvIDs {
			for _, h := range paths[id][1:] {
				if h.link >= 0 {
					link = h.from
					break
				}
			}
			if link != "" {
				break
			}
		}
	}
	failSw, failPort, ok := strings.Cut(link, ":")
	lid := control.LinkID(-1)
	if si := topo.SwitchIndex(failSw); ok && si >= 0 {
		for pi, p := range topo.Switches[si].Ports {
			if p.Name == failPort && p.Link >= 0 {
				lid = p.Link
				_ = pi
			}
		}
	}
	if lid < 0 {
		return nil, fmt.Errorf("failover: %q is not a switch-to-switch link port", link)
	}
	affected := map[uint16]bool{}
	upstream := ""
	for id, p := range paths {
		for _, h := range p {
			if h.link == lid {
				affected[id] = true
				upstream = h.sw
			}
		}
	}
	// The backup paths: every switch-to-switch port that no affected
	// receiver's primary path leaves by. Frames for them sent there are
	// the repair; received there by the switch in front of them, its
	// delivery.
	primaryOut := map[string]bool{}
	arrival := map[string]map[string]bool{}
	for id := range affected {
		p := paths[id]
		for _, h := range p {
			primaryOut[h.from] = true
		}
		if len(p) >= 2 {
			last, in := p[len(p)-1].sw, p[len(p)-2].link
			for _, port := range topo.Switches[topo.SwitchIndex(last)].Ports {
				if port.Link >= 0 && port.Link != in {
					if arrival[last] == nil {
						arrival[last] = map[string]bool{}
					}
					arrival[last][port.Name] = true
				}
			}
		}
	}
	var watches []*arrivalWatch
	defer func() {
		for _, w := range watches {
			w.Close()
		}
	}()
	for _, sw := range topo.Switches {
		var ports []string
		for _, port := range sw.Ports {
			if port.Link >= 0 && !primaryOut[sw.Name+":"+port.Name] {
				ports = append(ports, port.Name)
			}
		}
		if len(ports) == 0 || len(affected) == 0 {
			continue
		}
		w, err := watchArrivals(sw.Name, f.SwitchNS[sw.Name], ports, arrival[sw.Name], f.UDPPort, affected)
		if err != nil {
			return nil, fmt.Errorf("failover: %w", err)
		}
		watches = append(watches, w)
	}
	// The upstream switch's forwarding time, sampled in the middle of the
	// stream's first part.
	var hopPorts []string
	for _, port := range topo.Switches[topo.SwitchIndex(failSw)].Ports {
		hopPorts = append(hopPorts, port.Name)
	}
	hop, err := watchHop(f.SwitchNS[failSw], hopPorts, failPort, f.UDPPort)
	if err != nil {
		return nil, fmt.Errorf("failover: watching %s: %w", failSw, err)
	}
	defer hop.Close()
	res = &FailoverResult{Link: link}
	for _, id := range recvIDs {
		if affected[id] {
			res.AffectedReceivers = append(res.AffectedReceivers, id)
		} else {
			res.UnaffectedReceivers = append(res.UnaffectedReceivers, id)
		}
	}

	res.Dir = f.Dir

	var rhosts []*FabricHost
	for _, h := range f.Receivers() {
		if h.Name != sender {
			rhosts = append(rhosts, h)
		}
	}
	srcID := uint16(0)
	if h := topo.Hosts[senderIdx]; h.Receiver {
		srcID = h.ID
	}
	logf("== streaming at %.0f pps from %s to %s; %s goes down at %v", o.Rate, sender, ReceiverIDs(rhosts), link, o.FailAt)
	var t0 int64
	st, err := f.Stream(ctx, StreamOptions{
		Sender: sender, SourceID: srcID, Receivers: rhosts, Rate: o.Rate, Duration: o.Duration,
		Started: func() { hop.SampleLater(o.FailAt/2, min(300*time.Millisecond, o.FailAt/4)) },
		At:      o.FailAt, Do: func() error {
			// The same change as `ip link set dev PORT down`, made
			// in-process so that t0 is taken right before it and not
			// before a fork and exec.
			return SetLinkDown(f.SwitchNS[failSw], failPort, true, func() {
				t0 = dataplane.MonotonicNs()
				for _, w := range watches {
					w.Arm(t0)
				}
			})
		},
	})
	if err != nil {
		return nil, err
	}
	// Bring the link back for whatever runs next on this fabric.
	defer SetLinkDown(f.SwitchNS[failSw], failPort, false, nil)
	res.Sent, res.RatePPS = st.Sent, st.PPS
	res.Stream, res.FailAt = st, o.FailAt
	res.DeliveredUnaffected = true
	for _, id := range recvIDs {
		r := st.Receivers[id]
		st := FailoverReceiverStat{ID: id, Affected: affected[id], Received: r.Received, Lost: r.Lost, Duplicates: r.Duplicates}
		if st.Affected {
			res.LostAffected += int(st.Lost)
		} else {
			res.LostUnaffected += int(st.Lost)
			if st.Lost != 0 || st.Duplicates != 0 {
				res.DeliveredUnaffected = false
			}
		}
		res.Receivers = append(res.Receivers, st)
	}
	// Detection and repair, from the switches' link events.
	for _, sw := range []string{failSw, topo.Switches[topo.Links[lid].BSw].Name, topo.Switches[topo.Links[lid].ASw].Name} {
		evs, err := readLinkEvents(f.Logs[sw])
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if e.State != 3 || e.DetectNs < t0 {
				continue
			}
			if d := float64(e.DetectNs-t0) / 1e3; res.DetectedBy == "" || d < res.DetectUs {
				res.DetectUs, res.DetectedBy = d, fmt.Sprintf("%s:%s %s", sw, e.Name, e.Cause)
			}
			if sw == upstream && res.ReroutedBy == "" {
				res.RerouteUs = float64(e.SwapNs-t0) / 1e3
				res.ReroutedBy = fmt.Sprintf("%s:%s", sw, e.Name)
				res.RoutesMoved = e.Moved
			}
		}
	}
	if res.DetectedBy == "" {
		return nil, fmt.Errorf("failover: no switch reported %s down (logs in %s)", link, f.Dir)
	}
	for _, w := range watches {
		if t, port := w.FirstSent(); port != "" && (res.RepairedVia == "" || float64(t-t0)/1e3 < res.RepairUs) {
			res.RepairUs, res.RepairedVia = float64(t-t0)/1e3, w.sw+":"+port
		}
		if t, port := w.FirstReceived(); port != "" && (res.DeliveredVia == "" || float64(t-t0)/1e3 < res.DeliveredUs) {
			res.DeliveredUs, res.DeliveredVia = float64(t-t0)/1e3, w.sw+":"+port
		}
	}
	if l := hop.Latencies(); len(l) > 0 {
		res.HopSwitch, res.HopSamples = failSw, len(l)
		res.HopP50Us, res.HopP90Us = float64(l[len(l)/2])/1e3, float64(l[len(l)*9/10])/1e3
	}
	if res.RepairedVia == "" && len(res.AffectedReceivers) > 0 {
		return nil, fmt.Errorf("failover: no switch sent a packet for receivers %v over a backup path (logs in %s)", res.AffectedReceivers, f.Dir)
	}
	lk := topo.Links[lid]
	exclude := map[string]bool{lk.A: true, lk.B: true}
	res.Losses, err = f.StreamLosses(st, LossOptions{Affected: affected, Exclude: exclude,
		RerouteBound: RerouteBound(st.Rate, max(res.DeliveredUs, res.RepairUs), st.Lag.MaxLagNs)})
	if err != nil {
		return nil, err
	}
	res.ElapsedS = time.Since(start).Seconds()
	return res, nil
}

// RerouteBound is the most packets one affected receiver may lose to a
// reroute whose first packet over the backup path arrived deliveredUs after
// the link went down: what the schedule sends in that time and 2 ms more
// (frames in flight, the hop the measurement ends on), and, when the sender
// was behind its schedule, the catch-up it may send early (at most 20 ms of
// the schedule, endpoint's maxLag).
func RerouteBound(ratePPS, deliveredUs float64, senderMaxLagNs int64) uint64 {
	catchUp := min(float64(senderMaxLagNs)/1e3, 20_000)
	return uint64(math.Ceil(ratePPS * (deliveredUs + 2000 + catchUp) / 1e6))
}

type pathHop struct {
	sw   string
	from string // "switch:port" the hop leaves by
	link control.LinkID
}

// primaryPath follows primaries from switch si to receiver id's host port.
func primaryPath(t *control.Topology, tables map[string]*control.SwitchTables, si int, id uint16) ([]pathHop, error) {
	var path []pathHop
	for hops := 0; hops < 64; hops++ {
		sw := t.Switches[si]
		tb := tables[sw.Name]
		i := sort.Search(len(tb.Routes), func(i int) bool { return tb.Routes[i].Receiver >= id })
		if i == len(tb.Routes) || tb.Routes[i].Receiver != id || tb.Routes[i].Primary == control.NoPort {
			return nil, fmt.Errorf("failover: %s has no route to receiver %d", sw.Name, id)
		}
		p := sw.Ports[tb.Routes[i].Primary]
		path = append(path, pathHop{sw: sw.Name, from: sw.Name + ":" + p.Name, link: p.Link})
		if p.Link < 0 {
			return path, nil
		}
		si = p.Peer
	}
	return nil, fmt.Errorf("failover: the path to receiver %d loops", id)
}

// readLinkEvents reads the JSON link events of a switch log.
func readLinkEvents(path string) ([]dataplane.LinkEvent, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var evs []dataplane.LinkEvent
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(`{"event":"link"`)) {
			continue
		}
		var e dataplane.LinkEvent
		if json.Unmarshal(line, &e) == nil {
			evs = append(evs, e)
		}
	}
	return evs, sc.Err()
}

// StreamOptions configure Fabric.Stream.
type StreamOptions struct {
	Sender    string
	SourceID  uint16
	Receivers []*FabricHost
	Rate      float64
	Duration  time.Duration
	// Do, if set, runs At into the stream (a failure to inject).
	At time.Duration
	Do func() error
	// Started, if set, is called when the sender has started.
	Started func()
	// Size is the payload of each packet (default 128 bytes). Count, if
	// set, is the number of packets (default Rate x Duration); with Rate 0
	// they go as fast as the sender can.
	Size  int
	Count int
	// Settle, if set, stops the receivers that long after the sender has
	// exited (each prints its count on SIGTERM) instead of waiting for
	// their idle timeout, and skips the wait for probes before the start
	// (a fabric without probes).
	Settle time.Duration
}

// StreamResult counts what a stream delivered.
type StreamResult struct {
	Sender    string
	Sent      uint64
	PPS       float64
	Receivers map[uint16]ReceiverCount
	// FirstSeq and LastSeq are the first and last sequence numbers sent,
	// Rate the schedule's rate.
	FirstSeq, LastSeq uint32
	Rate              float64
	// Lag is how far the sender fell behind its schedule (send --json).
	Lag SenderLag
	// Drops are the fabric's drop counters over the stream (drops.go);
	// nil, with DropsErr, if they could not be read.
	Drops    *DropCounters
	DropsErr error
	// LinkEvents are the switches' link changes from the sender's start
	// on ("spine1:p2 down (probe_timeout)"): a healthy link declared down
	// by probes is a starved neighbour's sign.
	LinkEvents []string
}

// probeDownSeen: among link events ("switch:port state (cause)"), a link
// not in exclude was declared down by probes, or came back up from that
// (the down came before the events): its far end was starved.
func probeDownSeen(events []string, exclude map[string]bool) bool {
	for _, e := range events {
		port, rest, _ := strings.Cut(e, " ")
		probe := strings.HasPrefix(rest, "down (probe_") || strings.HasSuffix(rest, "(probe_recovered)")
		if probe && !exclude[port] {
			return true
		}
	}
	return false
}

// linkEventsSince lists every switch's link events detected at or after
// sinceNs (CLOCK_MONOTONIC), in switch order.
func (f *Fabric) linkEventsSince(sinceNs int64) []string {
	var out []string
	for _, sw := range f.Topo.Switches {
		evs, err := readLinkEvents(f.Logs[sw.Name])
		if err != nil {
			continue
		}
		for _, e := range evs {
			if e.DetectNs >= sinceNs {
				out = append(out, fmt.Sprintf("%s:%s %s (%s)", sw.Name, e.Name, dataplane.StateName(e.State), e.Cause))
			}
		}
	}
	return out
}

// SenderLag is the sender's account of its pacing (endpoint.SendStats).
type SenderLag struct {
	LatePackets uint64                `json:"late_packets"`
	MaxLagNs    int64                 `json:"max_lag_ns"`
	SkippedNs   int64                 `json:"skipped_ns"`
	Lag         []endpoint.LagEpisode `json:"lag"`
}

// LossOptions say how StreamLosses weighs a stream's losses.
type LossOptions struct {
	// Affected are the receivers whose path a failure changed; Exclude the
	// "switch:port"s whose drops are the failure's, not a stall's.
	Affected map[uint16]bool
	Exclude  map[string]bool
	// RerouteBound is the most packets an affected receiver may lose to
	// the reroute.
	RerouteBound uint64
}

// StreamLosses sorts a stream's losses by cause (losses.go): what the drop
// counters on each receiver's path and the sender's lag explain, what the
// reroute cost, and what is left unexplained.
func (f *Fabric) StreamLosses(res *StreamResult, o LossOptions) (*LossReport, error) {
	in := LossInput{FirstSeq: res.FirstSeq, LastSeq: res.LastSeq, Sent: res.Sent, Lag: res.Lag.Lag,
		RatePPS: res.Rate, LagSlack: DefaultLagSlack, RerouteBound: o.RerouteBound}
	ids := make([]uint16, 0, len(res.Receivers))
	for id := range res.Receivers {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	probeDown := probeDownSeen(res.LinkEvents, o.Exclude)
	for _, id := range ids {
		r := LossReceiver{ID: id, Affected: o.Affected[id], Received: res.Receivers[id].Seqs}
		if res.Drops != nil {
			c, err := f.PathCounts(res.Drops, res.Sender, id, r.Affected, o.Exclude, probeDown)
			if err != nil {
				return nil, err
			}
			r.Counted = c
		}
		in.Receivers = append(in.Receivers, r)
	}
	rep := AttributeLosses(in)
	rep.SenderLatePackets, rep.SenderMaxLagNs, rep.SenderSkippedNs = res.Lag.LatePackets, res.Lag.MaxLagNs, res.Lag.SkippedNs
	if res.DropsErr != nil {
		rep.CountersMissing = res.DropsErr.Error()
	}
	if res.Drops != nil {
		rep.Counted = res.Drops.NonZero()
	}
	rep.LinkEvents, rep.ProbeDown = res.LinkEvents, probeDown
	return rep, nil
}

// ReceiverCount is one receiver's share of a stream.
type ReceiverCount struct {
	Received, Lost, Duplicates uint64
	// LatencyMin and LatencyMax are the least and greatest one-way delay
	// of its packets (send time in the payload to arrival): their
	// difference bounds how much longer its arrivals took than the
	// sending, which is what a fabric that queues rather than carries the
	// rate shows.
	LatencyMin, LatencyMax time.Duration
	// Seqs is every sequence number it received.
	Seqs *endpoint.SeqSet `json:"-"`
}

// Stream sends SMH at a steady rate from one host to a fixed set of
// receivers with the plain send and recv commands, runs Do At into it, and
// counts what every receiver got.
func (f *Fabric) Stream(ctx context.Context, o StreamOptions) (*StreamResult, error) {
	count := int(o.Rate * o.Duration.Seconds())
	if o.Count > 0 {
		count = o.Count
	}
	if count < 1 {
		return nil, fmt.Errorf("stream: %v packets/s for %v is no packet", o.Rate, o.Duration)
	}
	maxRun := o.Duration*3 + 30*time.Second
	// A fresh session (see session.go).
	sessions, err := reserveSessions(f.Dir, 1, 0)
	if err != nil {
		return nil, err
	}
	defer sessions.Release()
	outs := map[uint16]*bytes.Buffer{}
	var recvs []*Proc
	for _, h := range o.Receivers {
		outs[h.ID] = &bytes.Buffer{}
		errLog, err := os.Create(filepath.Join(f.Dir, fmt.Sprintf("recv-%d.log", h.ID)))
		if err != nil {
			return nil, err
		}
		defer errLog.Close()
		p, err := f.Lab.Start(h.NS, fmt.Sprintf("recv %d", h.ID), outs[h.ID], errLog, f.bin, "recv",
			"--id", strconv.Itoa(int(h.ID)), "--listen", f.ListenAddr(h.Name), "--idle-timeout", "1500ms",
			"--duration", maxRun.String(), "--json")
		if err != nil {
			return nil, err
		}
		recvs = append(recvs, p)
		if err := waitUDPBound(ctx, p, f.UDPPort, 10*time.Second); err != nil {
			return nil, fmt.Errorf("stream: receiver %d: %w", h.ID, err)
		}
	}
	before, dropsErr := f.ReadDropCounters(ctx)
	if o.Settle == 0 {
		// Let probes run for a few windows so every link is known good.
		time.Sleep(300 * time.Millisecond)
	}
	if o.Size == 0 {
		o.Size = 128
	}
	var sendOut bytes.Buffer
	sendLog, err := os.Create(filepath.Join(f.Dir, "send.log"))
	if err != nil {
		return nil, err
	}
	defer sendLog.Close()
	startNs := dataplane.MonotonicNs()
	sp, err := f.Lab.Start(f.Hosts[o.Sender].NS, "send", &sendOut, sendLog, f.bin, "send",
		"--via", f.GatewayAddr(o.Sender), "--to", ReceiverIDs(o.Receivers),
		"--source-id", strconv.Itoa(int(o.SourceID)), "--session", strconv.Itoa(int(sessions.IDs[0])), "--count", strconv.Itoa(count),
		"--size", strconv.Itoa(o.Size), "--rate", strconv.FormatFloat(o.Rate, 'f', -1, 64), "--json")
	if err != nil {
		return nil, err
	}
	if o.Started != nil {
		o.Started()
	}
	if o.Do != nil {
		select {
		case <-time.After(o.At):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err := o.Do(); err != nil {
			return nil, err
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, maxRun)
	defer cancel()
	if err := sp.Wait(waitCtx); err != nil {
		return nil, fmt.Errorf("stream: sender: %w (see %s)", err, sendLog.Name())
	}
	var sent struct {
		Packets  uint64  `json:"packets"`
		PPS      float64 `json:"pps"`
		FirstSeq uint32  `json:"first_seq"`
		LastSeq  uint32  `json:"last_seq"`
		SenderLag
	}
	if err := json.Unmarshal(sendOut.Bytes(), &sent); err != nil {
		return nil, fmt.Errorf("stream: sender output: %w: %q", err, sendOut.String())
	}
	res := &StreamResult{Sender: o.Sender, Sent: sent.Packets, PPS: sent.PPS, Receivers: map[uint16]ReceiverCount{},
		FirstSeq: sent.FirstSeq, LastSeq: sent.LastSeq, Rate: o.Rate, Lag: sent.SenderLag}
	if o.Settle > 0 {
		time.Sleep(o.Settle)
		for _, p := range recvs {
			p.Stop(2 * time.Second)
		}
	}
	for _, p := range recvs {
		if err := p.Wait(waitCtx); err != nil {
			return nil, fmt.Errorf("stream: receiver: %w", err)
		}
	}
	if dropsErr == nil {
		var after *DropCounters
		if after, dropsErr = f.ReadDropCounters(ctx); dropsErr == nil {
			res.Drops = after.Sub(before)
		}
	}
	res.DropsErr = dropsErr
	res.LinkEvents = f.linkEventsSince(startNs)
	for id, out := range outs {
		var rep endpoint.Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			return nil, fmt.Errorf("stream: receiver %d output: %w", id, err)
		}
		c := ReceiverCount{Seqs: &endpoint.SeqSet{}}
		for _, s := range rep.Streams {
			if c.Received == 0 || s.Latency.Min < c.LatencyMin {
				c.LatencyMin = s.Latency.Min
			}
			c.LatencyMax = max(c.LatencyMax, s.Latency.Max)
			c.Received += s.Unique
			c.Duplicates += s.Duplicates
			if s.Seqs != nil {
				s.Seqs.Each(func(q uint32) bool { c.Seqs.Add(q); return true })
			}
		}
		c.Lost = sent.Packets - min(c.Received, sent.Packets)
		res.Receivers[id] = c
	}
	return res, nil
}
