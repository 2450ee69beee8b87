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
// released buffers it hands back.
type workerCtx struct {
	c     *ffi.Ctx
	pools []*dataplane.Pool
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
