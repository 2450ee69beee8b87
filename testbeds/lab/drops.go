package lab

// Drop counters a starved process leaves behind, read from a running
// fabric before and after a stream (losses.go weighs them). In: the
// fabric's namespaces. Out: DropCounters, and per receiver the counts on
// its path.
//
//   - each switch's /metrics: sparsecast_switch_port_kernel_drops_total{port}
//     (its AF_PACKET rings' tp_drops) and drops_total{reason} for
//     queue_full and no_buffer;
//   - every interface in every switch and host namespace: tx_dropped
//     (`ip -s -j link`; a veth counts there a frame its peer's backlog had
//     no room for). The lab's veths have no qdisc (noqueue), so nothing
//     else on them drops;
//   - every host namespace's UDP counters (/proc/net/snmp, per namespace):
//     RcvbufErrors and NoPorts.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/sparsecast/sparsecast/control"
)

// DropCounters are a fabric's drop counters at one moment, or the change
// between two (Sub).
type DropCounters struct {
	// Ring by "switch:port", SwitchQueue by switch.
	Ring        map[string]uint64 `json:"ring"`
	SwitchQueue map[string]uint64 `json:"switch_queue"`
	// TxDropped by "switch:port" for switch ports, "host:dev" for hosts.
	TxDropped map[string]uint64 `json:"tx_dropped"`
	// RcvbufErrors and NoPorts by host.
	RcvbufErrors map[string]uint64 `json:"rcvbuf_errors"`
	NoPorts      map[string]uint64 `json:"no_ports"`
	// Decisions are the switches' other drops_total reasons by "switch
	// reason" (no_route, tx_error, ...): drops the code decided, listed in
	// a report and never a stall's explanation.
	Decisions map[string]uint64 `json:"decisions"`
}

func newDropCounters() *DropCounters {
	return &DropCounters{Ring: map[string]uint64{}, SwitchQueue: map[string]uint64{}, TxDropped: map[string]uint64{},
		RcvbufErrors: map[string]uint64{}, NoPorts: map[string]uint64{}, Decisions: map[string]uint64{}}
}

// Sub returns d less before, counter by counter (a counter that went back,
// a restarted switch's, counts from zero).
func (d *DropCounters) Sub(before *DropCounters) *DropCounters {
	out := newDropCounters()
	sub := func(dst, a, b map[string]uint64) {
		for k, v := range a {
			if w := b[k]; v >= w {
				dst[k] = v - w
			} else {
				dst[k] = v
			}
		}
	}
	sub(out.Ring, d.Ring, before.Ring)
	sub(out.SwitchQueue, d.SwitchQueue, before.SwitchQueue)
	sub(out.TxDropped, d.TxDropped, before.TxDropped)
	sub(out.RcvbufErrors, d.RcvbufErrors, before.RcvbufErrors)
	sub(out.NoPorts, d.NoPorts, before.NoPorts)
	sub(out.Decisions, d.Decisions, before.Decisions)
	return out
}

// NonZero lists the counters that are not zero, "kind where=n", sorted:
// where a stall dropped packets.
func (d *DropCounters) NonZero() []string {
	var out []string
	for _, m := range []struct {
		kind string
		m    map[string]uint64
	}{{"ring", d.Ring}, {"switch_queue", d.SwitchQueue}, {"tx_dropped", d.TxDropped}, {"rcvbuf_errors", d.RcvbufErrors}, {"no_ports", d.NoPorts}, {"drops", d.Decisions}} {
		for k, v := range m.m {
			if v > 0 {
				out = append(out, fmt.Sprintf("%s %s=%d", m.kind, k, v))
			}
		}
	}
	sort.Strings(out)
	return out
}

// ReadDropCounters reads every switch's and host's drop counters, each
// namespace's at once.
func (f *Fabric) ReadDropCounters(ctx context.Context) (*DropCounters, error) {
	d := newDropCounters()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var first error
	do := func(fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	for sw, ns := range f.SwitchNS {
		do(func() error {
			out, err := f.Lab.Exec(ctx, ns, "curl", "-sf", "http://127.0.0.1:9470/metrics")
			if err != nil {
				return fmt.Errorf("%s metrics: %w", sw, err)
			}
			ring, queue, decisions := parseDropMetrics(out)
			mu.Lock()
			defer mu.Unlock()
			for port, n := range ring {
				d.Ring[sw+":"+port] = n
			}
			d.SwitchQueue[sw] = queue
			for reason, n := range decisions {
				d.Decisions[sw+" "+reason] = n
			}
			return nil
		})
		do(func() error { return f.readTxDropped(ctx, ns, sw, d, &mu) })
	}
	for name, h := range f.Hosts {
		do(func() error { return f.readTxDropped(ctx, h.NS, name, d, &mu) })
		do(func() error {
			out, err := f.Lab.Exec(ctx, h.NS, "cat", "/proc/net/snmp")
			if err != nil {
				return fmt.Errorf("%s UDP counters: %w", name, err)
			}
			udp, err := parseSNMP(out, "Udp")
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			mu.Lock()
			defer mu.Unlock()
			d.RcvbufErrors[name], d.NoPorts[name] = udp["RcvbufErrors"], udp["NoPorts"]
			return nil
		})
	}
	wg.Wait()
	return d, first
}

func (f *Fabric) readTxDropped(ctx context.Context, ns, owner string, d *DropCounters, mu *sync.Mutex) error {
	out, err := run(ctx, f.Lab.logf, "ip", "-n", ns, "-s", "-j", "link", "show")
	if err != nil {
		return fmt.Errorf("%s links: %w", owner, err)
	}
	var links []struct {
		Name  string `json:"ifname"`
		Stats struct {
			Tx struct {
				Dropped uint64 `json:"dropped"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return fmt.Errorf("%s links: %w", owner, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range links {
		d.TxDropped[owner+":"+l.Name] = l.Stats.Tx.Dropped
	}
	return nil
}

// parseDropMetrics reads a switch's exposition: kernel drops by port,
// queue_full plus no_buffer drops, and the other drops by reason.
func parseDropMetrics(out []byte) (ring map[string]uint64, queue uint64, decisions map[string]uint64) {
	ring, decisions = map[string]uint64{}, map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		series, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		if port, ok := strings.CutPrefix(series, `sparsecast_switch_port_kernel_drops_total{port="`); ok {
			ring[strings.TrimSuffix(port, `"}`)] = uint64(v)
		}
		if reason, ok := strings.CutPrefix(series, `sparsecast_switch_drops_total{reason="`); ok {
			switch reason = strings.TrimSuffix(reason, `"}`); reason {
			case "queue_full", "no_buffer":
				queue += uint64(v)
			default:
				decisions[reason] = uint64(v)
			}
		}
	}
	return ring, queue, decisions
}

// parseSNMP returns the counters of one protocol's pair of lines in
// /proc/net/snmp ("Udp: InDatagrams NoPorts ..." then the values).
func parseSNMP(out []byte, proto string) (map[string]uint64, error) {
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != proto+":" {
			continue
		}
		if names == nil {
			names = fields[1:]
			continue
		}
		vals := map[string]uint64{}
		for i, name := range names {
			if i+1 < len(fields) {
				if v, err := strconv.ParseUint(fields[i+1], 10, 64); err == nil {
					vals[name] = v
				}
			}
		}
		return vals, nil
	}
	return nil, fmt.Errorf("no %s counters in /proc/net/snmp", proto)
}

// PathCounts returns the drops counted on receiver id's path from host
// sender: the sender's interface, on each switch its ingress port's ring,
// its queue drops and its egress port's tx_dropped, and the receiver's
// host. With anyPath (the receiver's path changed mid-stream) every switch
// port counts, except the "switch:port"s in exclude: the failed link,
// whose dropped frames are the reroute's.
//
// With probeDown (probes declared a healthy link down during the stream)
// every switch's no_route, hop_limit and ingress_port drops count too
// (LossCounts.ProbeDown): the probes rerouted the stream, so its path is
// not the primary one.
func (f *Fabric) PathCounts(d *DropCounters, sender string, id uint16, anyPath bool, exclude map[string]bool, probeDown bool) (LossCounts, error) {
	t := f.Topo
	var c LossCounts
	var host *FabricHost
	for _, h := range f.Hosts {
		if h.Receiver && h.ID == id {
			host = h
		}
	}
	sh, ok := f.Hosts[sender]
	if host == nil || !ok {
		return c, fmt.Errorf("losses: no receiver %d or sending host %q", id, sender)
	}
	c.Socket, c.NoPort = d.RcvbufErrors[host.Name], d.NoPorts[host.Name]
	c.Veth = d.TxDropped[sh.Name+":eth0"]
	if probeDown {
		// Probes routed around a link: the path is not the primary one
		// any more, so every switch counts.
		for _, sw := range t.Switches {
			for _, reason := range []string{"no_route", "hop_limit", "ingress_port"} {
				c.ProbeDown += d.Decisions[sw.Name+" "+reason]
			}
		}
	}
	onPath := func(sw string) { c.SwitchQueue += d.SwitchQueue[sw] }
	if anyPath {
		for _, sw := range t.Switches {
			onPath(sw.Name)
			for _, p := range sw.Ports {
				if k := sw.Name + ":" + p.Name; !exclude[k] {
					c.Ring += d.Ring[k]
					c.Veth += d.TxDropped[k]
				}
			}
		}
		return c, nil
	}
	tables, err := control.ComputeAllTables(t, nil)
	if err != nil {
		return c, err
	}
	byName := map[string]*control.SwitchTables{}
	for _, tb := range tables {
		byName[tb.Switch] = tb
	}
	var th *control.Host
	for i := range t.Hosts {
		if t.Hosts[i].Name == sender {
			th = &t.Hosts[i]
		}
	}
	if th == nil {
		return c, fmt.Errorf("losses: no host %q in the topology", sender)
	}
	path, err := primaryPath(t, byName, th.Switch, id)
	if err != nil {
		return c, err
	}
	in := t.Switches[th.Switch].Ports[th.Port].Name
	for _, h := range path {
		c.Ring += d.Ring[h.sw+":"+in]
		onPath(h.sw)
		c.Veth += d.TxDropped[h.from]
		if h.link >= 0 {
			lk := t.Links[h.link]
			if t.Switches[lk.ASw].Name == h.sw {
				in = t.Switches[lk.BSw].Ports[lk.BPort].Name
			} else {
				in = t.Switches[lk.ASw].Ports[lk.APort].Name
			}
		}
	}
	return c, nil
}
