// Probe stage. In: probe frames from neighbouring switches (ethertype 0x88B5,
// IEEE's local experimental type, to the link-local group 01:80:c2:00:00:0e
// that bridges never forward), and the worker's clock once per loop. Out:
// probes on every probing port each interval (through the egress queue and
// its fault injector, like data, so injected loss is measured), and link
// verdicts: down after Miss silent intervals, degraded or down when probe
// loss over a window passes its thresholds, up again when a window is clean.
//
//	probe frame: dst 01:80:c2:00:00:0e | src port MAC | 0x88B5 |
//	             "SCPR" | version 1 | port index | 0 0 | sequence (u32 BE) | pad to 60
package dataplane

import (
	"encoding/binary"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

const (
	etherTypeProbe = 0x88B5
	probeFrameLen  = 60
	probeMagic     = "SCPR"
	// probeFrame marks a parsed frame as a probe (not a drop).
	probeFrame DropReason = 0xFE
)

var probeDst = [6]byte{0x01, 0x80, 0xC2, 0x00, 0x00, 0x0E}

// probePort is one probing port's state, owned by the worker that owns the
// port's receive side.
type probePort struct {
	port    uint8
	txSeq   uint32
	heard   bool
	lastRx  int64 // last probe, moved on by this worker's own stalls
	rxAt    int64 // last probe, as it was (CLOCK_MONOTONIC ns)
	nextSeq uint32
	// the current loss window
	winStart       int64
	received, lost uint32
}

// probeState is a worker's probing configuration and per-port state.
type probeState struct {
	cfg      ProbeConfig
	ports    []probePort
	byPort   [MaxPorts]int16 // port index -> ports index, -1 if not probing
	nextSend int64
	now      int64
	lastTick int64
}

func newProbeState(cfg ProbeConfig) probeState {
	p := probeState{cfg: cfg}
	for i := range p.byPort {
		p.byPort[i] = -1
	}
	return p
}

func (ps *probeState) add(port uint8) {
	ps.byPort[port] = int16(len(ps.ports))
	ps.ports = append(ps.ports, probePort{port: port})
}

func (ps *probeState) enabled() bool { return len(ps.ports) > 0 }

// probeTick runs once per loop iteration when probing: it sends due probes
// and judges silent links.
func (w *Worker) probeTick(now time.Time) {
	ps := &w.probe
	ps.now = monotonicAt(now)
	iv := int64(ps.cfg.Interval)
	// Time this worker did not run (descheduled on a busy machine) is no
	// evidence against a neighbour: move every port's last-heard time on by
	// the stall, so only silence we were awake for counts.
	if stall := ps.now - ps.lastTick - iv; ps.lastTick != 0 && stall > 0 {
		for i := range ps.ports {
			ps.ports[i].lastRx += stall
		}
	}
	ps.lastTick = ps.now
	if ps.now >= ps.nextSend {
		for i := range ps.ports {
			w.sendProbe(&ps.ports[i])
		}
		ps.nextSend = ps.now + iv
		if ps.nextSend < ps.now {
			ps.nextSend = ps.now + iv
		}
	}
	for i := range ps.ports {
		pp := &ps.ports[i]
		if !pp.heard {
			continue
		}
		// A link that just came up (by carrier) gets Miss intervals of
		// grace. upSince is read after the state: LinkChange stores it
		// first, so a link seen up here is seen with its new upSince.
		// (Read the other way round, a link coming back after a long
		// outage was declared silent, and down, microseconds after its
		// carrier returned.)
		if w.sw.LinkState(pp.port) != headers.LinkDown {
			last := max(pp.lastRx, w.sw.links.upSince[pp.port].Load())
			if ps.now-last > int64(ps.cfg.Miss)*iv {
				w.sw.LinkChange(pp.port, headers.LinkDown, "probe_timeout", 1e6, ps.now)
			}
		}
		if ps.now-pp.winStart >= int64(ps.cfg.Window)*iv {
			w.judgeWindow(pp)
		}
	}
}

// judgeWindow turns one window's probe loss into a verdict.
func (w *Worker) judgeWindow(pp *probePort) {
	ps := &w.probe
	if w.sw.links.upSince[pp.port].Load() > pp.winStart {
		// The link came up during this window: the probes lost while it
		// was down say nothing about it now.
		pp.winStart, pp.received, pp.lost = ps.now, 0, 0
		return
	}
	total := pp.received + pp.lost
	if total >= uint32(ps.cfg.Window/2) {
		loss := float64(pp.lost) / float64(total)
		ppm := uint32(loss * 1e6)
		state := w.sw.LinkState(pp.port)
		switch {
		case loss > ps.cfg.DownLoss:
			w.sw.LinkChange(pp.port, headers.LinkDown, "probe_loss", ppm, ps.now)
		case loss > ps.cfg.DegradedLoss:
			if state == headers.LinkUp {
				w.sw.LinkChange(pp.port, headers.LinkDegraded, "probe_loss", ppm, ps.now)
			}
		case state != headers.LinkUp && ps.now-pp.rxAt <= int64(ps.cfg.Miss)*int64(ps.cfg.Interval):
			w.sw.LinkChange(pp.port, headers.LinkUp, "probe_recovered", ppm, ps.now)
		}
	}
	pp.winStart, pp.received, pp.lost = ps.now, 0, 0
}

// sendProbe queues one probe on a port.
func (w *Worker) sendProbe(pp *probePort) {
	pk := w.pool.Get()
	if pk == nil {
		w.counters.drop(DropNoBuffer, 1)
		return
	}
	b := pk.RxRoom()[:probeFrameLen]
	clear(b)
	copy(b[0:6], probeDst[:])
	copy(b[6:12], w.egress[pp.port].mac[:])
	binary.BigEndian.PutUint16(b[12:], etherTypeProbe)
	copy(b[14:18], probeMagic)
	b[18], b[19] = 1, pp.port
	binary.BigEndian.PutUint32(b[22:], pp.txSeq)
	pp.txSeq++
	pk.SetFrame(probeFrameLen)
	w.enqueue(pp.port, pk)
}

// alive notes that frames arrived on port in this round: proof of life for
// the silence check (the loss measurement counts probes only).
func (w *Worker) alive(in uint16) {
	ps := &w.probe
	if i := ps.byPort[in]; i >= 0 && ps.ports[i].heard {
		ps.ports[i].lastRx = ps.now
	}
}

// probeRx accounts for a probe that arrived on port in.
func (w *Worker) probeRx(b []byte, in uint16) {
	ps := &w.probe
	if len(b) < 26 || string(b[14:18]) != probeMagic || b[18] != 1 {
		w.counters.drop(DropNotSMH, 1)
		return
	}
	i := ps.byPort[in]
	if i < 0 {
		return // a neighbour probes a port we do not watch: harmless
	}
	pp := &ps.ports[i]
	seq := binary.BigEndian.Uint32(b[22:])
	now := ps.now
	if now == 0 {
		now = MonotonicNs()
	}
	if !pp.heard {
		pp.heard, pp.nextSeq, pp.winStart = true, seq, now
	}
	// Serial-number arithmetic: a gap ahead counts as loss; a probe from the
	// past (a restarted neighbour) starts the count again.
	if d := int32(seq - pp.nextSeq); d > 0 && d < 1<<20 {
		pp.lost += uint32(d)
	}
	pp.nextSeq = seq + 1
	pp.received++
	pp.lastRx, pp.rxAt = now, now
}
