//go:build dpdk

// The port: Open probes the device, makes its receive pool and starts it;
// RxBurst is the worker's one C call per round; Close gives it all back.
package dpdkport

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/ffi"
)

// Port is a DPDK ethdev switch port. RxBurst belongs to one worker, each
// TxQueue to one worker; Close must wait until the workers have stopped.
type Port struct {
	name   string
	dev    string
	port   uint16
	mac    net.HardwareAddr
	opts   Options
	mpool  *ffi.Pool
	pool   *dataplane.Pool // external, over mpool's mbufs
	rxq    *ffi.RxQueue
	ctx    *workerCtx // the receiving worker's, bound on its first RxBurst
	closed atomic.Bool

	mu   sync.Mutex // guards txqs and Close
	txqs []*txQueue
}

// Open opens the DPDK device o.Device, initialising DPDK first if this is
// the process's first DPDK port.
func Open(o Options) (dataplane.Port, error) { return OpenPort(o) }

// OpenPort is Open returning the concrete type (for Stats).
func OpenPort(o Options) (*Port, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	env.mu.Lock()
	defer env.mu.Unlock()
	if err := start(o); err != nil {
		return nil, err
	}
	id, dev, err := ffi.Probe(o.Device)
	if err != nil {
		return nil, fmt.Errorf("dpdk: %w", err)
	}
	env.seq++
	mp, err := ffi.NewPool(fmt.Sprintf("sc_rx%d", env.seq), o.Mbufs, o.DataRoom)
	if err != nil {
		return nil, fmt.Errorf("dpdk: %s: %w", dev, err)
	}
	env.pools = append(env.pools, mp)
	mac, err := ffi.SetupPort(id, 1, o.TxQueues, o.RxDesc, o.TxDesc, mp)
	if err != nil {
		return nil, fmt.Errorf("dpdk: %s: %w", dev, err)
	}
	rxq, err := ffi.NewRxQueue(id, 0, mp)
	if err != nil {
		ffi.ClosePort(id)
		return nil, fmt.Errorf("dpdk: %s: %w", dev, err)
	}
	env.open++
	return &Port{
		name: o.Name, dev: dev, port: id, mac: mac, opts: o, mpool: mp,
		pool: dataplane.NewExternalPool(mp.Views(), mp.Handles()), rxq: rxq,
	}, nil
}

func (p *Port) Name() string                   { return p.name }
func (p *Port) HardwareAddr() net.HardwareAddr { return p.mac }

// WaitFd is -1: DPDK ports are polled (an adaptive worker naps instead).
func (p *Port) WaitFd() int { return -1 }

// Device is the ethdev name.
func (p *Port) Device() string { return p.dev }

// Pool is the mempool the port receives into (benchmarks stamp it).
func (p *Port) Pool() *ffi.Pool { return p.mpool }

// RxBurst sends what the worker queued, gives back what it released, and
// receives up to len(pkts) frames: one cgo call. The frames stay in their
// mbufs; pool (the worker's) takes its copies' header buffers from the
// worker's header mbufs, lent to it here after each call.
func (p *Port) RxBurst(pool *dataplane.Pool, pkts []*dataplane.Packet) (int, error) {
	if p.closed.Load() {
		return 0, dataplane.ErrPortClosed
	}
	if p.opts.TxOnly {
		return 0, nil
	}
	w := p.ctx
	if w == nil {
		var err error
		if w, err = p.bind(); err != nil {
			return 0, err
		}
		if pool != nil {
			pool.UseHeaders(w.hdr)
		}
	}
	w.release()
	n := w.c.Burst(p.rxq, min(len(pkts), ffi.DPDKBurst))
	w.lend()
	for i := 0; i < n; i++ {
		idx, off, ln := p.rxq.Frame(i)
		pkts[i] = p.pool.Adopt(idx, off, ln)
	}
	return n, nil
}

// bind attaches the port's receive side to the calling worker's context.
func (p *Port) bind() (*workerCtx, error) {
	w, err := ctxForThread(true)
	if err != nil {
		return nil, fmt.Errorf("dpdk: %s: %w", p.dev, err)
	}
	env.mu.Lock()
	w.pools = append(w.pools, p.pool)
	env.mu.Unlock()
	p.ctx = w
	return w, nil
}

// Stats are a port's counters: the device's own and the queues'.
type Stats struct {
	Device ffi.PortStats
	// RxCopied: frames received in segments or from another pool, copied
	// into the port's pool; RxDropped: such frames with no mbuf to copy to.
	RxCopied, RxDropped uint64
	// TxSent, TxDropped (device ring full) and TxNoBuf (no header or
	// indirect mbuf) over every transmit queue.
	TxSent, TxDropped, TxNoBuf uint64
}

// Stats reads the counters (a cgo call: at scrape time, not per burst).
func (p *Port) Stats() (Stats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return Stats{}, dataplane.ErrPortClosed
	}
	var s Stats
	var err error
	s.Device, err = ffi.ReadPortStats(p.port)
	r := p.rxq.Stats()
	s.RxCopied, s.RxDropped = r.Copied, r.Dropped
	for _, q := range p.txqs {
		t := q.q.Stats()
		s.TxSent += t.Sent
		s.TxDropped += t.Dropped
		s.TxNoBuf += t.NoBuf
	}
	return s, err
}

// Close stops the device and frees its queues. The mempools go with the
// last DPDK port of the process, since mbufs of one port's pool may sit in
// another port's queues until then.
func (p *Port) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Swap(true) {
		return nil
	}
	env.mu.Lock()
	defer env.mu.Unlock()
	for _, w := range env.ctxs {
		// Send what the stopped workers left queued while the device runs.
		w.release()
		w.c.Flush()
	}
	ffi.ClosePort(p.port)
	for _, q := range p.txqs {
		q.free()
	}
	p.rxq.Free()
	env.open--
	if env.open > 0 {
		return nil
	}
	for _, w := range env.ctxs {
		w.reclaim()
		w.c.Flush()
		w.c.Free()
	}
	env.ctxs = map[int]*workerCtx{}
	for _, mp := range env.pools {
		mp.Free()
	}
	env.pools = nil
	return nil
}

var _ dataplane.Port = (*Port)(nil)
