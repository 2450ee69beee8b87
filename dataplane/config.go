// Switch configuration, read from YAML (`sparsecast switch run --config`).
// Until the control process pushes tables, the route table comes from here.
package dataplane

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sparsecast/sparsecast/headers"
)

// PollMode picks how workers wait for traffic.
type PollMode string

const (
	// PollBusy spins on the rx queues forever: a dedicated core per worker.
	PollBusy PollMode = "busy"
	// PollAdaptive spins briefly, then blocks in poll(2) on the ports'
	// descriptors until traffic returns (VPP's interrupt mode); for labs
	// where many processes share few cores.
	PollAdaptive PollMode = "adaptive"
)

// Config is a switch's configuration file.
type Config struct {
	Name     string   `yaml:"name"`
	UDPPort  uint16   `yaml:"udp_port"`
	PollMode PollMode `yaml:"poll_mode"`
	// SpinBeforeBlock is how long an adaptive worker keeps polling idle
	// ports before it blocks in poll(2) (default 50µs, 0-10ms). 0 blocks
	// after one empty round: what a fabric of dozens of switches in one
	// process on two cores wants (the in-memory bench fabrics), where
	// spinning only takes the cores the other switches need.
	SpinBeforeBlock *time.Duration `yaml:"spin_before_block"`
	Workers         int            `yaml:"workers"`
	CPUs            []int          `yaml:"cpus"`
	Buffers         int            `yaml:"buffers"`
	BufferSize      int            `yaml:"buffer_size"`
	QueueDepth      int            `yaml:"queue_depth"`
	MetricsAddr     string         `yaml:"metrics_addr"`
	// Probes between neighbouring switches (ports with probe: true).
	Probe ProbeConfig `yaml:"probe"`
	// Feedback aggregation (docs/feedback.md).
	Feedback FeedbackConfig `yaml:"feedback"`
	// SwitchID is this switch's ID in the receiver ID space: the Reporter
	// ID of the feedback it aggregates or generates (default 0xFFFF).
	SwitchID *uint16      `yaml:"switch_id"`
	Ports    []PortConfig `yaml:"ports"`
	// Routes are the route entries a program set, or that yaml.v3 decoded
	// from a routes: list LoadConfig's line parser does not read. LoadConfig
	// keeps a plain list (one-line flow mappings, or block mappings of one
	// key a line: what README shows and yaml.Marshal writes) and the
	// routes_file compactly instead (dataplane/routes.go): those entries
	// are not in Routes. RouteEntries counts all, TablesFromConfig applies
	// all.
	Routes []RouteEntry `yaml:"routes"`
	// RoutesFile names a file of route entries, one "RECEIVERS PORT
	// [BACKUP]" per line (relative to the config's directory): for route
	// sets of millions of entries, which it reads at tens of MB/s in
	// constant memory. Its entries come after the routes: list's.
	RoutesFile string       `yaml:"routes_file"`
	Groups     []GroupEntry `yaml:"groups"`
	// routeSets are the routes read compactly: the routes: list, then the
	// routes file.
	routeSets []*routeSet
	// ControlRing is the path of the control ring file shared with the
	// control process (docs/control.md), conventionally
	// /run/sparsecast/sparsecast-<name>.ring (docs/control.md: a directory of
	// its user's); empty runs without control.
	ControlRing string `yaml:"control_ring"`
	// ControlPollMode is how the ring applier waits for control's batches:
	// adaptive (default) spins briefly, then sleeps 50 µs at a time, which
	// suits a lab of many switches on few cores; busy spins on a core of
	// its own, as busy-polling workers do, so an update is published a few
	// microseconds after control hands it over.
	ControlPollMode PollMode `yaml:"control_poll_mode"`
	// ControlCPU pins a busy ring applier's thread to a CPU (one that no
	// worker uses, on a real switch an isolated core).
	ControlCPU *int `yaml:"control_cpu"`
	// EAL is DPDK's EAL command line for dpdk ports (default: no hugepages,
	// no PCI; see dpdkport.DefaultEAL).
	EAL []string `yaml:"eal_args"`
}

// ReloadCounters count the reloads of a running switch's routes and groups
// from its config (SIGHUP): applied, or rejected because the file did not
// load or build tables (the switch keeps its tables and logs the error).
type ReloadCounters struct{ Applied, Rejected atomic.Uint64 }

// GroupEntry is a group a sender may address with SMH's group encoding; the
// first switch expands it into its members.
type GroupEntry struct {
	ID      uint32 `yaml:"id"`
	Members string `yaml:"members"`
}

// PortConfig describes one port.
type PortConfig struct {
	Name string `yaml:"name"`
	// Type is "afpacket" (veth, NICs), "dpdk" (a DPDK device; binaries
	// built with `make build-dpdk`) or "mem" (in-process, tests only).
	Type  string `yaml:"type"`
	Iface string `yaml:"iface"`
	// Device is a dpdk port's DPDK device: a vdev with its arguments
	// ("net_af_packet0,iface=veth1") or a PCI address.
	Device string `yaml:"device"`
	// NeighborMAC and NeighborIP, when set, become the destination MAC and IP
	// of every frame sent on this port (the host or switch at the far end).
	NeighborMAC string      `yaml:"neighbor_mac"`
	NeighborIP  string      `yaml:"neighbor_ip"`
	Fault       FaultConfig `yaml:"fault"`
	// Probe sends link probes on this port and watches the neighbour's:
	// set it on ports that face another sparsecast switch.
	Probe bool `yaml:"probe"`
	// RxRing is an afpacket port's receive ring: "v3" (the default) hands
	// frames over in blocks, cheap at high rates but holding each frame up
	// to the 1 ms block timeout at low rates; "v2" hands each frame over as
	// soon as it arrives, for latency-bound setups at modest rates (the
	// veth labs). See dataplane/afpacket's RxRing.
	RxRing string `yaml:"rx_ring"`
	// Tx is how an afpacket port transmits: "ring" (the default) copies
	// each frame into a PACKET_TX_RING and sends a burst with one system
	// call, the kernel copying each frame into its skb; "ring-zerocopy" is
	// the same with the skb pointing into the ring instead (cheaper where
	// a NIC's driver sends from memory, dearer on veth); "sendmmsg" hands
	// a burst to sendmmsg(2), one message per frame. See dataplane/afpacket's
	// TxMode.
	Tx string `yaml:"tx"`
	// TxQdiscBypass sends an afpacket port's frames straight to the
	// driver, past the interface's queueing discipline
	// (PACKET_QDISC_BYPASS): no traffic shaping, and tcpdump on this end
	// of the link no longer sees them. Off by default.
	TxQdiscBypass bool `yaml:"tx_qdisc_bypass"`
}

// FeedbackConfig tunes feedback aggregation (docs/feedback.md).
type FeedbackConfig struct {
	// Aggregate turns aggregation on (default true); off, feedback is
	// forwarded unchanged towards the source.
	Aggregate *bool `yaml:"aggregate"`
	// Streams bounds the streams with state; ReceiversPerStream the
	// receivers tracked per stream (defaults 1024 and 1024).
	Streams            int `yaml:"streams"`
	ReceiversPerStream int `yaml:"receivers_per_stream"`
	// AckTimeout: how long laggards may hold the aggregate ACK back before
	// it goes up without them: they are its exceptions (default 20ms).
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// NackWindow: NACKs within a range already asked for are suppressed
	// for this long, or until its repair passes (default 5ms).
	NackWindow time.Duration `yaml:"nack_window"`
	// NackRanges bounds the NACK ranges remembered per stream while their
	// repairs are outstanding (default 32; when full the oldest goes,
	// counted as sparsecast_switch_feedback_total{type="nack",action="evicted"}).
	NackRanges int `yaml:"nack_ranges"`
	// CNPInterval: at most one CNP per stream per interval goes up
	// (default 100us).
	CNPInterval time.Duration `yaml:"cnp_interval"`
	// CNPQueueDepth: a DATA copy queued behind more packets than this gets
	// C set and makes the switch send a CNP (default 3/4 of queue_depth).
	CNPQueueDepth int `yaml:"cnp_queue_depth"`
	// IdleTimeout: a stream's state that saw neither DATA nor feedback for
	// this long is freed (default 30s; counted as
	// sparsecast_switch_feedback_streams_expired_total).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// Aggregating tells whether aggregation is on.
func (f *FeedbackConfig) Aggregating() bool { return f.Aggregate == nil || *f.Aggregate }

func (f *FeedbackConfig) validate(queueDepth int) error {
	if f.Streams == 0 {
		f.Streams = 1024
	}
	if f.ReceiversPerStream == 0 {
		f.ReceiversPerStream = 1024
	}
	if f.AckTimeout == 0 {
		f.AckTimeout = 20 * time.Millisecond
	}
	if f.NackWindow == 0 {
		f.NackWindow = 5 * time.Millisecond
	}
	if f.NackRanges == 0 {
		f.NackRanges = 32
	}
	if f.CNPInterval == 0 {
		f.CNPInterval = 100 * time.Microsecond
	}
	if f.CNPQueueDepth == 0 {
		f.CNPQueueDepth = queueDepth * 3 / 4
	}
	if f.IdleTimeout == 0 {
		f.IdleTimeout = 30 * time.Second
	}
	switch {
	case f.Streams < 1 || f.Streams > 1<<20:
		return fmt.Errorf("feedback.streams %d: want 1-%d", f.Streams, 1<<20)
	case f.ReceiversPerStream < 1 || f.ReceiversPerStream > 65536:
		return fmt.Errorf("feedback.receivers_per_stream %d: want 1-65536", f.ReceiversPerStream)
	case f.NackRanges < 1 || f.NackRanges > 4096:
		return fmt.Errorf("feedback.nack_ranges %d: want 1-4096", f.NackRanges)
	case f.AckTimeout < 0 || f.AckTimeout > time.Minute, f.NackWindow < 0 || f.NackWindow > time.Minute,
		f.CNPInterval < 0 || f.CNPInterval > time.Minute:
		return fmt.Errorf("feedback timers %v/%v/%v: want 0-1m", f.AckTimeout, f.NackWindow, f.CNPInterval)
	case f.IdleTimeout < time.Millisecond || f.IdleTimeout > 24*time.Hour:
		return fmt.Errorf("feedback.idle_timeout %v: want 1ms-24h", f.IdleTimeout)
	case f.CNPQueueDepth < 1 || f.CNPQueueDepth > queueDepth:
		return fmt.Errorf("feedback.cnp_queue_depth %d: want 1-%d (queue_depth)", f.CNPQueueDepth, queueDepth)
	}
	return nil
}

// ProbeConfig tunes failure detection by probes (docs/control.md).
type ProbeConfig struct {
	// Interval between probes on a port (default 1ms).
	Interval time.Duration `yaml:"interval"`
	// Miss is how many intervals without a probe make a link down (default 3).
	Miss int `yaml:"miss"`
	// Window is how many probe intervals one loss measurement spans
	// (default 200).
	Window int `yaml:"window"`
	// DegradedLoss reports a link degraded above this probe loss (default
	// 0.01); DownLoss treats it as down above this one (default 0.1).
	DegradedLoss float64 `yaml:"degraded_loss"`
	DownLoss     float64 `yaml:"down_loss"`
}

// FaultConfig injects loss on a port's egress: this machine has no netem.
type FaultConfig struct {
	// Loss is the probability that a loss event starts at a frame (0-1).
	Loss float64 `yaml:"loss" json:"loss"`
	// Burst is how many consecutive frames one loss event drops (default 1).
	Burst int `yaml:"burst" json:"burst"`
	// Seed makes the loss pattern repeatable (default: derived from the port).
	Seed uint64 `yaml:"seed" json:"seed,omitempty"`
}

// validate fills the default burst and checks the fields (a port's
// configuration and a runtime fault, Switch.SetFault, alike).
func (f *FaultConfig) validate() error {
	if f.Loss < 0 || f.Loss > 1 || f.Loss != f.Loss {
		return fmt.Errorf("fault.loss %v: want 0-1", f.Loss)
	}
	if f.Burst == 0 {
		f.Burst = 1
	}
	if f.Burst < 1 || f.Burst > 1<<16 {
		return fmt.Errorf("fault.burst %d: want 1-65536", f.Burst)
	}
	return nil
}

// RouteEntry maps receiver IDs ("1-4,7") to an egress port by name, with an
// optional backup port for fast reroute.
type RouteEntry struct {
	Receivers string `yaml:"receivers"`
	Port      string `yaml:"port"`
	Backup    string `yaml:"backup"`
}

// MarshalYAML writes a route entry as a one-line flow mapping, `{receivers:
// "1-4", port: p0, backup: p1}`: one line per entry, the form README shows,
// which LoadConfig reads without yaml.v3 (dataplane/routes.go).
func (r RouteEntry) MarshalYAML() (any, error) {
	type entry RouteEntry // without this method
	var n yaml.Node
	if err := n.Encode(entry(r)); err != nil {
		return nil, err
	}
	n.Style = yaml.FlowStyle
	return &n, nil
}

// LoadConfig reads and validates a YAML config file; unknown keys are errors.
// A relative routes_file is read from the config's directory.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := decodeConfig(data, path, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig is LoadConfig for a config already in memory (a relative
// routes_file is read from the current directory).
func ParseConfig(data []byte) (*Config, error) { return decodeConfig(data, "", true) }

// decodeConfig decodes and validates a config. With flowRoutes, a plain
// routes: list is read by its own line parser and the rest of the document
// by yaml.v3 (dataplane/routes.go); at any doubt, or without flowRoutes (the
// baseline that tests and benchmarks compare with), yaml.v3 reads it all.
func decodeConfig(data []byte, path string, flowRoutes bool) (*Config, error) {
	var c Config
	if rest, set, line, ok := splitFlowRoutes(data); flowRoutes && ok && routesKeyIsTopLevel(rest, line) {
		if err := strictDecode(rest, &c); err != nil {
			return nil, err
		}
		c.routeSets = append(c.routeSets, set)
	} else if err := strictDecode(data, &c); err != nil {
		return nil, err
	}
	if c.RoutesFile != "" {
		p := c.RoutesFile
		if !filepath.IsAbs(p) && path != "" {
			p = filepath.Join(filepath.Dir(path), p)
		}
		set, err := loadRoutesFile(p)
		if err != nil {
			return nil, err
		}
		c.routeSets = append(c.routeSets, set)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// strictDecode decodes the first YAML document; unknown keys are errors.
func strictDecode(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(c)
}

// RouteEntries counts the route entries: Routes' and those read compactly.
func (c *Config) RouteEntries() int {
	n := len(c.Routes)
	for _, s := range c.routeSets {
		n += s.entries
	}
	return n
}

// spinBeforeBlock is SpinBeforeBlock or its default (a config that was not
// validated).
func (c *Config) spinBeforeBlock() time.Duration {
	if c.SpinBeforeBlock == nil {
		return defaultSpinBeforeBlock
	}
	return *c.SpinBeforeBlock
}

// defaultPollMode fills an empty poll mode with adaptive (the lab's, many
// processes to a core) and checks a given one.
func defaultPollMode(m *PollMode, field string) error {
	switch *m {
	case "":
		*m = PollAdaptive
	case PollBusy, PollAdaptive:
	default:
		return fmt.Errorf("%s %q: want busy or adaptive", field, *m)
	}
	return nil
}

// Validate fills defaults and checks every field, so that a bad config fails
// at start with a message naming the field, never later on the packet path.
func (c *Config) Validate() error {
	if c.UDPPort == 0 {
		c.UDPPort = headers.DefaultUDPPort
	}
	if err := defaultPollMode(&c.PollMode, "poll_mode"); err != nil {
		return err
	}
	if err := defaultPollMode(&c.ControlPollMode, "control_poll_mode"); err != nil {
		return err
	}
	if c.SpinBeforeBlock == nil {
		d := defaultSpinBeforeBlock
		c.SpinBeforeBlock = &d
	}
	if d := *c.SpinBeforeBlock; d < 0 || d > 10*time.Millisecond {
		return fmt.Errorf("spin_before_block %v: want 0-10ms", d)
	}
	if cpu := c.ControlCPU; cpu != nil {
		if c.ControlPollMode != PollBusy {
			return fmt.Errorf("control_cpu %d: only a busy ring applier (control_poll_mode: busy) is pinned", *cpu)
		}
		if *cpu < 0 || *cpu >= runtime.NumCPU() {
			return fmt.Errorf("control_cpu: CPU %d does not exist (this machine has %d)", *cpu, runtime.NumCPU())
		}
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.Workers < 0 || c.Workers > 64 {
		return fmt.Errorf("workers %d: want 1-64", c.Workers)
	}
	for _, cpu := range c.CPUs {
		if cpu < 0 || cpu >= runtime.NumCPU() {
			return fmt.Errorf("cpus: CPU %d does not exist (this machine has %d)", cpu, runtime.NumCPU())
		}
	}
	if c.Buffers == 0 {
		c.Buffers = 8192
	}
	if c.BufferSize == 0 {
		c.BufferSize = 2048 + Headroom
	}
	if c.QueueDepth == 0 {
		c.QueueDepth = 1024
	}
	if c.Buffers < 2*BurstSize || c.Buffers > 1<<22 {
		return fmt.Errorf("buffers %d: want %d-%d", c.Buffers, 2*BurstSize, 1<<22)
	}
	if c.BufferSize < Headroom+128 || c.BufferSize > 65536+Headroom {
		return fmt.Errorf("buffer_size %d: want %d-%d", c.BufferSize, Headroom+128, 65536+Headroom)
	}
	if c.QueueDepth < BurstSize || c.QueueDepth > 1<<20 {
		return fmt.Errorf("queue_depth %d: want %d-%d", c.QueueDepth, BurstSize, 1<<20)
	}
	if err := c.Probe.validate(); err != nil {
		return err
	}
	if err := c.Feedback.validate(c.QueueDepth); err != nil {
		return err
	}
	if len(c.Ports) == 0 {
		return fmt.Errorf("no ports")
	}
	if len(c.Ports) > MaxPorts {
		return fmt.Errorf("%d ports: at most %d", len(c.Ports), MaxPorts)
	}
	seen := map[string]bool{}
	// Two ports on one interface or device would each take half of its
	// frames and send on the same queue.
	ifaces := map[string]string{}
	for i := range c.Ports {
		p := &c.Ports[i]
		if p.Name == "" {
			return fmt.Errorf("ports[%d]: no name", i)
		}
		if seen[p.Name] {
			return fmt.Errorf("ports[%d]: duplicate name %q", i, p.Name)
		}
		seen[p.Name] = true
		switch p.Type {
		case "", "afpacket":
			p.Type = "afpacket"
			if p.Iface == "" {
				p.Iface = p.Name
			}
		case "mem":
		case "dpdk":
			if p.Device == "" {
				return fmt.Errorf("port %s: type dpdk needs a device (e.g. net_null0, or a PCI address)", p.Name)
			}
		default:
			return fmt.Errorf("port %s: type %q: want afpacket, dpdk or mem", p.Name, p.Type)
		}
		if dev := p.Iface + "\x00" + p.Device; p.Type != "mem" {
			if other, dup := ifaces[dev]; dup {
				what := "interface " + p.Iface
				if p.Type == "dpdk" {
					what = "device " + p.Device
				}
				return fmt.Errorf("port %s: %s is already port %s's: one port per interface", p.Name, what, other)
			}
			ifaces[dev] = p.Name
		}
		if p.Device != "" && p.Type != "dpdk" {
			return fmt.Errorf("port %s: device is for type dpdk ports", p.Name)
		}
		switch {
		case p.RxRing != "" && p.Type != "afpacket":
			return fmt.Errorf("port %s: rx_ring is for type afpacket ports", p.Name)
		case p.RxRing != "" && p.RxRing != "v2" && p.RxRing != "v3":
			return fmt.Errorf("port %s: rx_ring %q: want v2 or v3", p.Name, p.RxRing)
		case (p.Tx != "" || p.TxQdiscBypass) && p.Type != "afpacket":
			return fmt.Errorf("port %s: tx and tx_qdisc_bypass are for type afpacket ports", p.Name)
		case p.Tx != "" && p.Tx != "ring" && p.Tx != "ring-zerocopy" && p.Tx != "sendmmsg":
			return fmt.Errorf("port %s: tx %q: want ring, ring-zerocopy or sendmmsg", p.Name, p.Tx)
		}
		if p.NeighborMAC != "" {
			if _, err := net.ParseMAC(p.NeighborMAC); err != nil {
				return fmt.Errorf("port %s: neighbor_mac: %w", p.Name, err)
			}
		}
		if p.NeighborIP != "" && net.ParseIP(p.NeighborIP) == nil {
			return fmt.Errorf("port %s: neighbor_ip %q is not an IP address", p.Name, p.NeighborIP)
		}
		if err := p.Fault.validate(); err != nil {
			return fmt.Errorf("port %s: %w", p.Name, err)
		}
	}
	for i, r := range c.Routes {
		if !seen[r.Port] {
			return fmt.Errorf("routes[%d]: unknown port %q", i, r.Port)
		}
		if r.Backup != "" && (!seen[r.Backup] || r.Backup == r.Port) {
			return fmt.Errorf("routes[%d]: backup %q must be another configured port", i, r.Backup)
		}
		if _, err := headers.ParseIDSet(r.Receivers); err != nil {
			return fmt.Errorf("routes[%d]: %w", i, err)
		}
	}
	for _, s := range c.routeSets {
		if err := s.resolve(c.Ports); err != nil {
			return err
		}
	}
	for i, g := range c.Groups {
		if _, err := headers.ParseIDSet(g.Members); err != nil {
			return fmt.Errorf("groups[%d] (id %d): %w", i, g.ID, err)
		}
	}
	if err := ValidateControlRing(c.ControlRing); err != nil {
		return fmt.Errorf("control_ring: %w", err)
	}
	return nil
}

// ValidateControlRing checks a control ring path (empty: no control): an
// absolute, clean path that is not a directory.
func ValidateControlRing(path string) error {
	switch {
	case path == "":
		return nil
	case strings.ContainsRune(path, 0):
		return fmt.Errorf("%q: contains a NUL byte", path)
	case !filepath.IsAbs(path):
		return fmt.Errorf("%q: want an absolute path (e.g. /run/sparsecast/sparsecast-<name>.ring)", path)
	case filepath.Clean(path) != path:
		return fmt.Errorf("%q: want the clean path %q", path, filepath.Clean(path))
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%q is a directory", path)
	}
	return nil
}

// PortIndex returns the index of the named port, or -1.
func (c *Config) PortIndex(name string) int {
	for i, p := range c.Ports {
		if strings.EqualFold(p.Name, name) {
			return i
		}
	}
	return -1
}

func (p *ProbeConfig) validate() error {
	if p.Interval == 0 {
		p.Interval = time.Millisecond
	}
	if p.Miss == 0 {
		p.Miss = 3
	}
	if p.Window == 0 {
		p.Window = 200
	}
	if p.DegradedLoss == 0 {
		p.DegradedLoss = 0.01
	}
	if p.DownLoss == 0 {
		p.DownLoss = 0.1
	}
	switch {
	case p.Interval < 100*time.Microsecond || p.Interval > 10*time.Second:
		return fmt.Errorf("probe.interval %v: want 100us-10s", p.Interval)
	case p.Miss < 1 || p.Miss > 1000:
		return fmt.Errorf("probe.miss %d: want 1-1000", p.Miss)
	case p.Window < 10 || p.Window > 1<<20:
		return fmt.Errorf("probe.window %d: want 10-%d", p.Window, 1<<20)
	case p.DegradedLoss <= 0 || p.DegradedLoss >= 1 || p.DownLoss <= p.DegradedLoss || p.DownLoss > 1:
		return fmt.Errorf("probe loss thresholds %v/%v: want 0 < degraded_loss < down_loss <= 1", p.DegradedLoss, p.DownLoss)
	}
	return nil
}
