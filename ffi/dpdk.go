//go:build dpdk

// DPDK through cgo, over the distribution's DPDK (22.11 on Debian 12; see
// README's DPDK section for why not nff-go). The C side is dpdk.c; this
// file gives Go typed handles on its structures. What crosses into C, and how
// often:
//
//   - once per process: EAL init (EALInit), from a locked thread whose
//     affinity is restored afterwards;
//   - once per port, queue and worker: setup (Probe, SetupPort, NewTxQueue,
//     NewRxQueue, NewCtx, RegisterThread);
//   - once per receive burst: Ctx.Burst, which sends what the worker queued
//     since its previous call, gives back the mbufs Go released, tops up the
//     header stashes (the transmit queues' and the context's, whose mbufs
//     Go lends its copies, TakeHeaders) and receives;
//   - never per packet: packet bytes are read and written through
//     unsafe.Slice views of mbuf buffers made once per pool (Pool.Views),
//     and transmit descriptors and released handles are plain stores into C
//     memory.
package ffi

// #cgo pkg-config: libdpdk
// #cgo CFLAGS: -O3
// #include <stdlib.h>
// #include "dpdk.h"
//
// // The per-burst calls take their C pointers as integers: a pointer
// // argument makes cgo check at every call whether it points into Go memory
// // (cgoCheckPointer, a few percent of the io forwarder's time), and these
// // never do.
// static inline uint16_t sc_burst_u(uintptr_t c, uintptr_t r, uint16_t max) {
// 	return sc_burst((sc_ctx *)c, (sc_rxq *)r, max);
// }
// static inline void sc_ctx_flush_u(uintptr_t c) { sc_ctx_flush((sc_ctx *)c); }
import "C"

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"unsafe"
)

// DPDK constants Go needs.
const (
	// DPDKBurst is the most frames one Burst receives.
	DPDKBurst = C.SC_BURST
	// DPDKTxCap is how many frames a transmit queue holds between flushes.
	DPDKTxCap = C.SC_TXQ_CAP
	// DPDKHeadroom is the data offset of a fresh mbuf
	// (RTE_PKTMBUF_HEADROOM), where Go writes a header or a frame copy.
	DPDKHeadroom = 128
	// DPDKCopyMax is the longest payload a copy gets copied into its
	// header mbuf rather than attached by an indirect mbuf.
	DPDKCopyMax = C.SC_COPY_MAX
	// DPDKStash is how many header mbufs each transmit queue keeps ready.
	DPDKStash = C.SC_STASH
)

var eal struct {
	once sync.Once
	err  error
}

// EALInit initialises DPDK's environment abstraction layer once per process
// with args (argv[0] is added). Later calls return the first call's result.
func EALInit(args []string) error {
	eal.once.Do(func() {
		// rte_eal_init binds the calling thread (the main lcore) to a CPU;
		// a locked thread keeps the Go scheduler from moving the goroutine
		// while that happens, and dpdk.c restores the thread's affinity.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		argv := append([]string{"sparsecast"}, args...)
		cargv := make([]*C.char, len(argv))
		for i, a := range argv {
			cargv[i] = C.CString(a)
		}
		// rte_eal_init keeps pointers into argv: the strings stay allocated.
		cv := (**C.char)(C.malloc(C.size_t(len(argv)) * C.size_t(unsafe.Sizeof(uintptr(0)))))
		copy(unsafe.Slice(cv, len(argv)), cargv)
		var errbuf [256]C.char
		if C.sc_eal_init(C.int(len(argv)), cv, &errbuf[0], C.int(len(errbuf))) < 0 {
			eal.err = errors.New(C.GoString(&errbuf[0]))
		}
	})
	return eal.err
}

// RegisterThread makes the calling OS thread a DPDK lcore (a mempool cache
// of its own), leaving its CPU affinity alone. The caller must have locked
// its goroutine to the thread.
func RegisterThread() error {
	if C.sc_thread_register() != 0 {
		return errors.New("rte_thread_register failed (too many threads for RTE_MAX_LCORE?)")
	}
	return nil
}

// Probe returns the ethdev port for devargs (a name with optional
// ",key=value" arguments), probing the device if needed.
func Probe(devargs string) (port uint16, name string, err error) {
	cs := C.CString(devargs)
	defer C.free(unsafe.Pointer(cs))
	var nb [128]C.char
	var p C.uint16_t
	if r := C.sc_probe(cs, &nb[0], C.int(len(nb)), &p); r != 0 {
		return 0, "", fmt.Errorf("probe %q: error %d", devargs, -int(r))
	}
	return uint16(p), C.GoString(&nb[0]), nil
}

// Pool is a packet mempool whose mbufs Go can see: buffer i's memory and
// handle (its mbuf's address) by the index each mbuf carries.
type Pool struct {
	c       *C.sc_pool
	views   [][]byte
	handles []uintptr
	stamp   []byte
}

// NewPool creates a mempool of at least n mbufs with dataRoom bytes each
// (headroom included).
func NewPool(name string, n, dataRoom int) (*Pool, error) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	c := C.sc_pool_create(cs, C.uint32_t(n), C.uint32_t(dataRoom), -1)
	if c == nil {
		return nil, fmt.Errorf("mempool %s (%d mbufs of %d bytes): out of DPDK memory? (EAL -m, hugepages)", name, n, dataRoom)
	}
	p := &Pool{c: c}
	objs := unsafe.Slice(c.objs, int(c.n))
	p.views = make([][]byte, len(objs))
	p.handles = make([]uintptr, len(objs))
	for i := range objs {
		p.views[i] = unsafe.Slice((*byte)(unsafe.Pointer(objs[i].buf)), int(objs[i].buf_len))
		p.handles[i] = uintptr(objs[i].mbuf)
	}
	return p, nil
}

// Views are the mbufs' whole buffers (headroom included), by index.
func (p *Pool) Views() [][]byte { return p.views }

// Handles are the mbufs' addresses, by index.
func (p *Pool) Handles() []uintptr { return p.handles }

// SetStamp makes every burst received into the pool start with stamp (a
// benchmark's traffic generator refreshing the headers the switch
// rewrote). The stamp is copied into C memory.
func (p *Pool) SetStamp(stamp []byte) {
	if p.c.stamp != nil {
		C.free(unsafe.Pointer(p.c.stamp))
		p.c.stamp, p.c.stamp_len = nil, 0
	}
	if len(stamp) == 0 {
		return
	}
	m := (*C.uint8_t)(C.malloc(C.size_t(len(stamp))))
	copy(unsafe.Slice((*byte)(unsafe.Pointer(m)), len(stamp)), stamp)
	p.c.stamp, p.c.stamp_len = m, C.uint32_t(len(stamp))
}

// Free gives the mempool back. No mbuf of it may be in use anywhere.
func (p *Pool) Free() {
	C.sc_pool_free(p.c)
	p.c, p.views, p.handles = nil, nil, nil
}

// ClonePool is a mempool of indirect mbufs (no data room), one per copy.
type ClonePool struct{ mp unsafe.Pointer }

// NewClonePool creates a pool of n indirect mbufs.
func NewClonePool(name string, n int) (*ClonePool, error) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	mp := C.sc_clone_pool(cs, C.uint32_t(n), -1)
	if mp == nil {
		return nil, fmt.Errorf("mempool %s (%d indirect mbufs): out of DPDK memory?", name, n)
	}
	return &ClonePool{mp: mp}, nil
}

// SetupPort configures port with nrxq receive and ntxq transmit queues
// (rxd and txd descriptors each, adjusted to what the driver takes), the
// receive queues filling from pool, starts it and returns its MAC.
func SetupPort(port uint16, nrxq, ntxq, rxd, txd int, pool *Pool) (net.HardwareAddr, error) {
	var mac [6]C.uint8_t
	var errbuf [256]C.char
	if C.sc_port_setup(C.uint16_t(port), C.uint16_t(nrxq), C.uint16_t(ntxq), C.uint16_t(rxd), C.uint16_t(txd),
		pool.c, &mac[0], &errbuf[0], C.int(len(errbuf))) != 0 {
		return nil, errors.New(C.GoString(&errbuf[0]))
	}
	hw := make(net.HardwareAddr, 6)
	for i := range hw {
		hw[i] = byte(mac[i])
	}
	return hw, nil
}

// ClosePort stops and closes an ethdev port.
func ClosePort(port uint16) { C.sc_port_close(C.uint16_t(port)) }

// PortStats are a device's own counters.
type PortStats struct {
	RxPackets, TxPackets, RxMissed, RxErrors, TxErrors, RxNoMbuf uint64
}

// ReadPortStats reads the device's counters (a cgo call: not per burst).
func ReadPortStats(port uint16) (PortStats, error) {
	var v [6]C.uint64_t
	if r := C.sc_port_stats(C.uint16_t(port), &v[0]); r != 0 {
		return PortStats{}, fmt.Errorf("rte_eth_stats_get: error %d", -int(r))
	}
	return PortStats{uint64(v[0]), uint64(v[1]), uint64(v[2]), uint64(v[3]), uint64(v[4]), uint64(v[5])}, nil
}

// TxQueue is one worker's transmit queue on a port: descriptors Go fills
// and the next Ctx.Burst or Ctx.Flush sends.
type TxQueue struct {
	c   *C.sc_txq
	hdr *Pool
}

// NewTxQueue makes the queue for ethdev queue q of port. Header and full
// frame copies come from hdr, indirect mbufs from clones.
func NewTxQueue(port uint16, q int, hdr *Pool, clones *ClonePool) (*TxQueue, error) {
	c := C.sc_txq_new(C.uint16_t(port), C.uint16_t(q), hdr.c, clones.mp)
	if c == nil {
		return nil, errors.New("out of memory")
	}
	return &TxQueue{c: c, hdr: hdr}, nil
}

// Room is how many more frames the queue takes before its next flush.
func (q *TxQueue) Room() int { return DPDKTxCap - int(q.c.n) }

// Ref queues a frame by reference: bytes [off, off+n) of the mbuf head,
// followed, if tail is non-zero, by bytes [toff, toff+tn) of mbuf tail,
// attached through an indirect mbuf, or copied in after the head when at
// most DPDKCopyMax long. ref takes a reference on head for the
// queue; without it, the caller hands over one it holds.
func (q *TxQueue) Ref(head uintptr, off, n int, tail uintptr, toff, tn int, ref bool) {
	d := &q.c.d[q.c.n]
	d.head, d.off, d.len = C.uintptr_t(head), C.uint16_t(off), C.uint16_t(n)
	d.tail, d.toff, d.tlen = C.uintptr_t(tail), C.uint16_t(toff), C.uint16_t(tn)
	d.ref = 0
	if ref {
		d.ref = 1
	}
	if tail != 0 && tn > C.SC_COPY_MAX {
		q.c.ntail++
	}
	q.c.n++
}

// Stash takes a fresh mbuf of the header pool for the caller to write into:
// its data area (from DPDKHeadroom on) and its handle. ok is false when the
// stash is empty until the next flush.
func (q *TxQueue) Stash() (data []byte, handle uintptr, ok bool) {
	n := q.c.stash_n
	if n == 0 {
		return nil, 0, false
	}
	n--
	q.c.stash_n = n
	return q.hdr.views[q.c.stash_idx[n]][DPDKHeadroom:], uintptr(q.c.stash[n]), true
}

// TxStats are what a queue sent, dropped at a full device and lacked
// mbufs for.
type TxStats struct{ Sent, Dropped, NoBuf uint64 }

// Stats reads the queue's counters; they are written by the worker's C
// calls, so a reader elsewhere sees a recent value.
func (q *TxQueue) Stats() TxStats {
	return TxStats{uint64(q.c.sent), uint64(q.c.dropped), uint64(q.c.nobuf)}
}

// Free releases the queue and the mbufs it still holds.
func (q *TxQueue) Free() { C.sc_txq_free(q.c); q.c = nil }

// RxQueue is a port's receive queue, filling from one pool.
type RxQueue struct {
	c    *C.sc_rxq
	pool *Pool
}

// NewRxQueue makes the handle for ethdev receive queue q of port.
func NewRxQueue(port uint16, q int, pool *Pool) (*RxQueue, error) {
	c := C.sc_rxq_new(C.uint16_t(port), C.uint16_t(q), pool.c)
	if c == nil {
		return nil, errors.New("out of memory")
	}
	return &RxQueue{c: c, pool: pool}, nil
}

// Frame returns where received frame i is: its mbuf's index in the pool and
// its bytes' offset and length in that buffer.
func (r *RxQueue) Frame(i int) (idx, off, n int) {
	d := &r.c.rx[i]
	return int(d.idx), int(d.off), int(d.len)
}

// RxStats: frames that came from another pool or in segments and were
// copied, and frames dropped because no copy could be made.
type RxStats struct{ Copied, Dropped uint64 }

// Stats reads the queue's counters.
func (r *RxQueue) Stats() RxStats { return RxStats{uint64(r.c.foreign), uint64(r.c.dropped)} }

// Free releases the handle.
func (r *RxQueue) Free() { C.free(unsafe.Pointer(r.c)); r.c = nil }

// Ctx is one worker's C context: the transmit queues it fills, and the
// mbufs it gave up, both handled by its next Burst or Flush.
type Ctx struct {
	c *C.sc_ctx
}

// NewCtx makes a worker context.
func NewCtx() (*Ctx, error) {
	c := C.sc_ctx_new()
	if c == nil {
		return nil, errors.New("out of memory")
	}
	return &Ctx{c: c}, nil
}

// AddTxQueue makes q one of the queues the context sends.
func (x *Ctx) AddTxQueue(q *TxQueue) error {
	if x.c.nq == C.SC_MAX_CTX_TXQ {
		return fmt.Errorf("more than %d DPDK transmit queues on one worker", C.SC_MAX_CTX_TXQ)
	}
	x.c.q[x.c.nq] = q.c
	x.c.nq++
	return nil
}

// RemoveTxQueue takes q out of the context's queues.
func (x *Ctx) RemoveTxQueue(q *TxQueue) {
	qs := x.c.q[:x.c.nq]
	for i := range qs {
		if qs[i] == q.c {
			copy(qs[i:], qs[i+1:])
			x.c.nq--
			return
		}
	}
}

// ReleaseOne queues one mbuf to be freed after the next flush.
func (x *Ctx) ReleaseOne(h uintptr) {
	if x.c.nfree == C.SC_FREE_CAP {
		x.Flush()
	}
	x.c.free[x.c.nfree] = C.uintptr_t(h)
	x.c.nfree++
}

// Release queues mbufs (handles) to be freed after the next flush.
func (x *Ctx) Release(handles []uintptr) {
	for len(handles) > 0 {
		room := C.SC_FREE_CAP - int(x.c.nfree)
		if room == 0 {
			x.Flush()
			continue
		}
		k := min(room, len(handles))
		dst := x.c.free[x.c.nfree : int(x.c.nfree)+k]
		for i, h := range handles[:k] {
			dst[i] = C.uintptr_t(h)
		}
		x.c.nfree += C.uint32_t(k)
		handles = handles[k:]
	}
}

// Flush sends every queue of the context and frees what was released.
func (x *Ctx) Flush() { C.sc_ctx_flush_u(C.uintptr_t(uintptr(unsafe.Pointer(x.c)))) }

// Burst flushes like Flush, then receives up to max frames from r; Frame
// says where they are.
func (x *Ctx) Burst(r *RxQueue, max int) int {
	return int(C.sc_burst_u(C.uintptr_t(uintptr(unsafe.Pointer(x.c))), C.uintptr_t(uintptr(unsafe.Pointer(r.c))), C.uint16_t(max)))
}

// SetHeaderPool makes the context keep header mbufs of p ready for Go
// (TakeHeaders), topped up by every flush.
func (x *Ctx) SetHeaderPool(p *Pool) { x.c.hdr_pool = p.c }

// TakeHeaders takes up to max header mbufs from the context's stash and
// returns their indexes in the header pool, a view of C memory valid until
// the next Burst or Flush. The caller owns the mbufs: it sends them or
// releases them.
func (x *Ctx) TakeHeaders(max int) []uint32 {
	n := min(int(x.c.hstash_n), max)
	if n <= 0 {
		return nil
	}
	top := int(x.c.hstash_n)
	x.c.hstash_n = C.uint32_t(top - n)
	return unsafe.Slice((*uint32)(unsafe.Pointer(&x.c.hstash_idx[top-n])), n)
}

// HeaderNoBuf counts the flushes that could not top the header stash up.
func (x *Ctx) HeaderNoBuf() uint64 { return uint64(x.c.hnobuf) }

// Free releases the context (not its queues) and the header mbufs it kept.
func (x *Ctx) Free() { C.sc_ctx_free(x.c); x.c = nil }

// DrainRing takes up to max frames from the named rte_ring (a net_ring
// device's "ETH_RXTX0_<name>"), returns copies of them and frees the mbufs:
// for tests that check what was sent into a ring device.
func DrainRing(name string, max int) ([][]byte, error) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	buf := make([]byte, max*2048)
	lens := make([]C.uint32_t, max)
	n := C.sc_ring_drain(cs, (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.uint32_t(len(buf)), &lens[0], C.uint32_t(max))
	if n < 0 {
		return nil, fmt.Errorf("ring %s: error %d", name, -int(n))
	}
	out := make([][]byte, n)
	off := 0
	for i := range out {
		l := int(lens[i])
		out[i] = buf[off : off+l : off+l]
		off += l
	}
	return out, nil
}
