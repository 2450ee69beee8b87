//go:build linux

// The port: Open builds the receive socket and its ring on an interface;
// Stats reads what the port and the kernel counted; Close gives everything
// back. Receive is in rx.go, transmit in tx.go.
package afpacket

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/sparsecast/sparsecast/dataplane"
	"golang.org/x/sys/unix"
)

// Port is an AF_PACKET switch port. RxBurst belongs to one worker and each
// TxQueue to one worker; Stats may be called from any goroutine. Close must
// not race with RxBurst, TxBurst or WaitFd users: stop the workers first
// (closing unmaps the ring they read).
type Port struct {
	name    string
	iface   string
	ifindex int
	mac     net.HardwareAddr
	opts    Options

	fd   int
	ring []byte
	// The namespace the port was opened in, where OpenTx makes its sockets.
	netns   int
	netnsID netnsID

	// Receive cursor, owned by the rx worker. V3: while left > 0 the worker
	// holds block blk and off is the ring offset of its next frame header.
	// V2: slot is the next frame slot to look at.
	blk  int
	left uint32
	off  int
	slot int
	// slots is the number of V2 frame slots in the ring.
	slots int

	rxFrames, oversize, csumNotReady counter

	closed atomic.Bool

	mu     sync.Mutex // guards txqs, kernel counters and Close
	txqs   []*txQueue
	kstats kernelStats
}

// counter has a single writer (a worker), which adds without a locked
// instruction; readers load it atomically.
type counter struct{ atomic.Uint64 }

func (c *counter) add(n uint64) { c.Store(c.Load() + n) }

// kernelStats accumulate PACKET_STATISTICS, which the kernel resets on
// every read.
type kernelStats struct{ packets, drops, freezes uint64 }

// Stats are a port's counters since Open.
type Stats struct {
	// RxFrames is frames RxBurst delivered.
	RxFrames uint64
	// KernelPackets is frames the kernel offered to the ring, including the
	// ones it dropped.
	KernelPackets uint64
	// KernelDrops is frames the kernel dropped because the ring was full
	// (every block, or in V2 the next frame slot, still held by user space).
	KernelDrops uint64
	// KernelFreezes counts the times a V3 ring filled up (V2 reports none).
	KernelFreezes uint64
	// Oversize is frames dropped by RxBurst because they did not fit the
	// pool buffer, or because the kernel truncated them to fit a block (V3)
	// or a frame slot (V2).
	Oversize uint64
	// CsumNotReady is frames delivered with TP_STATUS_CSUMNOTREADY: sent by
	// this host with checksum offload, L4 checksum not filled in.
	CsumNotReady uint64
	// TxFrames is frames the kernel accepted from TxBurst.
	TxFrames uint64
	// TxBusy counts TxBurst calls cut short by back-pressure: a transmit
	// ring whose slots the driver still holds, or EAGAIN/ENOBUFS (a full
	// socket buffer or device queue). The caller kept the rest; what its
	// queue cannot hold it drops as queue_full.
	TxBusy uint64
	// TxErrors is frames dropped by a send error specific to them (too long
	// for the MTU, too short for a header, refused by the kernel) plus hard
	// send errors returned.
	TxErrors uint64
	// TxOversize is frames dropped by TxBurst because they were longer than
	// a transmit ring slot (Options.TxFrameMax).
	TxOversize uint64
}

// Open opens a port on the interface iface in the calling thread's network
// namespace.
func Open(iface string, opts Options) (*Port, error) {
	opts = opts.withDefaults(iface)
	if err := opts.validate(); err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("afpacket: interface %q: %w (set the port's iface to an existing interface)", iface, err)
	}
	p := &Port{
		name:    opts.Name,
		iface:   iface,
		ifindex: ifi.Index,
		mac:     append(net.HardwareAddr(nil), ifi.HardwareAddr...),
		opts:    opts,
		fd:      -1,
		netns:   -1,
	}
	// The thread stays put while the namespace is recorded and the socket
	// made, so both are the namespace the interface was looked up in.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if p.netns, err = unix.Open(threadNetnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		p.netnsID, err = threadNetns()
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("afpacket: open %s: network namespace: %w", iface, err)
	}
	if err := p.openRx(); err != nil {
		p.Close()
		return nil, fmt.Errorf("afpacket: open %s: %w", iface, err)
	}
	return p, nil
}

// openRx sets up the receive socket. It is created with protocol 0, so it
// receives nothing until bind, after the ring exists: no frame lands in the
// ordinary socket queue or comes from another interface on the way.
func (p *Port) openRx() error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	p.fd = fd
	o := p.opts
	version := unix.TPACKET_V3
	if o.RxRing == RxRingV2 {
		version = unix.TPACKET_V2
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, version); err != nil {
		return fmt.Errorf("PACKET_VERSION: %w", err)
	}
	// Without this the switch would read back every frame it transmits on
	// the port (AF_PACKET taps see outgoing frames too).
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err)
	}
	// FrameSize divides BlockSize, so V2's slots tile each block with no
	// gap and slot i sits at i*FrameSize in the mapping.
	frames := uint32(o.BlockSize / o.FrameSize * o.BlockCount)
	if o.RxRing == RxRingV2 {
		req := unix.TpacketReq{
			Block_size: uint32(o.BlockSize),
			Block_nr:   uint32(o.BlockCount),
			Frame_size: uint32(o.FrameSize),
			Frame_nr:   frames,
		}
		if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return fmt.Errorf("PACKET_RX_RING (v2): %w", err)
		}
	} else {
		req := unix.TpacketReq3{
			Block_size:     uint32(o.BlockSize),
			Block_nr:       uint32(o.BlockCount),
			Frame_size:     uint32(o.FrameSize),
			Frame_nr:       frames,
			Retire_blk_tov: o.retireMillis(),
		}
		if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return fmt.Errorf("PACKET_RX_RING: %w", err)
		}
	}
	p.slots = int(frames)
	ring, err := unix.Mmap(fd, 0, o.BlockSize*o.BlockCount, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap ring: %w", err)
	}
	p.ring = ring
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: p.ifindex}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	// Promiscuous as a membership, not an interface flag: the kernel drops
	// it when the socket closes, even if the switch crashes.
	mreq := unix.PacketMreq{Ifindex: int32(p.ifindex), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fmt.Errorf("PACKET_MR_PROMISC: %w", err)
	}
	return nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

func (p *Port) Name() string                   { return p.name }
func (p *Port) HardwareAddr() net.HardwareAddr { return p.mac }

// Interface is the name of the interface the port is bound to.
func (p *Port) Interface() string { return p.iface }

// WaitFd is the receive socket: it polls readable when a retired block (V3)
// or a filled frame slot (V2) waits.
func (p *Port) WaitFd() int {
	if p.closed.Load() {
		return -1
	}
	return p.fd
}

// Stats returns the port's counters. It reads the kernel's counters, which
// takes a system call: call it at scrape time, not per burst.
func (p *Port) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.readKernelStats()
	s := Stats{
		RxFrames:      p.rxFrames.Load(),
		KernelPackets: p.kstats.packets,
		KernelDrops:   p.kstats.drops,
		KernelFreezes: p.kstats.freezes,
		Oversize:      p.oversize.Load(),
		CsumNotReady:  p.csumNotReady.Load(),
	}
	for _, q := range p.txqs {
		s.TxFrames += q.frames.Load()
		s.TxBusy += q.busy.Load()
		s.TxErrors += q.errors.Load()
		s.TxOversize += q.oversize.Load()
	}
	return s
}

// readKernelStats folds PACKET_STATISTICS into kstats; p.mu is held.
func (p *Port) readKernelStats() {
	if p.closed.Load() || p.fd < 0 {
		return
	}
	// The kernel reports tp_packets with the drops already added in. A V2
	// ring has no queue to freeze: its stats are the shorter struct.
	if p.opts.RxRing == RxRingV2 {
		st, err := unix.GetsockoptTpacketStats(p.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		if err != nil {
			return
		}
		p.kstats.packets += uint64(st.Packets)
		p.kstats.drops += uint64(st.Drops)
		return
	}
	st, err := unix.GetsockoptTpacketStatsV3(p.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return
	}
	p.kstats.packets += uint64(st.Packets)
	p.kstats.drops += uint64(st.Drops)
	p.kstats.freezes += uint64(st.Freeze_q_cnt)
}

// Close releases the ring and every socket of the port, transmit queues
// included. Counters stay readable. Calling it again does nothing.
func (p *Port) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return nil
	}
	p.readKernelStats()
	p.closed.Store(true)
	var errs []error
	if p.ring != nil {
		errs = append(errs, unix.Munmap(p.ring))
		p.ring = nil
	}
	if p.fd >= 0 {
		errs = append(errs, unix.Close(p.fd))
		p.fd = -1
	}
	for _, q := range p.txqs {
		errs = append(errs, q.close())
	}
	if p.netns >= 0 {
		errs = append(errs, unix.Close(p.netns))
		p.netns = -1
	}
	return errors.Join(errs...)
}

var _ dataplane.Port = (*Port)(nil)

// KernelDrops is the running total of frames the kernel dropped because the
// ring was full (metrics.KernelDropCounter).
func (p *Port) KernelDrops() uint64 { return p.Stats().KernelDrops }

// RxOversize is the frames RxBurst dropped as too big (Stats().Oversize),
// for the switch's drops_total{reason="too_big"}.
func (p *Port) RxOversize() uint64 { return p.oversize.Load() }

// TxOversize is the frames TxBurst dropped as too big for a transmit ring
// slot (Stats().TxOversize), also counted in drops_total{reason="too_big"}.
func (p *Port) TxOversize() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n uint64
	for _, q := range p.txqs {
		n += q.oversize.Load()
	}
	return n
}
