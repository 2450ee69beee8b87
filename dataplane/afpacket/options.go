// Options of an AF_PACKET port: what the ring and the sockets are sized to,
// and why the defaults are what they are.
package afpacket

import (
	"fmt"
	"os"
	"time"

	"github.com/sparsecast/sparsecast/dataplane"
)

// RxRing is the layout of the receive ring, which decides when the kernel
// hands a frame over.
type RxRing string

const (
	// RxRingV3 (TPACKET_V3) packs frames back to back into blocks and hands
	// a block over when it is full or when RetireTimeout expires: one
	// wake-up per block and little memory per small frame, so it holds up
	// best at high rates, but at low rates every frame waits up to the
	// timeout (1 ms at least).
	RxRingV3 RxRing = "v3"
	// RxRingV2 (TPACKET_V2) gives each frame its own FrameSize slot and
	// hands it over as soon as the kernel has written it, waking poll(2)
	// per frame: no block timer, so a frame waits only for the receiver to
	// wake. Each slot takes FrameSize bytes whatever the frame's size, and
	// each frame costs the kernel a wake-up attempt.
	RxRingV2 RxRing = "v2"
)

// ethHdrLen is the shortest frame a transmit ring slot may carry: the
// kernel refuses anything shorter than the link header.
const ethHdrLen = 14

// TxMode is how a transmit queue hands frames to the kernel.
type TxMode string

const (
	// TxRing copies each frame into a PACKET_TX_RING slot and sends a whole
	// burst with one send(2) (tx_ring.go); the kernel copies each frame from
	// its slot into the skb it sends, which on veth is the cheapest: see
	// TxRingZeroCopy.
	TxRing TxMode = "ring"
	// TxRingZeroCopy is TxRing with the skb pointing at the frame in its
	// slot instead of holding a copy, so a driver that transmits from
	// memory (a NIC) reads the ring itself. Where the frame is handed on
	// inside the kernel instead (veth, a bridge), the kernel first copies
	// it into freshly allocated pages, which costs more than TxRing's copy.
	TxRingZeroCopy TxMode = "ring-zerocopy"
	// TxSendmmsg hands a burst to one sendmmsg(2), a message per frame with
	// the frame's Head and Tail as two iovecs (tx.go).
	TxSendmmsg TxMode = "sendmmsg"
)

// Options tune a port. The zero value gives the defaults.
type Options struct {
	// Name is the port's label in metrics; default the interface name.
	Name string
	// RxRing is the receive ring's layout. Default RxRingV3.
	RxRing RxRing
	// BlockSize is the size of one ring block, a power-of-two multiple of the
	// page size. Default 16 KiB: a hundred small frames or seven 2 KiB ones. Small blocks retire sooner when traffic is moderate
	// (a full block is handed over without waiting for the timeout) and make
	// the worst-case frame size a block holds still comfortably above a
	// jumbo-less MTU; the kernel truncates a frame bigger than a block, and
	// RxBurst then drops it as Oversize.
	BlockSize int
	// BlockCount is the number of blocks. V3: default 512, an 8 MiB ring. At
	// low rates each block is retired by its timeout (1 ms) holding a few
	// frames, so the ring's reach in time is about BlockCount milliseconds:
	// 512 lets a worker descheduled for half a second (a loaded lab machine)
	// lose nothing; at high rates it holds about 60,000 small frames.
	// V2: default 1024, a 16 MiB ring of 8192 slots of 2 KiB, since every
	// frame, however small, takes a whole slot: at the lab's 5,000 frames/s
	// that is over a second of frames, at 500,000 frames/s 16 ms.
	BlockCount int
	// FrameSize is the frame slot size; it must divide BlockSize. V3 packs
	// frames back to back, so there it only sets the kernel's frame count
	// bookkeeping. In V2 it is each frame's slot: its header and padding
	// take the first 66 bytes, so a frame longer than FrameSize-66 is
	// truncated by the kernel and RxBurst drops it as Oversize. Default
	// 2048, room for a 1500-byte MTU frame with two VLAN tags.
	FrameSize int
	// RetireTimeout is how long the kernel keeps a V3 block open with
	// frames in it before handing it over anyway (V2 has no blocks to
	// retire and ignores it). The kernel counts it in whole
	// milliseconds and 1 ms is the least it takes (0 would mean "derive it
	// from the link speed", 8 ms on veth). Default 1 ms, the smallest: at low
	// rates every frame waits up to this long.
	RetireTimeout time.Duration
	// QdiscBypass sends straight to the driver, skipping the interface's
	// queueing discipline (PACKET_QDISC_BYPASS): less work per frame where
	// there is a qdisc, but no traffic shaping, no copy for local taps
	// (tcpdump, or the failover lab's watch, on the switch's own end of
	// the link does not see what it sends; on the far end it does), and a
	// full device queue shows up at once as a full ring or ENOBUFS instead
	// of being absorbed by the qdisc. On veth, whose default qdisc is
	// noqueue, BenchmarkTx saw no difference. Off by default.
	QdiscBypass bool
	// Tx is how frames are sent. Default TxRing.
	Tx TxMode
	// TxFrames is the number of slots of each transmit ring: the
	// most frames a queue has in the kernel's hands at once, sent and not
	// yet freed by the driver. Default 512, fewer for slots of jumbo frames
	// (at most 8 MiB a ring).
	TxFrames int
	// TxFrameMax is the longest frame a transmit ring slot holds; a longer
	// one is dropped and counted (Stats.TxOversize). Default 2048, the
	// switch's default buffer less its headroom (the switch sets it from
	// its buffer size).
	TxFrameMax int
	// TxBatch is the most frames one sendmmsg carries (TxSendmmsg).
	// Default dataplane.BurstSize.
	TxBatch int
	// SendBuffer is the transmit socket buffer in bytes, forced past
	// net.core.wmem_max when running as root. Default 4 MiB, so a NIC's
	// qdisc can hold a few bursts from each worker before EAGAIN.
	SendBuffer int
}

func (o Options) withDefaults(iface string) Options {
	if o.Name == "" {
		o.Name = iface
	}
	if o.RxRing == "" {
		o.RxRing = RxRingV3
	}
	if o.BlockSize == 0 {
		o.BlockSize = 16 << 10
	}
	if o.BlockCount == 0 {
		o.BlockCount = 512
		if o.RxRing == RxRingV2 {
			o.BlockCount = 1024
		}
	}
	if o.FrameSize == 0 {
		o.FrameSize = 2048
		if o.FrameSize > o.BlockSize {
			o.FrameSize = o.BlockSize
		}
	}
	if o.RetireTimeout == 0 {
		o.RetireTimeout = time.Millisecond
	}
	if o.Tx == "" {
		o.Tx = TxRing
	}
	if o.TxFrameMax == 0 {
		o.TxFrameMax = 2048
	}
	if o.TxFrames == 0 {
		// 512 slots, fewer when slots are big (jumbo frames): at most
		// 8 MiB a ring, and never fewer than two bursts.
		o.TxFrames = min(512, max(2*dataplane.BurstSize, (8<<20)/(o.TxFrameMax+64)))
	}
	if o.TxBatch == 0 {
		o.TxBatch = dataplane.BurstSize
	}
	if o.SendBuffer == 0 {
		o.SendBuffer = 4 << 20
	}
	return o
}

func (o Options) validate() error {
	page := os.Getpagesize()
	switch {
	case o.RxRing != RxRingV3 && o.RxRing != RxRingV2:
		return fmt.Errorf("afpacket: rx ring %q: want v2 or v3", o.RxRing)
	case o.BlockSize < page || o.BlockSize%page != 0 || !pow2(o.BlockSize/page):
		return fmt.Errorf("afpacket: block size %d is not a power-of-two multiple of the page size %d", o.BlockSize, page)
	case o.BlockCount < 1:
		return fmt.Errorf("afpacket: block count %d", o.BlockCount)
	case o.FrameSize < 64 || o.FrameSize%16 != 0 || o.BlockSize%o.FrameSize != 0:
		// TPACKET_ALIGNMENT is 16; the kernel refuses other frame sizes.
		return fmt.Errorf("afpacket: frame size %d must be a multiple of 16 dividing the block size", o.FrameSize)
	case o.RetireTimeout < 0:
		return fmt.Errorf("afpacket: negative retire timeout")
	case o.Tx != TxRing && o.Tx != TxRingZeroCopy && o.Tx != TxSendmmsg:
		return fmt.Errorf("afpacket: tx %q: want ring, ring-zerocopy or sendmmsg", o.Tx)
	case o.TxFrames < 1 || o.TxFrames > 1<<16:
		return fmt.Errorf("afpacket: tx ring of %d frames: want 1-65536", o.TxFrames)
	case o.TxFrameMax < ethHdrLen || o.TxFrameMax > 65535:
		// 65535: the vnet header's hdr_len is 16 bits.
		return fmt.Errorf("afpacket: tx frame max %d: want %d-65535", o.TxFrameMax, ethHdrLen)
	case o.TxBatch < 1:
		return fmt.Errorf("afpacket: tx batch %d", o.TxBatch)
	}
	return nil
}

// retireMillis rounds the timeout up to the kernel's milliseconds.
func (o Options) retireMillis() uint32 {
	ms := (o.RetireTimeout + time.Millisecond - 1) / time.Millisecond
	return uint32(max(ms, 1))
}

func pow2(n int) bool { return n > 0 && n&(n-1) == 0 }
