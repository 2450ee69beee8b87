//go:build linux

// Receive: retired ring blocks in, pool packets out. The kernel fills blocks
// in ring order; RxBurst follows it block by block, frame by frame.
package afpacket

import (
	"encoding/binary"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/ffi"
	"golang.org/x/sys/unix"
)

var ne = binary.NativeEndian

// RxBurst copies up to len(pkts) frames from retired blocks into buffers from
// pool. It stops early when no retired block is left or the pool is empty,
// and picks up where it stopped on the next call. It never blocks.
func (p *Port) RxBurst(pool *dataplane.Pool, pkts []*dataplane.Packet) (int, error) {
	if p.closed.Load() {
		return 0, dataplane.ErrPortClosed
	}
	ring, bs := p.ring, p.opts.BlockSize
	n := 0
	var oversize, csum uint64
	for n < len(pkts) {
		if p.left == 0 {
			// Take the next block if the kernel has retired it.
			base := p.blk * bs
			if ffi.LoadUint32(ring, base+ffi.BlockStatusOff)&unix.TP_STATUS_USER == 0 {
				break
			}
			p.left = ne.Uint32(ring[base+ffi.BlockNumPktsOff:])
			p.off = base + int(ne.Uint32(ring[base+ffi.BlockFirstPktOff:]))
			if p.left == 0 {
				p.releaseBlock()
				continue
			}
		}
		pk := pool.Get()
		if pk == nil {
			break
		}
		h := ring[p.off : p.off+ffi.FrameHdrSize]
		status := ne.Uint32(h[ffi.FrameStatusOff:])
		snap := int(ne.Uint32(h[ffi.FrameSnaplenOff:]))
		wire := int(ne.Uint32(h[ffi.FrameLenOff:]))
		mac := p.off + int(ne.Uint16(h[ffi.FrameMacOff:]))
		frame := ring[mac : mac+snap]
		room := pk.RxRoom()
		vlan := status&unix.TP_STATUS_VLAN_VALID != 0 && snap >= 12
		need := snap
		if vlan {
			need += 4
		}
		switch {
		case snap < wire || need > len(room):
			// Truncated by the kernel to fit a block, or bigger than a
			// buffer: a partial frame must not be forwarded.
			oversize++
			pk.Free()
			pk = nil
		case vlan:
			// Rx VLAN offload took the tag out into the frame header; put it
			// back where it was on the wire.
			tpid := uint16(0x8100)
			if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
				tpid = ne.Uint16(h[ffi.FrameVlanTPIDOff:])
			}
			copy(room, frame[:12])
			binary.BigEndian.PutUint16(room[12:], tpid)
			binary.BigEndian.PutUint16(room[14:], uint16(ne.Uint32(h[ffi.FrameVlanTCIOff:])))
			copy(room[16:], frame[12:])
			pk.SetFrame(need)
			pkts[n] = pk
			n++
		default:
			copy(room, frame)
			pk.SetFrame(snap)
			pkts[n] = pk
			n++
		}
		if pk != nil && status&unix.TP_STATUS_CSUMNOTREADY != 0 {
			csum++
		}
		p.left--
		if p.left == 0 {
			p.releaseBlock()
		} else {
			p.off += int(ne.Uint32(h[ffi.FrameNextOff:]))
		}
	}
	if n > 0 {
		p.rxFrames.add(uint64(n))
	}
	if oversize > 0 {
		p.oversize.add(oversize)
	}
	if csum > 0 {
		p.csumNotReady.add(csum)
	}
	return n, nil
}

// releaseBlock hands the current block back to the kernel and moves on. The
// store is atomic (a release) so the kernel, which may be waiting for this
// very block with its queue frozen, sees it only after our reads are done.
func (p *Port) releaseBlock() {
	ffi.StoreUint32(p.ring, p.blk*p.opts.BlockSize+ffi.BlockStatusOff, unix.TP_STATUS_KERNEL)
	p.left = 0
	p.blk++
	if p.blk == p.opts.BlockCount {
		p.blk = 0
	}
}
