//go:build dpdk

// What one process shares between its DPDK ports: the EAL, the header and
// indirect mbuf pools every transmit queue takes copies from, and the
// workers' C contexts, found by the OS thread that polls.
package dpdkport

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/ffi"
)

// Built reports whether this binary can open DPDK ports.
const Built = true

// Pool sizes shared by every port of the process. A header mbuf holds a
// copy's headers, or a whole frame that came from a non-DPDK port; each
// transmit queue keeps ffi.DPDKStash of them ready.
const (
	headerMbufs = 32768
	cloneMbufs  = 32768
)

var env struct {
	mu     sync.Mutex
	seq    int
	hdr    *ffi.Pool
	clones *ffi.ClonePool
	ctxs   map[int]*workerCtx // by thread ID
	open   int                // ports open
	pools  []*ffi.Pool        // receive pools, freed with the last port
}

// workerCtx is one worker's C context and the external pools whose
// released buffers it hands back. hdr (made with the context when it
// receives) lends the worker's copies header mbufs: a copy's header is
// written into the mbuf that is sent, the header stash of the context
// refilling it once per burst.
type workerCtx struct {
	c     *ffi.Ctx
	pools []*dataplane.Pool
	hdr   *dataplane.Pool
}

// headerLend is how many header mbufs a worker's header pool holds ready:
// a burst of 32 at fan-out 16.
const headerLend = 512

// lend tops the worker's header pool up from the context's stash (what
// the last C call allocated).
func (w *workerCtx) lend() {
	if w.hdr == nil {
		return
	}
	if n := w.hdr.Lendable(headerLend); n > 0 {
		for _, i := range w.c.TakeHeaders(n) {
			w.hdr.Lend(int(i))
		}
	}
}

// reclaim gives the C context back the header mbufs lent and not used, so
// the shared header mempool does not lose them when the context goes.
func (w *workerCtx) reclaim() {
	if w.hdr == nil {
		return
	}
	w.c.Release(w.hdr.Unlend())
	w.hdr = nil
}

// start initialises the EAL and the shared pools once. env.mu is held.
func start(o Options) error {
	if err := ffi.EALInit(o.EAL); err != nil {
		return fmt.Errorf("dpdk: EAL %q: %w", o.EAL, err)
	}
	if env.hdr != nil {
		return nil
	}
	hdr, err := ffi.NewPool("sc_hdr", headerMbufs, max(o.DataRoom, 2048+ffi.DPDKHeadroom))
	if err != nil {
		return fmt.Errorf("dpdk: %w", err)
	}
	clones, err := ffi.NewClonePool("sc_clone", cloneMbufs)
	if err != nil {
		hdr.Free()
		return fmt.Errorf("dpdk: %w", err)
	}
	env.hdr, env.clones = hdr, clones
	env.ctxs = map[int]*workerCtx{}
	return nil
}

// ctxForThread returns the calling thread's context, registering the thread
// as a DPDK lcore and making the context the first time. Called once per
// port and queue, from the worker's locked thread.
func ctxForThread(create bool) (*workerCtx, error) {
	tid := unix.Gettid()
	env.mu.Lock()
	defer env.mu.Unlock()
	if c := env.ctxs[tid]; c != nil || !create {
		return c, nil
	}
	if err := ffi.RegisterThread(); err != nil {
		return nil, err
	}
	c, err := ffi.NewCtx()
	if err != nil {
		return nil, err
	}
	w := &workerCtx{c: c}
	c.SetHeaderPool(env.hdr)
	w.hdr = dataplane.NewExternalPool(env.hdr.Views(), env.hdr.Handles())
	w.pools = append(w.pools, w.hdr)
	env.ctxs[tid] = w
	return w, nil
}

// release hands every pool's released buffers to the C context.
func (w *workerCtx) release() {
	for _, p := range w.pools {
		if r := p.Released(); len(r) > 0 {
			w.c.Release(r)
		}
	}
}
