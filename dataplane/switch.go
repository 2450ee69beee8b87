// The switch: ports, workers and the published tables. New builds every
// worker's state before any packet moves (as DPDK's l3fwd builds its tables
// before launching lcores); Run starts the workers and waits.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/headers"
)

// Switch is one sparsecast switch instance.
type Switch struct {
	cfg      *Config
	ports    []Port
	tables   atomic.Pointer[Tables]
	workers  []*Worker
	counters []*CoreCounters

	// writeMu serialises table writers (the control ring applier, link
	// failure handling) in UpdateTables; workers never take it.
	writeMu sync.Mutex
	// down is the set of ports whose link is down, as PortSet words, read
	// lock-free by writers resolving routes.
	down [len(PortSet{})]atomic.Uint64
	// links is the per-port link state (linkstate.go).
	links linkStates
	// spareRoutes is a route table allocated and written ahead of time,
	// never published, for the next writer that copies the routes: see
	// cloneRoutes.
	spareRoutes atomic.Pointer[RouteTable]
	// faults holds the runtime faults (fault.go).
	faults faultState
}

// NewSwitch prepares a switch over already opened ports (ports[i] is
// cfg.Ports[i]) with its first table snapshot.
func NewSwitch(cfg *Config, ports []Port, t *Tables) (*Switch, error) {
	if len(ports) != len(cfg.Ports) {
		return nil, fmt.Errorf("%d ports opened for %d configured", len(ports), len(cfg.Ports))
	}
	s := &Switch{cfg: cfg, ports: ports}
	s.tables.Store(t)
	s.prepareSpareRoutes()
	egress := make([]egressPort, len(ports))
	for i, p := range ports {
		e := &egressPort{counter: i, maxLen: cfg.BufferSize - Headroom}
		copy(e.mac[:], p.HardwareAddr())
		pc := cfg.Ports[i]
		if pc.NeighborMAC != "" {
			mac, _ := net.ParseMAC(pc.NeighborMAC)
			copy(e.nbrMAC[:], mac)
			e.hasMAC = true
		}
		if ip := net.ParseIP(pc.NeighborIP); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				copy(e.nbrIP4[:], v4)
				e.hasIP4 = true
			} else {
				copy(e.nbrIP6[:], ip.To16())
				e.hasIP6 = true
			}
		}
		egress[i] = *e
	}
	nw := cfg.Workers
	for wi := 0; wi < nw; wi++ {
		cpu := -1
		if len(cfg.CPUs) > 0 {
			cpu = cfg.CPUs[wi%len(cfg.CPUs)]
		} else if cfg.PollMode == PollBusy {
			cpu = wi % runtime.NumCPU()
		}
		w := &Worker{
			id: wi, cpu: cpu, mode: cfg.PollMode, spin: cfg.spinBeforeBlock(), udpPort: cfg.UDPPort,
			pool:     NewPool(cfg.Buffers, cfg.BufferSize),
			egress:   egress,
			counters: NewCoreCounters(len(ports)),
			tables:   &s.tables,
			faults:   &s.faults.cur,
			split:    newSplitScratch(),
			flows:    newFlowCache(),
			probe:    newProbeState(cfg.Probe),
			sw:       s,
			fbIDs:    make([]uint16, 0, headers.MaxID+1),
		}
		if cfg.Feedback.Aggregating() {
			id := uint16(0xFFFF)
			if cfg.SwitchID != nil {
				id = *cfg.SwitchID
			}
			w.agg = newAggregator(cfg.Feedback, id, w.counters)
		}
		for i, p := range ports {
			tx, err := p.OpenTx()
			if err != nil {
				return nil, fmt.Errorf("port %s: open tx queue: %w", p.Name(), err)
			}
			w.queues = append(w.queues, newEgressQueue(cfg.QueueDepth, tx, cfg.Ports[i].Fault, uint64(i*64+wi+1)))
			if i%nw == wi {
				w.rx = append(w.rx, rxPort{port: p, index: uint16(i)})
				if cfg.Ports[i].Probe {
					w.probe.add(uint8(i))
				}
				if fd := p.WaitFd(); fd >= 0 {
					w.pollFds = append(w.pollFds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
					w.pollPort = append(w.pollPort, uint8(i))
				}
			}
		}
		s.workers = append(s.workers, w)
		s.counters = append(s.counters, w.counters)
	}
	return s, nil
}

// Publish atomically replaces the tables; workers see them from their next
// round on.
func (s *Switch) Publish(t *Tables) { s.tables.Store(t) }

// UpdateTables runs f with the current snapshot under the writer mutex and
// publishes what it returns, so that concurrent writers (the control ring
// applier, link failure handling) each build on the other's result. f must
// not modify old (workers may be reading it) and must not call UpdateTables.
// If f returns an error or nil tables, nothing is published.
func (s *Switch) UpdateTables(f func(old *Tables) (*Tables, error)) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	t, err := f(s.tables.Load())
	if err != nil {
		return err
	}
	if t != nil {
		s.tables.Store(t)
	}
	return nil
}

// cloneRoutes returns a copy of rt to change before publishing (as
// rt.Clone), made in the spare table when there is one. A fresh 64 KiB
// table is memory the kernel has not mapped yet: on the lab's VM its first
// write cost 0.3 ms at the median and up to 6 ms under load, page faults
// that sat between a link going down and the rerouted table's publish.
// Copying into memory already written costs a few microseconds. The caller
// calls prepareSpareRoutes once it has published, off its critical path.
func (s *Switch) cloneRoutes(rt *RouteTable) *RouteTable {
	if sp := s.spareRoutes.Swap(nil); sp != nil {
		sp.port, sp.ent, sp.owned = rt.port, rt.ent, false
		return sp
	}
	return rt.Clone()
}

// prepareSpareRoutes allocates the next spare route table, if none is
// waiting, and writes every page of it so that they are mapped now.
func (s *Switch) prepareSpareRoutes() {
	if s.spareRoutes.Load() != nil {
		return
	}
	sp := &RouteTable{}
	for i := range sp.port {
		sp.port[i] = NoPort
	}
	s.spareRoutes.CompareAndSwap(nil, sp)
}

// SetPortDown marks port p's link down (or up again). It only records the
// state: the caller republishes routes resolved against DownPorts with
// UpdateTables.
func (s *Switch) SetPortDown(p uint8, down bool) {
	w, bit := &s.down[p>>6], uint64(1)<<(p&63)
	for {
		old := w.Load()
		nw := old &^ bit
		if down {
			nw = old | bit
		}
		if w.CompareAndSwap(old, nw) {
			return
		}
	}
}

// DownPorts returns the ports currently marked down; safe anywhere,
// including inside an UpdateTables callback.
func (s *Switch) DownPorts() PortSet {
	var d PortSet
	for i := range d {
		d[i] = s.down[i].Load()
	}
	return d
}

// NumPorts is the number of configured ports.
func (s *Switch) NumPorts() int { return len(s.ports) }

// Tables returns the current snapshot.
func (s *Switch) Tables() *Tables { return s.tables.Load() }

// Counters returns every worker's counters, for the metrics collector.
func (s *Switch) Counters() []*CoreCounters { return s.counters }

// PortNames lists the ports in index order.
func (s *Switch) PortNames() []string {
	names := make([]string, len(s.ports))
	for i, p := range s.ports {
		names[i] = p.Name()
	}
	return names
}

// Run starts every worker and blocks until ctx ends, then stops them.
func (s *Switch) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(s.workers))
	for i, w := range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.Run()
		}()
	}
	<-ctx.Done()
	for _, w := range s.workers {
		w.Stop()
	}
	wg.Wait()
	return errors.Join(errs...)
}
