// The feedback benchmark over the veth lab (`bench feedback --veth`, as
// root): the same measurement as BenchFeedback, with every switch and host a
// process of its own in a network namespace, AF_PACKET ports on veth pairs,
// and `sparsecast send` / `sparsecast recv` as the endpoints.
//
//  1. A leaf-spine topology is generated: --spines spines, leaves of
//     --hosts-per-leaf hosts, the sender ("tx") first on leaf1, receivers
//     named r<leaf>-<host>, IDs in 64-aligned blocks per leaf (control).
//  2. The lab fabric starts with --loss injected on every receiver's
//     host-facing port and feedback.aggregate as --aggregate says.
//  3. lab.TransferOn copies the file and checks every receiver's copy.
//  4. The counts come from the sender's --json summary, the receivers'
//     reports and each switch's metrics endpoint.
//
// The namespaces ("scfb-", or FeedbackOptions.Prefix) and processes are
// removed afterwards.
package perf

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/sparsecast/sparsecast/control"
	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/endpoint"
	"github.com/sparsecast/sparsecast/testbeds/lab"
)

// FeedbackVethPrefix names the veth benchmark's namespaces.
const FeedbackVethPrefix = "scfb-"

// FeedbackVethWindow is the endpoints' window unless FeedbackOptions.Window
// says otherwise: the endpoint library's default, which the in-memory
// variant's endpoints use, so both variants compare (send and recv default
// to 8192; at 64 receivers and 5% loss that made 7-11 retransmissions per
// original where 1024 made 2.2, one run each, none delivered: with more
// packets in flight more loss ranges are open at once than a switch
// remembers).
const FeedbackVethWindow = 1024

// FeedbackVethMaxReceivers bounds the veth variant: a process and a network
// namespace per host.
const FeedbackVethMaxReceivers = 254

// feedbackTopology is a leaf-spine fabric for receivers hosts plus the
// sender; it returns the YAML and the receivers' host names.
func feedbackTopology(receivers, spines, perLeaf int) (string, []string) {
	leaves := (receivers + 1 + perLeaf - 1) / perLeaf
	var b strings.Builder
	b.WriteString("switches:\n")
	for s := 1; s <= spines; s++ {
		fmt.Fprintf(&b, "  - {name: spine%d, role: spine, id: %d}\n", s, 1000+s)
	}
	for l := 1; l <= leaves; l++ {
		fmt.Fprintf(&b, "  - {name: leaf%d, role: leaf, id: %d}\n", l, 2000+l)
	}
	b.WriteString("links:\n")
	for l := 1; l <= leaves; l++ {
		for s := 1; s <= spines; s++ {
			fmt.Fprintf(&b, "  - {a: spine%d:p%d, b: leaf%d:p%d}\n", s, l, l, s)
		}
	}
	b.WriteString("hosts:\n")
	var names []string
	for i := 0; i <= receivers; i++ {
		l, h := i/perLeaf+1, i%perLeaf+1
		name := fmt.Sprintf("r%d-%d", l, h)
		if i == 0 {
			name = "tx"
		} else {
			names = append(names, name)
		}
		fmt.Fprintf(&b, "  - {name: %s, attach: leaf%d:h%d, ips: [10.%d.%d.%d]}\n", name, l, h, 100+l/250, l%250, h)
	}
	return b.String(), names
}

// senderSummary is the part of `sparsecast send --json` the benchmark
// reads: the session's report (same names) and the goodput.
type senderSummary struct {
	endpoint.SenderReport
	GoodputMbps float64 `json:"goodput_mbps"`
}

// BenchFeedbackVeth runs the benchmark described at the top of the file
// with the sparsecast binary at bin. o.Seed varies the loss patterns.
func BenchFeedbackVeth(ctx context.Context, o FeedbackOptions, bin string, log func(string, ...any)) (res *FeedbackResult, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if o.Receivers > FeedbackVethMaxReceivers {
		return nil, fmt.Errorf("bench feedback --veth: %d receivers: at most %d (a namespace and a process each)", o.Receivers, FeedbackVethMaxReceivers)
	}
	yaml, names := feedbackTopology(o.Receivers, o.Spines, o.HostsPerLeaf)
	topo, err := control.ParseTopology([]byte(yaml))
	if err != nil {
		return nil, fmt.Errorf("bench feedback --veth: topology: %w", err)
	}
	faults := map[string]dataplane.FaultConfig{}
	for i, h := range topo.Hosts {
		if h.Name == "tx" {
			continue
		}
		sw := topo.Switches[h.Switch]
		faults[sw.Name+":"+sw.Ports[h.Port].Name] = dataplane.FaultConfig{Loss: o.Loss, Seed: o.Seed*7919 + uint64(i) + 1}
	}
	dir, err := os.MkdirTemp("", "sparsecast-feedback-")
	if err != nil {
		return nil, err
	}
	defer func() {
		// A failed run keeps its evidence: every process's log, the
		// sender's and receivers' reports and the switches' metrics.
		if res != nil && !res.DeliveredOK {
			res.Errors = append(res.Errors, "logs, reports and switch metrics kept in "+dir)
			return
		}
		os.RemoveAll(dir)
	}()
	agg := o.Aggregate
	prefix := o.Prefix
	if prefix == "" {
		prefix = FeedbackVethPrefix
	}
	if err := lab.CheckPrefix(prefix); err != nil {
		return nil, fmt.Errorf("bench feedback --veth: %w", err)
	}
	f, err := lab.StartFabric(ctx, lab.FabricOptions{Topology: topo, Binary: bin, Prefix: prefix, Dir: dir,
		Faults: faults, Aggregate: &agg, Log: log})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bench feedback --veth: teardown: %w", cerr)
		}
	}()
	tr, err := lab.TransferOn(ctx, f, lab.TransferOptions{Binary: bin, Sender: "tx", Receivers: names, Size: o.Size, Loss: o.Loss,
		Timeout: o.Timeout, Window: cmp.Or(o.Window, FeedbackVethWindow), Log: log})
	if err != nil {
		return nil, err
	}
	res = &FeedbackResult{Ports: "veth", Receivers: o.Receivers, Leaves: (o.Receivers + o.HostsPerLeaf) / o.HostsPerLeaf, Spines: o.Spines,
		Loss: o.Loss, Aggregate: o.Aggregate, Size: o.Size, DeliveredOK: tr.DeliveredOK, ElapsedS: tr.WallS}
	for _, r := range tr.Receivers {
		res.ReceiverACKs += r.ACKs
		res.ReceiverNACKs += r.NACKs
		res.ReceiverBlockNACKs += r.BlockNACKs
		for k, n := range r.NamedLosses {
			res.ReceiverNamedLosses[k] += n
		}
		if !r.OK {
			res.FailedReceiver = append(res.FailedReceiver, r.ID)
			if len(res.FailedReceiver) <= 3 {
				res.Errors = append(res.Errors, fmt.Sprintf("%s: %s", r.Host, r.Error))
			}
		}
	}
	if n := len(res.FailedReceiver); n > 3 {
		res.Errors = append(res.Errors, fmt.Sprintf("%d more receivers failed alike", n-3))
	}
	var s senderSummary
	if err := json.Unmarshal(tr.Sender, &s); err != nil {
		res.DeliveredOK = false
		res.Errors = append(res.Errors, fmt.Sprintf("sender: no summary (%v)", err))
		return res, nil
	}
	// Each retransmission is one DATA datagram, as each original is; the
	// summary's feedback_packets counts what reached the sender.
	res.fromSender(&s.SenderReport, s.Packets+s.Retransmissions, s.FeedbackPackets)
	if res.DeliveredOK {
		res.GoodputMbps = s.GoodputMbps
	}
	for _, sw := range topo.Switches {
		for _, c := range []struct {
			series string
			into   *uint64
		}{
			{`sparsecast_switch_feedback_total{action="suppressed",type="NACK"}`, &res.NACKsSuppressed},
			{`sparsecast_switch_drops_total{reason="fault_injected"}`, &res.FaultDrops},
			{`sparsecast_switch_drops_total{reason="queue_full"}`, &res.QueueFullDrops},
		} {
			n, err := f.SwitchCounter(ctx, sw.Name, c.series)
			if err != nil {
				return nil, fmt.Errorf("bench feedback --veth: %w", err)
			}
			*c.into += n
		}
	}
	return res, nil
}
