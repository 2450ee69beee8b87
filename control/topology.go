// The fabric description. In: a YAML file naming switches, the links between
// their ports and the hosts on leaf ports; out: a validated Topology with
// every switch's port order and every receiver's ID.
//
//	switches:
//	  - {name: spine1, role: spine}
//	  - {name: leaf1, role: leaf, id: 11, ports: [p1, p2, h1, h2]}
//	links:
//	  - {a: spine1:p1, b: leaf1:p1}
//	hosts:
//	  - {name: h1, attach: leaf1:h1, id: 1, ips: [10.0.1.1], mac: "02:00:00:00:01:01"}
//	  - {name: tx, attach: leaf1:h2, receiver: false}
//
// Roles are leaf, spine, agg and core: a leaf-spine fabric uses the first
// two, a 3-tier fat-tree leaf (edge), agg and core. Hosts attach to leaves
// only. Every host is a receiver unless it says receiver: false (a sender
// only); a receiver without an id gets one as described at assignIDs.
//
// Port order. The index of a port in route entries (and in the dataplane's
// ring records) is its position in the switch's port order, which must be the
// order of the ports in that switch's dataplane configuration. If a switch
// lists its ports, that list is the order, and links and hosts may use only
// those names. Otherwise the order is first appearance in the file: links in
// file order (a before b), then hosts in file order.
package control

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sparsecast/sparsecast/headers"
)

// Role is a switch's place in the fabric.
type Role string

// Roles.
const (
	RoleLeaf  Role = "leaf"
	RoleSpine Role = "spine"
	RoleAgg   Role = "agg"
	RoleCore  Role = "core"
)

// MaxSwitchPorts is the most ports a switch may have: port indexes are one
// byte and NoPort (0xFF) is reserved.
const MaxSwitchPorts = NoPort

// LinkID identifies a link between two switch ports: its index in the
// topology's links, in file order.
type LinkID int

// topologyFile is the YAML schema.
type topologyFile struct {
	Switches []switchFile `yaml:"switches"`
	Links    []linkFile   `yaml:"links"`
	Hosts    []hostFile   `yaml:"hosts"`
}

type switchFile struct {
	Name  string   `yaml:"name"`
	Role  Role     `yaml:"role"`
	ID    *int     `yaml:"id"`
	Ports []string `yaml:"ports"`
}

type linkFile struct {
	A string `yaml:"a"`
	B string `yaml:"b"`
}

type hostFile struct {
	Name     string   `yaml:"name"`
	Attach   string   `yaml:"attach"`
	ID       *int     `yaml:"id"`
	Receiver *bool    `yaml:"receiver"`
	IPs      []string `yaml:"ips"`
	MAC      string   `yaml:"mac"`
}

// Topology is a validated fabric. It is immutable after LoadTopology.
type Topology struct {
	Switches []Switch
	Links    []Link
	Hosts    []Host

	byName map[string]int
	// receivers holds host indexes of receivers, ascending by ID; a
	// receiver's rank is its position here.
	receivers []int
}

// Switch is one switch of the fabric.
type Switch struct {
	Name string
	Role Role
	// ID is the optional switch ID (HasID false: none given).
	ID    uint16
	HasID bool
	// Ports is the port order: Ports[i] is port index i.
	Ports []Port
}

// Port is one switch port and what is at its far end.
type Port struct {
	Name string
	// Link is the switch-to-switch link on this port, or -1.
	Link LinkID
	// Peer and PeerPort are the far switch and its port index (Link >= 0).
	Peer, PeerPort int
	// Host is the index of the host on this port, or -1.
	Host int
}

// Link is a link between two switch ports.
type Link struct {
	A, B        string // "switch:port", as written
	ASw, APort  int
	BSw, BPort  int
	Description string // "spine1:p1-leaf1:p1"
}

// Host is an endpoint on a leaf port.
type Host struct {
	Name     string
	Attach   string
	Switch   int // index in Switches
	Port     int // port index on that switch
	Receiver bool
	ID       uint16 // receiver ID (Receiver only)
	IPs      []net.IP
	MAC      net.HardwareAddr
}

// Receiver is a host with a receiver ID, as Receivers lists it.
type Receiver struct {
	ID     uint16
	Host   string
	Switch string
	Port   string
}

// LoadTopology reads and validates a fabric description.
func LoadTopology(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := ParseTopology(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseTopology parses and validates a fabric description; unknown keys are
// errors.
func ParseTopology(data []byte) (*Topology, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f topologyFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty topology")
		}
		return nil, err
	}
	return buildTopology(&f)
}

func buildTopology(f *topologyFile) (*Topology, error) {
	if len(f.Switches) == 0 {
		return nil, errors.New("no switches")
	}
	t := &Topology{byName: make(map[string]int, len(f.Switches))}
	// declared[i] maps a declared port name to its index (nil: ports are
	// added on first use).
	declared := make([]map[string]int, len(f.Switches))
	ids := map[uint16]string{}
	for i, s := range f.Switches {
		if err := checkName(s.Name); err != nil {
			return nil, fmt.Errorf("switches[%d]: %w", i, err)
		}
		if _, dup := t.byName[s.Name]; dup {
			return nil, fmt.Errorf("switches[%d]: duplicate switch name %q", i, s.Name)
		}
		switch s.Role {
		case RoleLeaf, RoleSpine, RoleAgg, RoleCore:
		case "":
			return nil, fmt.Errorf("switch %s: no role (want leaf, spine, agg or core)", s.Name)
		default:
			return nil, fmt.Errorf("switch %s: role %q: want leaf, spine, agg or core", s.Name, s.Role)
		}
		sw := Switch{Name: s.Name, Role: s.Role}
		if s.ID != nil {
			if *s.ID < 0 || *s.ID > 0xFFFF {
				return nil, fmt.Errorf("switch %s: id %d out of range 0-65535", s.Name, *s.ID)
			}
			sw.ID, sw.HasID = uint16(*s.ID), true
			if other, dup := ids[sw.ID]; dup {
				return nil, fmt.Errorf("switch %s: id %d already used by switch %s", s.Name, sw.ID, other)
			}
			ids[sw.ID] = s.Name
		}
		if s.Ports != nil {
			if len(s.Ports) > MaxSwitchPorts {
				return nil, fmt.Errorf("switch %s: %d ports, at most %d", s.Name, len(s.Ports), MaxSwitchPorts)
			}
			declared[i] = make(map[string]int, len(s.Ports))
			for j, p := range s.Ports {
				if err := checkName(p); err != nil {
					return nil, fmt.Errorf("switch %s: ports[%d]: %w", s.Name, j, err)
				}
				if _, dup := declared[i][p]; dup {
					return nil, fmt.Errorf("switch %s: port %q listed twice", s.Name, p)
				}
				declared[i][p] = j
				sw.Ports = append(sw.Ports, Port{Name: p, Link: -1, Peer: -1, PeerPort: -1, Host: -1})
			}
		}
		t.byName[s.Name] = i
		t.Switches = append(t.Switches, sw)
	}

	// port resolves "switch:port" to indexes, adding undeclared ports in
	// order of first appearance.
	usedBy := map[string]string{}
	port := func(ref, user string) (int, int, error) {
		swName, pName, ok := strings.Cut(ref, ":")
		if !ok || swName == "" || pName == "" || strings.Contains(pName, ":") {
			return 0, 0, fmt.Errorf("%q: want switch:port", ref)
		}
		si, ok := t.byName[swName]
		if !ok {
			return 0, 0, fmt.Errorf("%q: unknown switch %q", ref, swName)
		}
		if other, dup := usedBy[ref]; dup {
			return 0, 0, fmt.Errorf("port %s used twice (already by %s)", ref, other)
		}
		sw := &t.Switches[si]
		var pi int
		if declared[si] != nil {
			if pi, ok = declared[si][pName]; !ok {
				return 0, 0, fmt.Errorf("%q: switch %s has no port %q (its ports: %s)", ref, swName, pName, strings.Join(portNames(sw), ", "))
			}
		} else {
			if err := checkName(pName); err != nil {
				return 0, 0, fmt.Errorf("%q: %w", ref, err)
			}
			if len(sw.Ports) == MaxSwitchPorts {
				return 0, 0, fmt.Errorf("%q: switch %s has more than %d ports", ref, swName, MaxSwitchPorts)
			}
			pi = len(sw.Ports)
			sw.Ports = append(sw.Ports, Port{Name: pName, Link: -1, Peer: -1, PeerPort: -1, Host: -1})
		}
		usedBy[ref] = user
		return si, pi, nil
	}

	for i, l := range f.Links {
		user := fmt.Sprintf("links[%d]", i)
		as, ap, err := port(l.A, user)
		if err != nil {
			return nil, fmt.Errorf("links[%d] a: %w", i, err)
		}
		bs, bp, err := port(l.B, user)
		if err != nil {
			return nil, fmt.Errorf("links[%d] b: %w", i, err)
		}
		if as == bs {
			return nil, fmt.Errorf("links[%d]: %s-%s links switch %s to itself", i, l.A, l.B, t.Switches[as].Name)
		}
		id := LinkID(len(t.Links))
		t.Links = append(t.Links, Link{A: l.A, B: l.B, ASw: as, APort: ap, BSw: bs, BPort: bp, Description: l.A + "-" + l.B})
		t.Switches[as].Ports[ap].Link, t.Switches[as].Ports[ap].Peer, t.Switches[as].Ports[ap].PeerPort = id, bs, bp
		t.Switches[bs].Ports[bp].Link, t.Switches[bs].Ports[bp].Peer, t.Switches[bs].Ports[bp].PeerPort = id, as, ap
	}

	hostNames := map[string]bool{}
	ipOwner, macOwner := map[string]string{}, map[string]string{}
	explicit := map[uint16]string{}
	for i, h := range f.Hosts {
		if err := checkName(h.Name); err != nil {
			return nil, fmt.Errorf("hosts[%d]: %w", i, err)
		}
		if hostNames[h.Name] {
			return nil, fmt.Errorf("hosts[%d]: duplicate host name %q", i, h.Name)
		}
		hostNames[h.Name] = true
		if h.Attach == "" {
			return nil, fmt.Errorf("host %s: no attach (want leaf:port)", h.Name)
		}
		si, pi, err := port(h.Attach, "host "+h.Name)
		if err != nil {
			return nil, fmt.Errorf("host %s: attach %w", h.Name, err)
		}
		if r := t.Switches[si].Role; r != RoleLeaf {
			return nil, fmt.Errorf("host %s: attached to %s, a %s: hosts attach to leaves only", h.Name, t.Switches[si].Name, r)
		}
		host := Host{Name: h.Name, Attach: h.Attach, Switch: si, Port: pi, Receiver: h.Receiver == nil || *h.Receiver}
		if h.ID != nil {
			if !host.Receiver {
				return nil, fmt.Errorf("host %s: receiver: false with an id", h.Name)
			}
			if *h.ID < 0 || *h.ID > headers.MaxID {
				return nil, fmt.Errorf("host %s: id %d out of range 0-%d", h.Name, *h.ID, headers.MaxID)
			}
			host.ID = uint16(*h.ID)
			if other, dup := explicit[host.ID]; dup {
				return nil, fmt.Errorf("host %s: id %d already used by host %s", h.Name, host.ID, other)
			}
			explicit[host.ID] = h.Name
		}
		for _, s := range h.IPs {
			ip := net.ParseIP(s)
			if ip == nil {
				return nil, fmt.Errorf("host %s: ips: %q is not an IP address", h.Name, s)
			}
			if other, dup := ipOwner[ip.String()]; dup {
				return nil, fmt.Errorf("host %s: ip %s is already host %s's", h.Name, ip, other)
			}
			ipOwner[ip.String()] = h.Name
			host.IPs = append(host.IPs, ip)
		}
		if h.MAC != "" {
			if host.MAC, err = net.ParseMAC(h.MAC); err != nil {
				return nil, fmt.Errorf("host %s: mac: %w", h.Name, err)
			}
			if other, dup := macOwner[host.MAC.String()]; dup {
				return nil, fmt.Errorf("host %s: mac %s is already host %s's", h.Name, host.MAC, other)
			}
			macOwner[host.MAC.String()] = h.Name
		}
		t.Switches[si].Ports[pi].Host = i
		t.Hosts = append(t.Hosts, host)
	}
	if err := t.assignIDs(f.Hosts); err != nil {
		return nil, err
	}
	if err := t.checkConnected(); err != nil {
		return nil, err
	}
	return t, nil
}

// namePattern is what a switch, port or host name may be: it names files
// (ring files, configs, logs) and network namespaces, so letters, digits,
// '-', '_' and '.', starting with a letter, digit or '_', at most 64 bytes,
// and never "..".
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// CheckName says whether s is a valid name (namePattern).
func CheckName(s string) error { return checkName(s) }

func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case len(s) > 64:
		return fmt.Errorf("name %.64q...: longer than 64 bytes", s)
	case !namePattern.MatchString(s):
		return fmt.Errorf("name %q: want letters, digits, '-', '_' and '.', starting with a letter, digit or '_'", s)
	case strings.Contains(s, ".."):
		return fmt.Errorf("name %q: no \"..\"", s)
	}
	return nil
}

func portNames(sw *Switch) []string {
	names := make([]string, len(sw.Ports))
	for i, p := range sw.Ports {
		names[i] = p.Name
	}
	return names
}

// assignIDs gives every receiver without an explicit id one, keeping each
// leaf's receivers together so that SMH's block encoding (one 64-bit bitmap
// per 64-aligned block of IDs) addresses a leaf's hosts with few blocks:
//
//   - explicit ids are taken first and never move;
//   - leaves are visited in switch order; a leaf's hosts without an id (in
//     file order) get consecutive IDs starting at the first 64-aligned ID at
//     or after the end of the previous leaf's block(s) whose run of IDs is
//     free of explicit ones: with up to 64 hosts per leaf, leaf n of the
//     file (counting leaves with such hosts) gets IDs 64n, 64n+1, ...;
//   - a leaf whose hosts fit in no aligned free run gets the lowest free
//     IDs instead.
func (t *Topology) assignIDs(hosts []hostFile) error {
	var used [(headers.MaxID + 1) / 64]uint64
	isUsed := func(id int) bool { return used[id>>6]&(1<<(id&63)) != 0 }
	use := func(id int) { used[id>>6] |= 1 << (id & 63) }
	for i, h := range hosts {
		if h.ID != nil {
			use(int(t.Hosts[i].ID))
		}
	}
	free := func(base, n int) bool {
		if base+n-1 > headers.MaxID {
			return false
		}
		for id := base; id < base+n; id++ {
			if isUsed(id) {
				return false
			}
		}
		return true
	}
	block := 0 // next 64-aligned block to try
	for si := range t.Switches {
		var need []int
		for hi, h := range hosts {
			if t.Hosts[hi].Switch == si && t.Hosts[hi].Receiver && h.ID == nil {
				need = append(need, hi)
			}
		}
		if len(need) == 0 {
			continue
		}
		n := len(need)
		base := -1
		for b := block; b*64+n-1 <= headers.MaxID; b++ {
			if free(b*64, n) {
				base = b * 64
				block = b + (n+63)/64
				break
			}
		}
		next := 0
		for _, hi := range need {
			id := -1
			if base >= 0 {
				id = base + next
				next++
			} else {
				for c := 0; c <= headers.MaxID; c++ {
					if !isUsed(c) {
						id = c
						break
					}
				}
				if id < 0 {
					return fmt.Errorf("host %s: no receiver ID left (all 65536 used)", t.Hosts[hi].Name)
				}
			}
			use(id)
			t.Hosts[hi].ID = uint16(id)
		}
	}
	for hi, h := range t.Hosts {
		if h.Receiver {
			t.receivers = append(t.receivers, hi)
		}
	}
	slices.SortFunc(t.receivers, func(a, b int) int { return int(t.Hosts[a].ID) - int(t.Hosts[b].ID) })
	return nil
}

// checkConnected requires every switch to reach every other over links.
func (t *Topology) checkConnected() error {
	dist := t.bfs(0, nil)
	var lost []string
	for i, d := range dist {
		if d < 0 {
			lost = append(lost, t.Switches[i].Name)
		}
	}
	if len(lost) > 0 {
		return fmt.Errorf("fabric is disconnected: %s cannot reach %s", t.Switches[0].Name, strings.Join(lost, ", "))
	}
	return nil
}

// bfs returns every switch's hop count from switch from over the links not
// in down (-1: unreachable).
func (t *Topology) bfs(from int, down map[LinkID]bool) []int {
	dist := make([]int, len(t.Switches))
	for i := range dist {
		dist[i] = -1
	}
	dist[from] = 0
	queue := []int{from}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, p := range t.Switches[s].Ports {
			if p.Link < 0 || down[p.Link] || dist[p.Peer] >= 0 {
				continue
			}
			dist[p.Peer] = dist[s] + 1
			queue = append(queue, p.Peer)
		}
	}
	return dist
}

// SwitchIndex returns the index of the named switch, or -1.
func (t *Topology) SwitchIndex(name string) int {
	if i, ok := t.byName[name]; ok {
		return i
	}
	return -1
}

// SwitchNames returns every switch's name in file order.
func (t *Topology) SwitchNames() []string {
	names := make([]string, len(t.Switches))
	for i, s := range t.Switches {
		names[i] = s.Name
	}
	return names
}

// PortNames returns a switch's port order, or nil for an unknown switch.
func (t *Topology) PortNames(sw string) []string {
	i := t.SwitchIndex(sw)
	if i < 0 {
		return nil
	}
	return portNames(&t.Switches[i])
}

// Receivers lists the receivers ascending by ID.
func (t *Topology) Receivers() []Receiver {
	rs := make([]Receiver, len(t.receivers))
	for i, hi := range t.receivers {
		h := &t.Hosts[hi]
		sw := &t.Switches[h.Switch]
		rs[i] = Receiver{ID: h.ID, Host: h.Name, Switch: sw.Name, Port: sw.Ports[h.Port].Name}
	}
	return rs
}

// IsReceiver reports whether id belongs to a receiver of the fabric.
func (t *Topology) IsReceiver(id uint16) bool {
	_, ok := slices.BinarySearchFunc(t.receivers, id, func(hi int, id uint16) int { return int(t.Hosts[hi].ID) - int(id) })
	return ok
}

// LinkAt returns the link on port index port of switch sw, if any.
func (t *Topology) LinkAt(sw string, port int) (LinkID, bool) {
	i := t.SwitchIndex(sw)
	if i < 0 || port < 0 || port >= len(t.Switches[i].Ports) {
		return -1, false
	}
	l := t.Switches[i].Ports[port].Link
	return l, l >= 0
}

// LinkBetween returns the link joining two switches' named ports in either
// order ("spine1:p1", "leaf1:p1"), if there is one.
func (t *Topology) LinkBetween(a, b string) (LinkID, bool) {
	for i, l := range t.Links {
		if (l.A == a && l.B == b) || (l.A == b && l.B == a) {
			return LinkID(i), true
		}
	}
	return -1, false
}
