//go:build linux

// Receive from a TPACKET_V2 ring: filled frame slots in, pool packets out.
// The kernel fills slots in ring order, marking each TP_STATUS_USER (and
// waking poll) as soon as its frame is written; rxBurstV2 follows it slot by
// slot and hands each slot back as soon as its frame is copied.
package afpacket

import (
	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/ffi"
	"golang.org/x/sys/unix"
)

// rxBurstV2 is RxBurst for a V2 ring. It stops at the first slot the kernel
// has not filled, or when the pool is empty, leaving the cursor on the slot
// it has not taken, so the next call starts there.
func (p *Port) rxBurstV2(pool *dataplane.Pool, pkts []*dataplane.Packet) int {
	ring, fs := p.ring, p.opts.FrameSize
	n := 0
	var oversize, csum uint64
	for n < len(pkts) {
		base := p.slot * fs
		status := ffi.LoadUint32(ring, base+ffi.V2StatusOff)
		if status&unix.TP_STATUS_USER == 0 {
			break
		}
		pk := pool.Get()
		if pk == nil {
			break
		}
		slot := ring[base : base+fs]
		snap := int(ne.Uint32(slot[ffi.V2SnaplenOff:]))
		mac := int(ne.Uint16(slot[ffi.V2MacOff:]))
		// The kernel never writes past its slot; checking costs a compare
		// and keeps a corrupt header from taking the worker down.
		ok := mac+snap <= fs && fill(pk, slot[mac:mac+snap], int(ne.Uint32(slot[ffi.V2LenOff:])), status,
			ne.Uint16(slot[ffi.V2VlanTCIOff:]), ne.Uint16(slot[ffi.V2VlanTPIDOff:]))
		n = take(pkts, n, pk, ok, status, &oversize, &csum)
		// Hand the slot back only after the copy: the store is a release,
		// so the kernel cannot overwrite the frame while it is read.
		ffi.StoreUint32(ring, base+ffi.V2StatusOff, unix.TP_STATUS_KERNEL)
		p.slot++
		if p.slot == p.slots {
			p.slot = 0
		}
	}
	p.count(n, oversize, csum)
	return n
}
