//go:build linux

// Receive from a TPACKET_V3 ring: retired ring blocks in, pool packets out.
// The kernel fills blocks in ring order; RxBurst follows it block by block,
// frame by frame. A TPACKET_V2 port's RxBurst goes to rx_v2.go; the copy
// out of the ring (fill) is shared.
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
	if p.opts.RxRing == RxRingV2 {
		return p.rxBurstV2(pool, pkts), nil
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
		mac := p.off + int(ne.Uint16(h[ffi.FrameMacOff:]))
		ok := fill(pk, ring[mac:mac+snap], int(ne.Uint32(h[ffi.FrameLenOff:])), status,
			uint16(ne.Uint32(h[ffi.FrameVlanTCIOff:])), ne.Uint16(h[ffi.FrameVlanTPIDOff:]))
		n = take(pkts, n, pk, ok, status, &oversize, &csum)
		p.left--
		if p.left == 0 {
			p.releaseBlock()
		} else {
			p.off += int(ne.Uint32(h[ffi.FrameNextOff:]))
		}
	}
	p.count(n, oversize, csum)
	return n, nil
}

// count adds a burst's tallies to the port's counters, skipping the stores
// for counters that did not move.
func (p *Port) count(n int, oversize, csum uint64) {
	if n > 0 {
		p.rxFrames.add(uint64(n))
	}
	if oversize > 0 {
		p.oversize.add(oversize)
	}
	if csum > 0 {
		p.csumNotReady.add(csum)
	}
}

// take puts a filled packet into the burst at n (counting a frame the
// kernel could not checksum) or frees one fill refused (oversize), and
// returns the burst's new length.
func take(pkts []*dataplane.Packet, n int, pk *dataplane.Packet, ok bool, status uint32, oversize, csum *uint64) int {
	if !ok {
		*oversize++
		pk.Free()
		return n
	}
	if status&unix.TP_STATUS_CSUMNOTREADY != 0 {
		*csum++
	}
	pkts[n] = pk
	return n + 1
}

// fill copies a frame from the ring into pk, as it was on the wire: wire is
// the frame's length before any truncation, status its ring status, tci and
// tpid the VLAN tag the kernel reports apart from the frame. It returns
// false, leaving pk to the caller, when the frame was truncated by the
// kernel (to fit a block or a slot) or does not fit pk: a partial frame must
// not be forwarded.
func fill(pk *dataplane.Packet, frame []byte, wire int, status uint32, tci, tpid uint16) bool {
	snap := len(frame)
	room := pk.RxRoom()
	vlan := status&unix.TP_STATUS_VLAN_VALID != 0 && snap >= 12
	need := snap
	if vlan {
		need += 4
	}
	if snap < wire || need > len(room) || status&unix.TP_STATUS_COPY != 0 {
		return false
	}
	if !vlan {
		copy(room, frame)
		pk.SetFrame(snap)
		return true
	}
	// Rx VLAN offload took the tag out into the frame header; put it back
	// where it was on the wire.
	if status&unix.TP_STATUS_VLAN_TPID_VALID == 0 {
		tpid = 0x8100
	}
	copy(room, frame[:12])
	binary.BigEndian.PutUint16(room[12:], tpid)
	binary.BigEndian.PutUint16(room[14:], tci)
	copy(room[16:], frame[12:])
	pk.SetFrame(need)
	return true
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
