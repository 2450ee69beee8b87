package lab

// A multi-switch lab fabric built from a control topology: one network
// namespace per switch and per host, a veth pair per link and per host
// attachment, one `sparsecast switch run` per switch with a configuration
// generated from the topology (ports in the topology's order, control's
// primary and backup routes, probes on switch-to-switch ports). In: a
// topology. Out: running switches, hosts with addresses and gateways, and
// the paths of every config and log.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sparsecast/sparsecast/control"
	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
)

// FabricOptions configure StartFabric.
type FabricOptions struct {
	Topology *control.Topology
	Binary   string
	Prefix   string
	Dir      string
	UDPPort  uint16
	// Probes turns on probes between switches (default interval 1 ms).
	Probes bool
	// Faults injects egress loss on named ports, "switch:port" -> config.
	Faults map[string]dataplane.FaultConfig
	// Aggregate sets feedback.aggregate on every switch (nil: the
	// default, on); off is the baseline `bench feedback --veth` compares.
	Aggregate *bool
	// Control starts one control process serving every switch through
	// control rings in Dir, with its API on Dir/control.sock.
	Control      bool
	TopologyPath string
	// PerSwitch (with Control) runs one control process per switch
	// instead, sharing the state through an etcd the fabric starts
	// (fabric_etcd.go).
	PerSwitch bool
	// Detach leaves the processes running after this process exits
	// (`testbed up`); Close still stops them.
	Detach bool
	Log    func(format string, args ...any)
}

// FabricHost is one host of a running fabric.
type FabricHost struct {
	Name      string
	NS        string
	IP        string
	GatewayIP string
	Receiver  bool
	ID        uint16
}

// Fabric is a running lab fabric.
type Fabric struct {
	Lab      *Lab
	Topo     *control.Topology
	Dir      string
	UDPPort  uint16
	Hosts    map[string]*FabricHost
	SwitchNS map[string]string
	Configs  map[string]string // switch -> config path
	Logs     map[string]string // switch -> log path
	// Topology is the fabric file the control process reads; ControlAPI its
	// API socket and ControlLog its log (Control only).
	TopologyPath string
	ControlAPI   string
	ControlLog   string
	control      *Proc
	// Controls, ControlAPIs and ControlLogs are the per-switch control
	// processes by switch, and EtcdEndpoint their etcd (PerSwitch only).
	Controls     map[string]*Proc
	ControlAPIs  map[string]string
	ControlLogs  map[string]string
	EtcdEndpoint string
	etcdPeer     string
	etcd         *Proc
	procs        map[string]*Proc
	bin          string
	// attached: a Fabric over a testbed another command brought up; Close
	// leaves it running.
	attached bool
}

func portMAC(sw, port int) string { return fmt.Sprintf("02:5c:%02x:%02x:00:01", sw, port) }
func hostMAC(h int) string        { return fmt.Sprintf("02:5d:%02x:%02x:00:02", h>>8, h&0xFF) }
func hostIP(h int) string         { return fmt.Sprintf("10.78.%d.2", h) }
func gatewayIP(h int) string      { return fmt.Sprintf("10.78.%d.1", h) }

// StartFabric builds the fabric and starts its switches. On error everything
// built so far is torn down.
func StartFabric(ctx context.Context, o FabricOptions) (f *Fabric, err error) {
	if o.Topology == nil || o.Binary == "" {
		return nil, fmt.Errorf("fabric: topology and binary are required")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.UDPPort == 0 {
		o.UDPPort = headers.DefaultUDPPort
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "sparsecast-fabric-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := Teardown(ctx, o.Prefix, nil); err != nil {
		return nil, fmt.Errorf("fabric: clearing an earlier lab: %w", err)
	}
	l, err := New(o.Prefix)
	if err != nil {
		return nil, err
	}
	l.Detach = o.Detach
	t := o.Topology
	f = &Fabric{
		Lab: l, Topo: t, Dir: o.Dir, UDPPort: o.UDPPort,
		Hosts: map[string]*FabricHost{}, SwitchNS: map[string]string{},
		Configs: map[string]string{}, Logs: map[string]string{},
		procs: map[string]*Proc{}, bin: o.Binary,
	}
	built := f // the named result is nil by the time an error return defers run
	defer func() {
		if err != nil {
			built.Close()
			f = nil
		}
	}()
	logf("== building fabric: %d switches, %d links, %d hosts", len(t.Switches), len(t.Links), len(t.Hosts))
	for _, sw := range t.Switches {
		if f.SwitchNS[sw.Name], err = l.AddNamespace(ctx, sw.Name); err != nil {
			return nil, err
		}
	}
	for _, lk := range t.Links {
		a, b := t.Switches[lk.ASw], t.Switches[lk.BSw]
		if err := l.AddVeth(ctx,
			Link{NS: f.SwitchNS[a.Name], Dev: a.Ports[lk.APort].Name, MAC: portMAC(lk.ASw, lk.APort)},
			Link{NS: f.SwitchNS[b.Name], Dev: b.Ports[lk.BPort].Name, MAC: portMAC(lk.BSw, lk.BPort)}); err != nil {
			return nil, err
		}
	}
	for hi, h := range t.Hosts {
		sw := t.Switches[h.Switch]
		ns, err := l.AddNamespace(ctx, h.Name)
		if err != nil {
			return nil, err
		}
		fh := &FabricHost{Name: h.Name, NS: ns, IP: hostIP(hi), GatewayIP: gatewayIP(hi), Receiver: h.Receiver, ID: h.ID}
		f.Hosts[h.Name] = fh
		swNS, port := f.SwitchNS[sw.Name], sw.Ports[h.Port].Name
		if err := l.AddVeth(ctx, Link{NS: ns, Dev: "eth0", MAC: hostMAC(hi)}, Link{NS: swNS, Dev: port, MAC: portMAC(h.Switch, h.Port)}); err != nil {
			return nil, err
		}
		for _, step := range []func() error{
			func() error { return l.AddAddr(ctx, ns, "eth0", fh.IP+"/24") },
			func() error { return l.DisableTxOffload(ctx, ns, "eth0") },
			func() error { return l.Up(ctx, ns, "eth0") },
			func() error { return l.AddNeighbor(ctx, ns, "eth0", fh.GatewayIP, portMAC(h.Switch, h.Port)) },
			func() error { return l.AddDefaultRoute(ctx, ns, "eth0", fh.GatewayIP) },
		} {
			if err := step(); err != nil {
				return nil, err
			}
		}
	}
	for si, sw := range t.Switches {
		for _, p := range sw.Ports {
			if err := l.Up(ctx, f.SwitchNS[sw.Name], p.Name); err != nil {
				return nil, err
			}
		}
		cfg, err := fabricSwitchConfig(t, si, o)
		if err != nil {
			return nil, err
		}
		if o.Control {
			cfg.ControlRing = filepath.Join(o.Dir, "sparsecast-"+sw.Name+".ring")
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(o.Dir, sw.Name+".yaml")
		if err := os.WriteFile(path, out, 0o644); err != nil {
			return nil, err
		}
		if _, err := dataplane.LoadConfig(path); err != nil {
			return nil, fmt.Errorf("fabric: generated config for %s does not load: %w", sw.Name, err)
		}
		f.Configs[sw.Name] = path
	}
	logf("== starting %d switches", len(t.Switches))
	for _, sw := range t.Switches {
		if err := f.StartSwitch(ctx, sw.Name); err != nil {
			return nil, err
		}
	}
	if o.Control {
		if o.TopologyPath == "" {
			return nil, fmt.Errorf("fabric: a control process needs the topology's file (TopologyPath)")
		}
		f.TopologyPath = o.TopologyPath
		if o.PerSwitch {
			if err := f.startPerSwitchControls(ctx, logf); err != nil {
				return nil, err
			}
			return f, nil
		}
		f.ControlAPI = filepath.Join(o.Dir, "control.sock")
		f.ControlLog = filepath.Join(o.Dir, "control.log")
		logf("== starting the control process")
		if err := f.StartControl(ctx); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// StartControl (re)starts the control process and waits until every
// switch has applied a table it pushed.
func (f *Fabric) StartControl(ctx context.Context) error {
	lf, err := os.OpenFile(f.ControlLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	// The control process needs no namespace of its own: it meets the
	// switches only at their ring files.
	// Its groups are kept in the fabric's directory, so a restarted control
	// (StopControl, then StartControl) finds them.
	p, err := f.Lab.Start("", "control", lf, lf, f.bin, "control", "run", "--topology", f.TopologyPath,
		"--ring-dir", f.Dir, "--api", "unix:"+f.ControlAPI, "--state-dir", f.ControlStateDir())
	if err != nil {
		return err
	}
	f.control = p
	deadline := time.Now().Add(60 * time.Second)
	for _, sw := range f.Topo.Switches {
		for {
			gen, err := f.AppliedGeneration(sw.Name)
			if err == nil && gen > 0 {
				break
			}
			if p.Exited() || time.Now().After(deadline) {
				return fmt.Errorf("fabric: switch %s applied no table from control (see %s)", sw.Name, f.ControlLog)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// ControlStateDir is where the control process keeps its groups.
func (f *Fabric) ControlStateDir() string { return filepath.Join(f.Dir, "control-state") }

// StopControl stops the control process (SIGKILL with kill true).
func (f *Fabric) StopControl(kill bool) error {
	if f.control == nil {
		return fmt.Errorf("fabric: no control process")
	}
	p := f.control
	f.control = nil
	if kill {
		return p.Stop(0)
	}
	return p.Stop(2 * time.Second)
}

// AppliedGeneration reads the generation a switch last applied from its
// ring file's header.
func (f *Fabric) AppliedGeneration(sw string) (uint64, error) {
	rf, err := ffi.OpenRingFile(filepath.Join(f.Dir, "sparsecast-"+sw+".ring"), 0)
	if err != nil {
		return 0, err
	}
	defer rf.Close()
	return rf.AppliedGeneration(), nil
}

// StartSwitch (re)starts one switch process and waits until it has opened
// its ports.
func (f *Fabric) StartSwitch(ctx context.Context, name string) error {
	logPath := filepath.Join(f.Dir, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	p, err := f.Lab.Start(f.SwitchNS[name], "switch "+name, lf, lf, f.bin, "switch", "run", "--config", f.Configs[name])
	if err != nil {
		return err
	}
	f.procs[name] = p
	f.Logs[name] = logPath
	nports := len(f.Topo.Switches[f.Topo.SwitchIndex(name)].Ports)
	if err := waitSwitchPorts(ctx, f.SwitchNS[name], nports, p, 15*time.Second); err != nil {
		return fmt.Errorf("fabric: switch %s: %w (see %s)", name, err, logPath)
	}
	return nil
}

// StopSwitch stops one switch process (SIGKILL with kill true).
func (f *Fabric) StopSwitch(name string, kill bool) error {
	p := f.procs[name]
	if p == nil {
		return fmt.Errorf("fabric: switch %s is not running", name)
	}
	delete(f.procs, name)
	if kill {
		return p.Stop(0)
	}
	return p.Stop(2 * time.Second)
}

// Close stops every process and removes the fabric's namespaces (but for a
// Fabric attached to a running testbed, which stays up).
func (f *Fabric) Close() error {
	if f.attached {
		f.Lab.Release()
		return nil
	}
	return f.Lab.Close()
}

// LabRxRing is the AF_PACKET receive ring of every lab switch port. Labs run
// at a few thousand packets per second and are judged on latency (failover's
// 1 ms repair): TPACKET_V2 hands each frame over as it arrives, where V3
// holds it in an open block for up to its 1 ms retire timeout per hop
// (dataplane/afpacket's doc.go has the measurements).
const LabRxRing = "v2"

// fabricSwitchConfig renders one switch's configuration: ports in topology
// order, neighbours' MACs and (for hosts) IPs, and control's routes with
// their backups, grouped by (primary, backup) into ID ranges.
func fabricSwitchConfig(t *control.Topology, si int, o FabricOptions) (*dataplane.Config, error) {
	sw := t.Switches[si]
	// A lab runs many switches on one machine: smaller pools and
	// aggregation tables than a white box's defaults start them quickly.
	cfg := &dataplane.Config{Name: sw.Name, UDPPort: o.UDPPort, PollMode: dataplane.PollAdaptive, MetricsAddr: "127.0.0.1:9470",
		Buffers: 2048, Feedback: dataplane.FeedbackConfig{Aggregate: o.Aggregate, Streams: 64, ReceiversPerStream: 256}}
	if o.Probes {
		// A lab runs a dozen switch and host processes on two shared
		// cores: under a stream, a switch can be starved for a few
		// hundred milliseconds and its probes arrive late or not at all.
		// So the lab probes every 20 ms, declares a link down after 10
		// silent intervals or past 50% probe loss, and reports it degraded
		// from 1%; a link taken down (`ip link set down`) is caught by the
		// carrier watcher within a millisecond anyway. A switch on
		// dedicated cores keeps the defaults (1 ms, 3 misses, 10%).
		cfg.Probe = dataplane.ProbeConfig{Interval: 20 * time.Millisecond, Miss: 10, Window: 50, DegradedLoss: 0.01, DownLoss: 0.5}
	}
	for _, p := range sw.Ports {
		pc := dataplane.PortConfig{Name: p.Name, Type: "afpacket", Iface: p.Name, RxRing: LabRxRing}
		switch {
		case p.Link >= 0:
			pc.NeighborMAC = portMAC(p.Peer, p.PeerPort)
			pc.Probe = o.Probes
		case p.Host >= 0:
			pc.NeighborMAC = hostMAC(p.Host)
			pc.NeighborIP = hostIP(p.Host)
		}
		if fc, ok := o.Faults[sw.Name+":"+p.Name]; ok {
			pc.Fault = fc
		}
		cfg.Ports = append(cfg.Ports, pc)
	}
	tables, err := control.ComputeTables(t, sw.Name, nil)
	if err != nil {
		return nil, err
	}
	type pair struct{ p, b uint8 }
	groups := map[pair][]uint16{}
	for _, r := range tables.Routes {
		if r.Primary == control.NoPort {
			continue
		}
		k := pair{r.Primary, r.Backup}
		groups[k] = append(groups[k], r.Receiver)
	}
	keys := make([]pair, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].p < keys[j].p || keys[i].p == keys[j].p && keys[i].b < keys[j].b })
	for _, k := range keys {
		ids := groups[k]
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		e := dataplane.RouteEntry{Receivers: headers.FormatIDSet(ids), Port: sw.Ports[k.p].Name}
		if k.b != control.NoPort {
			e.Backup = sw.Ports[k.b].Name
		}
		cfg.Routes = append(cfg.Routes, e)
	}
	return cfg, nil
}

// GatewayAddr returns "ip:port" of a host's gateway, where it sends SMH.
func (f *Fabric) GatewayAddr(host string) string {
	return net.JoinHostPort(f.Hosts[host].GatewayIP, fmt.Sprint(f.UDPPort))
}

// ListenAddr returns "ip:port" a receiver host listens on.
func (f *Fabric) ListenAddr(host string) string {
	return net.JoinHostPort(f.Hosts[host].IP, fmt.Sprint(f.UDPPort))
}

// Receivers lists receiver hosts by ID.
func (f *Fabric) Receivers() []*FabricHost {
	var r []*FabricHost
	for _, h := range f.Hosts {
		if h.Receiver {
			r = append(r, h)
		}
	}
	sort.Slice(r, func(i, j int) bool { return r[i].ID < r[j].ID })
	return r
}

// ReceiverIDs formats the receiver IDs of hosts as an ID list.
func ReceiverIDs(hs []*FabricHost) string {
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = fmt.Sprint(h.ID)
	}
	return strings.Join(ids, ",")
}
