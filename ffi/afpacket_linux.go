// AF_PACKET support: in, a TPACKET_V3 or TPACKET_V2 ring mapped from the
// kernel, whose status words the kernel and user space hand back and forth
// (per block in V3, per frame in V2); out, batches of
// two-segment frames handed to sendmmsg(2). The ring's other fields are
// plain native-endian reads done by package afpacket with the
// offsets exported here.
package ffi

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TPACKET_V3 layout, taken from x/sys's copies of the kernel structs so a
// wrong offset cannot be typed in by hand. A ring is block_nr blocks; each
// starts with a tpacket_block_desc whose bh1 header says who owns the block
// and how many frames it holds; frames follow, each a tpacket3_hdr with the
// frame at tp_mac bytes from the header.
const (
	blockHdr = unsafe.Offsetof(unix.TpacketBlockDesc{}.Hdr)

	// Block (struct tpacket_block_desc, header tpacket_hdr_v1) offsets.
	BlockStatusOff   = int(blockHdr + unsafe.Offsetof(unix.TpacketHdrV1{}.Block_status))
	BlockNumPktsOff  = int(blockHdr + unsafe.Offsetof(unix.TpacketHdrV1{}.Num_pkts))
	BlockFirstPktOff = int(blockHdr + unsafe.Offsetof(unix.TpacketHdrV1{}.Offset_to_first_pkt))
	BlockLenOff      = int(blockHdr + unsafe.Offsetof(unix.TpacketHdrV1{}.Blk_len))

	// Frame (struct tpacket3_hdr) offsets.
	FrameNextOff     = int(unsafe.Offsetof(unix.Tpacket3Hdr{}.Next_offset))
	FrameSnaplenOff  = int(unsafe.Offsetof(unix.Tpacket3Hdr{}.Snaplen))
	FrameLenOff      = int(unsafe.Offsetof(unix.Tpacket3Hdr{}.Len))
	FrameStatusOff   = int(unsafe.Offsetof(unix.Tpacket3Hdr{}.Status))
	FrameMacOff      = int(unsafe.Offsetof(unix.Tpacket3Hdr{}.Mac))
	FrameVlanTCIOff  = int(unsafe.Offsetof(unix.Tpacket3Hdr{}.Hv1) + unsafe.Offsetof(unix.TpacketHdrVariant1{}.Vlan_tci))
	FrameVlanTPIDOff = int(unsafe.Offsetof(unix.Tpacket3Hdr{}.Hv1) + unsafe.Offsetof(unix.TpacketHdrVariant1{}.Vlan_tpid))
	FrameHdrSize     = int(unsafe.Sizeof(unix.Tpacket3Hdr{}))
)

// TPACKET_V2 layout, from the same source. A V2 ring is an array of
// fixed-size frame slots (tpacket_req.tp_frame_size apart when the frame
// size divides the block size); each slot starts with a tpacket2_hdr whose
// tp_status says who owns the slot, with the frame at tp_mac bytes from the
// slot's start.
const (
	V2StatusOff   = int(unsafe.Offsetof(unix.Tpacket2Hdr{}.Status))
	V2LenOff      = int(unsafe.Offsetof(unix.Tpacket2Hdr{}.Len))
	V2SnaplenOff  = int(unsafe.Offsetof(unix.Tpacket2Hdr{}.Snaplen))
	V2MacOff      = int(unsafe.Offsetof(unix.Tpacket2Hdr{}.Mac))
	V2VlanTCIOff  = int(unsafe.Offsetof(unix.Tpacket2Hdr{}.Vlan_tci))
	V2VlanTPIDOff = int(unsafe.Offsetof(unix.Tpacket2Hdr{}.Vlan_tpid))
	V2HdrSize     = int(unsafe.Sizeof(unix.Tpacket2Hdr{}))
	// V2TxDataOff is where a frame starts in a V2 transmit ring slot: the
	// kernel reads it at TPACKET2_HDRLEN - sizeof(struct sockaddr_ll), the
	// header rounded up to TPACKET_ALIGNMENT (16), unless the socket has
	// PACKET_TX_HAS_OFF.
	V2TxDataOff = (V2HdrSize + 15) &^ 15
)

// word returns the 32-bit word at off in b. The index expression bounds-checks
// the whole word before the pointer is formed; off must be 4-aligned (ring
// fields are) for the atomic access to be one instruction.
func word(b []byte, off int) *uint32 {
	_ = b[off+3]
	return (*uint32)(unsafe.Pointer(&b[off]))
}

// LoadUint32 atomically loads the word at off in b: an acquire load of a
// status word the kernel writes, so reads of what the word guards (a block's
// frames, a slot's frame) that follow it see the kernel's writes.
func LoadUint32(b []byte, off int) uint32 { return atomic.LoadUint32(word(b, off)) }

// StoreUint32 atomically stores v at off in b: a release store handing a
// block (V3) or a frame slot (V2) back to the kernel after its frames have
// been read.
func StoreUint32(b []byte, off int, v uint32) { atomic.StoreUint32(word(b, off), v) }

// Mmsgs is a preallocated sendmmsg(2) vector: each message is one frame of up
// to two segments (a header and a shared payload), so a payload shared by
// several copies goes to the kernel by reference and is never copied in user
// space. It is owned by one goroutine; Set and Send allocate nothing.
type Mmsgs struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec // two per message
}

// NewMmsgs returns a vector of n messages.
func NewMmsgs(n int) *Mmsgs {
	m := &Mmsgs{hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, 2*n)}
	for i := range m.hdrs {
		m.hdrs[i].Hdr.Iov = &m.iovs[2*i]
	}
	return m
}

// Len is the number of messages the vector holds.
func (m *Mmsgs) Len() int { return len(m.hdrs) }

// Set makes message i the frame head followed by tail; empty segments are
// left out. The vector references head and tail until the next Set or Clear.
func (m *Mmsgs) Set(i int, head, tail []byte) {
	iov := m.iovs[2*i : 2*i+2 : 2*i+2]
	k := 0
	if len(head) > 0 {
		iov[k] = unix.Iovec{Base: &head[0], Len: uint64(len(head))}
		k++
	}
	if len(tail) > 0 {
		iov[k] = unix.Iovec{Base: &tail[0], Len: uint64(len(tail))}
		k++
	}
	h := &m.hdrs[i].Hdr
	h.Iov = &iov[0]
	h.Iovlen = uint64(k)
}

// Clear drops the vector's references to frame buffers, so that a vector kept
// after its port closes does not pin them.
func (m *Mmsgs) Clear() {
	clear(m.iovs)
	for i := range m.hdrs {
		m.hdrs[i].Hdr.Iovlen = 0
	}
}

// Send sends messages [from, to) on fd with one sendmmsg call and returns how
// many the kernel took. As sendmmsg(2) does, it reports an error only when
// the first message failed (sent is then 0); an error on a later message ends
// the batch early and is seen again on the next call.
func (m *Mmsgs) Send(fd, from, to, flags int) (sent int, errno unix.Errno) {
	if from >= to {
		return 0, 0
	}
	_ = m.hdrs[from:to]
	// The uintptr conversion sits in the call expression, so the array stays
	// alive (and the heap does not move) for the call; the buffers it points
	// at are kept alive by the vector's own iovecs.
	r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd),
		uintptr(unsafe.Pointer(&m.hdrs[from])), uintptr(to-from), uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}
