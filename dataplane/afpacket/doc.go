// Package afpacket is a switch port over Linux AF_PACKET sockets, for veth
// pairs and ordinary NICs, in pure Go (the pointer work is in package ffi).
//
// Receive, one worker:
//
//  1. The kernel copies each frame arriving on the interface into the
//     current block of a TPACKET_V3 ring shared with us (mmap). Frames this
//     host sends (ours included) are left out (PACKET_IGNORE_OUTGOING), and
//     the socket is a promiscuous member of the interface.
//  2. The kernel retires a block when it is full or when the retire timeout
//     expires with frames in it, marks it TP_STATUS_USER and wakes poll(2) on
//     WaitFd. A frame waits in an open block until then, so at low rates the
//     retire timeout is the latency floor (see Options.RetireTimeout). With
//     the default 1 ms, one frame at a time over veth (kernel 6.18, HZ=250,
//     2 vCPUs) took median 0.78 ms, p90 0.9 ms from TxBurst to RxBurst with
//     the receiver asleep in poll; the tail (p99 up to ~10 ms) is the
//     sleeping thread's wake-up, as a busy-polling receiver saw p99 1.2 ms.
//  3. RxBurst walks retired blocks in ring order, copying each frame into a
//     buffer of the worker's pool, and hands a block back (TP_STATUS_KERNEL,
//     an atomic store) as soon as its last frame is copied. It keeps its
//     place across calls, so a burst may end in the middle of a block (burst
//     full, pool empty) or span several blocks.
//
// Transmit, one queue per worker: each TxQueue is its own AF_PACKET socket
// bound to the interface with protocol 0, so it never receives anything, and
// TxBurst hands the whole burst to one sendmmsg(2), each message the frame's
// Head and Tail as two iovecs: a payload shared by several copies is copied
// once, by the kernel, never in user space.
//
// Offloads. Frames the local stack sends with checksum offload (on veth, tx
// checksumming is on by default) reach the peer's socket as CHECKSUM_PARTIAL:
// the ring marks them TP_STATUS_CSUMNOTREADY and their L4 checksum is not
// filled in. A switch forwarding such a frame out of another port sends a
// bad checksum. RxBurst passes them on and counts them (Stats.CsumNotReady);
// labs turn tx offload off on the sending side (ethtool -K IFACE tx off).
// Likewise, GRO/LRO on a receiving NIC hands the socket merged frames bigger
// than the MTU; they are dropped as Oversize, so turn GRO off
// (ethtool -K IFACE gro off) on switch ports. A VLAN tag stripped by rx VLAN
// offload is put back into the frame, as libpcap does, so the switch sees the
// frame as it was on the wire.
//
// Ports are opened in the network namespace of the calling thread, and
// OpenTx makes its sockets in that same namespace from whatever thread it is
// called on; InNetns runs code in a named namespace, for tests and labs.
// Linux only.
package afpacket
