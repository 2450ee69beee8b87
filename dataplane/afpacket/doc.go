// Package afpacket is a switch port over Linux AF_PACKET sockets, for veth
// pairs and ordinary NICs, in pure Go (the pointer work is in package ffi).
//
// Receive, one worker, through one of two ring layouts (Options.RxRing; the
// switch config's rx_ring):
//
//  1. The kernel copies each frame arriving on the interface into a ring
//     shared with us (mmap). Frames this host sends (ours included) are
//     left out (PACKET_IGNORE_OUTGOING), and the socket is a promiscuous
//     member of the interface.
//  2. V3 (TPACKET_V3, the default): frames are packed into the current
//     block, and the kernel retires a block when it is full or when the
//     retire timeout expires with frames in it, marks it TP_STATUS_USER and
//     wakes poll(2) on WaitFd. A frame waits in an open block until then,
//     so at low rates the retire timeout is the latency floor (see
//     Options.RetireTimeout). With the default 1 ms, one frame at a time
//     over veth (kernel 6.18, HZ=250, 2 vCPUs) took median 0.78 ms, p90
//     0.9 ms from TxBurst to RxBurst with the receiver asleep in poll; the
//     tail (p99 up to ~10 ms) is the sleeping thread's wake-up, as a
//     busy-polling receiver saw p99 1.2 ms.
//     V2 (TPACKET_V2): each frame gets a slot of its own (FrameSize bytes),
//     marked TP_STATUS_USER as soon as it is written, with a poll(2)
//     wake-up per frame: no timer, so a frame waits only for the receiver
//     to run. The same measurement (TestLowRateLatency, four runs on the
//     same machine with other work on it) gave median 17-19 µs, p90
//     39-85 µs, p99 0.16-0.73 ms, where V3 with 1 ms gave median
//     0.72-0.77 ms in the same runs. The price: every frame takes a whole
//     slot (a 16 MiB ring holds 8192 frames, where V3's 8 MiB holds
//     ~60,000 small ones), and the kernel tries a wake-up per frame instead
//     of per block.
//  3. RxBurst walks retired blocks (V3) or filled slots (V2) in ring order,
//     copying each frame into a buffer of the worker's pool, and hands a
//     block back (TP_STATUS_KERNEL, an atomic store) as soon as its last
//     frame is copied, a slot as soon as its frame is. It keeps its place
//     across calls, so a burst may end in the middle of a block or span
//     several (burst full, pool empty), and picks up at the first slot it
//     did not take.
//
// V3 stays the default: at saturating load (bench veth, 8 outputs) V2 did
// not fall behind it, but the two were within this shared machine's noise
// of each other (about 70-150 k frames/s per output either way), which is
// no case for changing what every existing config gets; and V3 packs small
// frames into far less memory. Latency-bound setups at modest rates (the
// veth labs, which set rx_ring: v2) want V2.
//
// Transmit, one queue per worker: each TxQueue is its own AF_PACKET socket
// bound to the interface with protocol 0, so it never receives anything
// (and, with Options.QdiscBypass, sends past the qdisc). By default
// (TxRing, tx_ring.go) it has a PACKET_TX_RING: TxBurst copies each frame
// of the burst (Head, then Tail) into a slot and one send(2) hands the
// kernel all of them; there is no message header or iovec per frame to copy
// in. In TxSendmmsg mode TxBurst hands the burst to one sendmmsg(2), each
// message the frame's Head and Tail as two iovecs. Measured with
// BenchmarkTx (256-byte copies into a veth, the sender's CPU per frame, the
// peer's receive included; three or four runs on the shared 2-core VM):
// sendmmsg 2.0-2.4 µs (past the qdisc 1.96-2.7 µs), the ring with the skb
// pointing into it (TxRingZeroCopy) 2.0-2.3 µs, the ring with the frame
// copied into the skb (TxRing) 1.54-1.78 µs (past the qdisc 1.52-1.94 µs:
// veth's qdisc is noqueue, there is nothing to bypass). On veth the zero-copy
// skb is dearer than it looks: the peer may not keep pages it does not own,
// so the kernel copies them into pages it allocates (skb_copy_ubufs, 17% of
// the sender's time); a NIC's driver sends straight from them.
//
// Offloads. Frames the local stack sends with checksum offload (on veth, tx
// checksumming is on by default) reach the peer's socket as CHECKSUM_PARTIAL:
// the ring marks them TP_STATUS_CSUMNOTREADY and their L4 checksum is not
// filled in. A switch forwarding such a frame out of another port sends a
// bad checksum. RxBurst passes them on and counts them (Stats.CsumNotReady);
// labs turn tx offload off on the sending side (ethtool -K IFACE tx off).
// Likewise, GRO/LRO on a receiving NIC hands the socket merged frames bigger
// than the MTU (or, with V2, than a slot); they are dropped as Oversize, so
// turn GRO off (ethtool -K IFACE gro off) on switch ports. A VLAN tag stripped by rx VLAN
// offload is put back into the frame, as libpcap does, so the switch sees the
// frame as it was on the wire. Both rings report the tag, checksum state and
// truncation in the same per-frame status bits, read the same way.
//
// Ports are opened in the network namespace of the calling thread, and
// OpenTx makes its sockets in that same namespace from whatever thread it is
// called on; InNetns runs code in a named namespace, for tests and labs.
// Linux only.
package afpacket
