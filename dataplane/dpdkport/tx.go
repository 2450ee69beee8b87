//go:build dpdk

// Transmit: packets in, descriptors in C memory out, sent by the worker's
// next C call. Three kinds of packet reach a DPDK queue:
//
//  1. the head is in an mbuf (a frame received on a DPDK port, rewritten in
//     place, maybe the last copy of a replicated one): sent by reference;
//  2. the head is a header the switch built in its own buffer and the tail
//     a payload in an mbuf (a copy): the header goes into a fresh header
//     mbuf, chained to an indirect mbuf on the payload;
//  3. everything is in Go memory (a frame from an AF_PACKET or in-memory
//     port, or a probe): the frame is copied into a header mbuf.
package dpdkport

import (
	"fmt"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/ffi"
)

type txQueue struct {
	port *Port
	q    *ffi.TxQueue
	// ctx is the context whose C calls send this queue, bound on the first
	// TxBurst; own is set when the worker receives from no DPDK port and
	// the queue sends itself.
	ctx   *workerCtx
	own   bool
	bound bool
	// tooBig counts frames dropped for not fitting a header mbuf.
	tooBig uint64
}

// OpenTx opens the next of the port's transmit queues for one worker.
func (p *Port) OpenTx() (dataplane.TxQueue, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return nil, dataplane.ErrPortClosed
	}
	if len(p.txqs) == p.opts.TxQueues {
		return nil, fmt.Errorf("dpdk: %s: all %d transmit queues open (one per worker: raise workers)", p.dev, p.opts.TxQueues)
	}
	env.mu.Lock()
	q, err := ffi.NewTxQueue(p.port, len(p.txqs), env.hdr, env.clones)
	env.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("dpdk: %s: %w", p.dev, err)
	}
	t := &txQueue{port: p, q: q}
	p.txqs = append(p.txqs, t)
	return t, nil
}

// bind finds the context that sends this queue: the calling worker's if it
// receives from a DPDK port, else one of the queue's own.
func (t *txQueue) bind() error {
	w, err := ctxForThread(false)
	if err != nil {
		return err
	}
	if w == nil {
		if err := ffi.RegisterThread(); err != nil {
			return err
		}
		c, err := ffi.NewCtx()
		if err != nil {
			return err
		}
		w, t.own = &workerCtx{c: c}, true
	}
	env.mu.Lock()
	err = w.c.AddTxQueue(t.q)
	env.mu.Unlock()
	if err != nil {
		return err
	}
	t.ctx, t.bound = w, true
	// Fill the header stash now rather than on the next round.
	w.c.Flush()
	return nil
}

// TxBurst queues pkts and returns how many it took; it stops early when the
// queue or its header stash is full until the next flush.
func (t *txQueue) TxBurst(pkts []*dataplane.Packet) (int, error) {
	if t.port.closed.Load() {
		return 0, dataplane.ErrPortClosed
	}
	if !t.bound {
		if err := t.bind(); err != nil {
			return 0, fmt.Errorf("dpdk: %s: %w", t.port.dev, err)
		}
	}
	q := t.q
	room := q.Room()
	taken := 0
	for _, pk := range pkts {
		if taken == room {
			break
		}
		head, off, hn, tail, toff, tn, ref, ok := pk.ConsignRef()
		if ok {
			q.Ref(head, off, hn, tail, toff, tn, ref)
			taken++
			continue
		}
		data, h, ok := q.Stash()
		if !ok {
			break
		}
		switch {
		case tail != 0:
			// A copy: its header into the header mbuf, its payload by
			// reference.
			if len(pk.Head) > len(data) {
				t.drop(pk, h)
				break
			}
			q.Ref(h, ffi.DPDKHeadroom, copy(data, pk.Head), tail, toff, len(pk.Tail), false)
			pk.Free()
		case pk.Len() > len(data):
			t.drop(pk, h)
		default:
			q.Ref(h, ffi.DPDKHeadroom, pk.CopyTo(data), 0, 0, 0, false)
			pk.Free()
		}
		taken++
	}
	if t.own && taken > 0 {
		t.ctx.c.Flush()
	}
	return taken, nil
}

// drop frees a frame too big for a header mbuf; the stash mbuf goes back
// with the next flush.
func (t *txQueue) drop(pk *dataplane.Packet, h uintptr) {
	pk.Free()
	t.ctx.c.ReleaseOne(h)
	t.tooBig++
}

// free is called by Port.Close with the port's and env's locks held.
func (t *txQueue) free() {
	if t.bound {
		t.ctx.c.RemoveTxQueue(t.q)
		if t.own {
			t.ctx.c.Free()
		}
	}
	t.q.Free()
}
