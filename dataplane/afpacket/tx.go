//go:build linux

// Transmit: bursts of packets in, one system call out per burst. Each worker
// has its own socket and, with it, its own transmit ring (TxRing,
// tx_ring.go) or preallocated message vector (TxSendmmsg, here), so TxBurst
// takes no lock and allocates nothing.
package afpacket

import (
	"errors"
	"fmt"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/ffi"
	"golang.org/x/sys/unix"
)

type txQueue struct {
	port *Port
	fd   int
	msgs *ffi.Mmsgs // TxSendmmsg
	ring *txRing    // TxRing and TxRingZeroCopy

	frames, busy, errors, oversize counter
}

// OpenTx opens a transmit socket for one worker, in the port's namespace
// whatever thread calls it. It is bound to the interface with protocol 0: it
// can send, but no frame is ever queued to it.
func (p *Port) OpenTx() (dataplane.TxQueue, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return nil, dataplane.ErrPortClosed
	}
	fd, err := socketIn(p.netns, p.netnsID)
	if err != nil {
		return nil, fmt.Errorf("afpacket: tx socket on %s: %w", p.iface, err)
	}
	q := &txQueue{port: p, fd: fd}
	if err := q.setup(); err != nil {
		q.close()
		return nil, fmt.Errorf("afpacket: tx socket on %s: %w", p.iface, err)
	}
	p.txqs = append(p.txqs, q)
	return q, nil
}

func (q *txQueue) setup() error {
	p := q.port
	if p.opts.QdiscBypass {
		if err := unix.SetsockoptInt(q.fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
		}
	}
	// SO_SNDBUFFORCE passes net.core.wmem_max but needs CAP_NET_ADMIN; fall
	// back to whatever the limit allows.
	if unix.SetsockoptInt(q.fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, p.opts.SendBuffer) != nil {
		unix.SetsockoptInt(q.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, p.opts.SendBuffer)
	}
	if p.opts.Tx == TxSendmmsg {
		q.msgs = ffi.NewMmsgs(p.opts.TxBatch)
	} else if err := q.setupRing(); err != nil {
		return err
	}
	return unix.Bind(q.fd, &unix.SockaddrLinklayer{Ifindex: p.ifindex})
}

// TxBurst sends pkts in order and frees the ones the kernel took: through
// the ring (txBurstRing) or, in TxSendmmsg mode, with one sendmmsg per
// TxBatch frames. A full socket buffer or device queue (EAGAIN,
// ENOBUFS) ends the burst early with no error: the caller keeps the rest and
// retries. A frame the kernel refuses on its own account (EMSGSIZE: longer
// than the MTU; EINVAL: shorter than a link header) is dropped, counted in
// TxErrors and counted as taken, so it cannot wedge the queue. Other errors
// (the interface went down or away) are returned with the count sent.
func (q *txQueue) TxBurst(pkts []*dataplane.Packet) (int, error) {
	if q.port.closed.Load() {
		return 0, dataplane.ErrPortClosed
	}
	if q.ring != nil {
		return q.txBurstRing(pkts)
	}
	taken := 0
	for taken < len(pkts) {
		batch := pkts[taken:min(len(pkts), taken+q.msgs.Len())]
		for i, pk := range batch {
			q.msgs.Set(i, pk.Head, pk.Tail)
		}
		sent, errno := q.msgs.Send(q.fd, 0, len(batch), unix.MSG_DONTWAIT)
		for _, pk := range batch[:sent] {
			pk.Free()
		}
		taken += sent
		q.frames.add(uint64(sent))
		switch errno {
		case 0:
			if sent < len(batch) {
				// The kernel stopped at a frame it could not take; its error
				// comes back on the next call, after the caller's backoff.
				return taken, nil
			}
		case unix.EAGAIN, unix.ENOBUFS:
			q.busy.add(1)
			return taken, nil
		case unix.EMSGSIZE, unix.EINVAL:
			pkts[taken].Free()
			taken++
			q.errors.add(1)
		default:
			q.errors.add(1)
			return taken, errno
		}
	}
	return taken, nil
}

// close is called by Port.Close with the port's lock held.
func (q *txQueue) close() error {
	var errs []error
	if q.msgs != nil {
		q.msgs.Clear()
	}
	if q.ring != nil {
		errs = append(errs, q.ring.close())
	}
	if q.fd >= 0 {
		errs = append(errs, unix.Close(q.fd))
		q.fd = -1
	}
	return errors.Join(errs...)
}
