package lab

// A testbed is a fabric lab that outlives the command that built it:
// `testbed up` builds it and leaves its switches and control process running
// in sessions of their own, saving what it built in a state file; `status`,
// `run` and `down` read that file and reattach. In: a topology. Out: a state
// file under StateDir, per-switch configs and logs in the testbed directory.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sparsecast/sparsecast/control"
)

// StateDir holds one state file per running testbed.
const StateDir = "/run/sparsecast"

// TestbedState is what `testbed up` saves.
type TestbedState struct {
	Prefix     string                 `json:"prefix"`
	Topology   string                 `json:"topology"`
	Dir        string                 `json:"dir"`
	Binary     string                 `json:"binary"`
	UDPPort    uint16                 `json:"udp_port"`
	Hosts      map[string]*FabricHost `json:"hosts"`
	SwitchNS   map[string]string      `json:"switch_ns"`
	Configs    map[string]string      `json:"configs"`
	Logs       map[string]string      `json:"logs"`
	ControlAPI string                 `json:"control_api"`
	ControlLog string                 `json:"control_log"`
	PIDs       map[string]int         `json:"pids"` // "switch leaf1", "control" (or "control leaf1"), "etcd"
	// ControlAPIs and ControlLogs are the per-switch controls' (by switch)
	// and EtcdEndpoint their etcd (--control per-switch only).
	ControlAPIs  map[string]string `json:"control_apis,omitempty"`
	ControlLogs  map[string]string `json:"control_logs,omitempty"`
	EtcdEndpoint string            `json:"etcd,omitempty"`
	Started      time.Time         `json:"started"`
	UpSeconds    float64           `json:"up_seconds"`
}

func statePath(prefix string) string {
	return filepath.Join(StateDir, "testbed-"+prefix+".json")
}

// UpOptions configure Up.
type UpOptions struct {
	Topology string
	Binary   string
	Prefix   string
	Dir      string
	// PerSwitch runs one control process per switch on an etcd of the
	// testbed's own instead of one control for the fabric.
	PerSwitch bool
	Log       func(format string, args ...any)
}

// Up builds a testbed from a topology and leaves it running. A testbed
// already up under the same prefix is taken down first.
func Up(ctx context.Context, o UpOptions) (*TestbedState, error) {
	start := time.Now()
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if err := CheckPrefix(o.Prefix); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(o.Topology)
	if err != nil {
		return nil, err
	}
	topo, err := control.LoadTopology(abs)
	if err != nil {
		return nil, err
	}
	if err := Down(ctx, o.Prefix, nil); err != nil {
		return nil, err
	}
	if o.Dir == "" {
		o.Dir = LabDir(o.Prefix)
	}
	if err := os.RemoveAll(o.Dir); err != nil {
		return nil, err
	}
	f, err := StartFabric(ctx, FabricOptions{
		Topology: topo, TopologyPath: abs, Binary: o.Binary, Prefix: o.Prefix, Dir: o.Dir,
		// No probes: on a 2-core lab machine running a dozen switch and host
		// processes, a switch under a stream is starved long enough for
		// probes to time out on healthy links. Links taken down are caught
		// by carrier loss; `bench failover` (a lighter fabric) runs with
		// probes on.
		Probes: false, Control: true, PerSwitch: o.PerSwitch, Detach: true, Log: o.Log,
	})
	if err != nil {
		return nil, err
	}
	st := &TestbedState{
		Prefix: o.Prefix, Topology: abs, Dir: f.Dir, Binary: o.Binary, UDPPort: f.UDPPort,
		Hosts: f.Hosts, SwitchNS: f.SwitchNS, Configs: f.Configs, Logs: f.Logs,
		ControlAPI: f.ControlAPI, ControlLog: f.ControlLog, PIDs: map[string]int{}, Started: start,
	}
	for name, p := range f.procs {
		st.PIDs["switch "+name] = p.PID()
	}
	if f.control != nil {
		st.PIDs["control"] = f.control.PID()
	}
	if o.PerSwitch {
		st.ControlAPIs, st.ControlLogs, st.EtcdEndpoint = f.ControlAPIs, f.ControlLogs, f.EtcdEndpoint
		for sw, p := range f.Controls {
			st.PIDs["control "+sw] = p.PID()
		}
		st.PIDs["etcd"] = f.EtcdPID()
	}
	f.Lab.Release()
	st.UpSeconds = time.Since(start).Seconds()
	if err := st.save(); err != nil {
		f.Close()
		return nil, err
	}
	return st, nil
}

func (st *TestbedState) save() error {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(st.Prefix) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(st.Prefix))
}

// ErrNoTestbed says no testbed is up under a prefix.
var ErrNoTestbed = errors.New("no testbed is up (run `sparsecast testbed up` first)")

// LoadState reads the state of the testbed under prefix.
func LoadState(prefix string) (*TestbedState, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	b, err := os.ReadFile(statePath(prefix))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoTestbed
	}
	if err != nil {
		return nil, err
	}
	var st TestbedState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("testbed state %s: %w", statePath(prefix), err)
	}
	return &st, nil
}

// Attach returns a Fabric over a running testbed, to run scenarios on. Its
// Close does not stop the testbed (Down does).
func (st *TestbedState) Attach() (*Fabric, error) {
	topo, err := control.LoadTopology(st.Topology)
	if err != nil {
		return nil, err
	}
	l, err := New(st.Prefix)
	if err != nil {
		return nil, err
	}
	return &Fabric{
		Lab: l, Topo: topo, Dir: st.Dir, UDPPort: st.UDPPort, Hosts: st.Hosts, SwitchNS: st.SwitchNS,
		Configs: st.Configs, Logs: st.Logs, TopologyPath: st.Topology, ControlAPI: st.ControlAPI,
		ControlLog: st.ControlLog, procs: map[string]*Proc{}, bin: st.Binary, attached: true,
	}, nil
}

// LabDir is a testbed's default directory (configs, rings, logs): RAM
// under /run, so Down removes it.
func LabDir(prefix string) string { return filepath.Join(StateDir, "testbed-"+prefix+"lab") }

// Down stops a testbed's processes and removes its namespaces, its state
// file and its directory. It works without a state file too (after a
// crash), and twice in a row.
func Down(ctx context.Context, prefix string, log io.Writer) error {
	return DownKeeping(ctx, prefix, log, false)
}

// DownKeeping is Down; with keepLogs the testbed directory keeps its *.log
// files (everything else in it goes: configs, rings, sockets).
func DownKeeping(ctx context.Context, prefix string, log io.Writer, keepLogs bool) error {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := CheckPrefix(prefix); err != nil {
		return err
	}
	st, err := LoadState(prefix)
	if err != nil && !errors.Is(err, ErrNoTestbed) {
		return err
	}
	if st != nil {
		for _, pid := range st.PIDs {
			// Processes in a namespace are also found and killed by
			// Teardown; the control process lives in ours.
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		deadline := time.Now().Add(2 * time.Second)
		for _, pid := range st.PIDs {
			for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err := Teardown(ctx, prefix, log); err != nil {
		return err
	}
	if err := os.Remove(statePath(prefix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// The default directory only: a directory given to Up (UpOptions.Dir)
	// is the caller's.
	dir := LabDir(prefix)
	if !keepLogs {
		return os.RemoveAll(dir)
	}
	return removeAllBut(dir, func(name string) bool { return strings.HasSuffix(name, ".log") })
}

// removeAllBut removes everything under dir but the regular files whose
// names keep accepts (and the directories holding them).
func removeAllBut(dir string, keep func(name string) bool) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.IsDir():
			if err := removeAllBut(p, keep); err != nil {
				return err
			}
			os.Remove(p) // fails, and stays, if it kept a log
		case e.Type().IsRegular() && keep(e.Name()):
		default:
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestbedStatus is what `testbed status` shows.
type TestbedStatus struct {
	Prefix   string         `json:"prefix"`
	Topology string         `json:"topology"`
	Dir      string         `json:"dir"`
	Up       string         `json:"up_since"`
	Switches []SwitchStatus `json:"switches"`
	Control  ProcessStatus  `json:"control"`
	// Controls are the per-switch control processes and Etcd their etcd
	// (--control per-switch only).
	Controls []ControlStatus `json:"controls,omitempty"`
	Etcd     *ProcessStatus  `json:"etcd,omitempty"`
	Hosts    []HostStatus    `json:"hosts"`
}

// ControlStatus is one per-switch control process: its store revision and
// whether it has caught up with etcd's, from its API.
type ControlStatus struct {
	Switch    string `json:"switch"`
	PID       int    `json:"pid"`
	Running   bool   `json:"running"`
	API       string `json:"api"`
	Revision  int64  `json:"store_revision"`
	CaughtUp  bool   `json:"caught_up"`
	Connected bool   `json:"store_connected"`
	Groups    int    `json:"groups"`
	Error     string `json:"error,omitempty"`
}

// SwitchStatus is one switch's line.
type SwitchStatus struct {
	Name       string `json:"name"`
	PID        int    `json:"pid"`
	Running    bool   `json:"running"`
	Generation uint64 `json:"applied_generation"`
	LinksDown  int    `json:"links_down"`
}

// ProcessStatus is a process's line.
type ProcessStatus struct {
	PID     int  `json:"pid"`
	Running bool `json:"running"`
}

// HostStatus is one host's line.
type HostStatus struct {
	Name    string `json:"name"`
	ID      uint16 `json:"id"`
	IP      string `json:"ip"`
	Gateway string `json:"gateway"`
}

func perSwitchControlStatus(sw string, pid int, api string) ControlStatus {
	cs := ControlStatus{Switch: sw, PID: pid, Running: alivePID(pid), API: "unix:" + api}
	c, err := control.NewClient(cs.API, "")
	if err != nil {
		cs.Error = err.Error()
		return cs
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		cs.Error = err.Error()
		return cs
	}
	cs.Groups = st.Groups
	if h := st.Store; h != nil {
		cs.Revision, cs.CaughtUp, cs.Connected, cs.Error = h.Revision, h.CaughtUp, h.Connected, h.Error
	}
	return cs
}

// Status reports what runs in a testbed.
func Status(prefix string) (*TestbedStatus, error) {
	st, err := LoadState(prefix)
	if err != nil {
		return nil, err
	}
	f, err := st.Attach()
	if err != nil {
		return nil, err
	}
	s := &TestbedStatus{Prefix: st.Prefix, Topology: st.Topology, Dir: st.Dir, Up: st.Started.Format(time.RFC3339)}
	alive := func(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }
	for _, sw := range f.Topo.Switches {
		pid := st.PIDs["switch "+sw.Name]
		gen, _ := f.AppliedGeneration(sw.Name)
		down := 0
		if evs, err := readLinkEvents(st.Logs[sw.Name]); err == nil {
			state := map[uint8]uint8{}
			for _, e := range evs {
				state[e.Port] = e.State
			}
			for _, v := range state {
				if v == 3 {
					down++
				}
			}
		}
		s.Switches = append(s.Switches, SwitchStatus{Name: sw.Name, PID: pid, Running: alive(pid), Generation: gen, LinksDown: down})
	}
	s.Control = ProcessStatus{PID: st.PIDs["control"], Running: alive(st.PIDs["control"])}
	if st.EtcdEndpoint != "" {
		s.Etcd = &ProcessStatus{PID: st.PIDs["etcd"], Running: alive(st.PIDs["etcd"])}
		for _, sw := range f.Topo.Switches {
			s.Controls = append(s.Controls, perSwitchControlStatus(sw.Name, st.PIDs["control "+sw.Name], st.ControlAPIs[sw.Name]))
		}
	}
	for _, h := range st.Hosts {
		s.Hosts = append(s.Hosts, HostStatus{Name: h.Name, ID: h.ID, IP: h.IP, Gateway: h.GatewayIP})
	}
	sort.Slice(s.Hosts, func(i, j int) bool { return s.Hosts[i].Name < s.Hosts[j].Name })
	return s, nil
}
