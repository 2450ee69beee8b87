package lab

// Packets on a backup path: where the failover benchmark reads its repair
// time. A rerouted table on some switch is not a repair until packets move
// again, so the benchmark watches every switch port that the affected
// receivers' primary paths do not leave by, and takes the kernel's
// timestamp of the first SMH DATA frame addressed to one of them that a
// switch sends there (the repair), and of the first that arrives at the
// switch in front of them over such a port (the repaired path's delivery,
// which adds that path's transit: each AF_PACKET hop's wake-up on the lab's
// V2 rings, up to the 1 ms block retire timeout on V3 ones).

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/dataplane/afpacket"
	"github.com/sparsecast/sparsecast/headers"
)

// arrivalWatch captures frames on some interfaces of one switch's namespace
// and keeps the first matching one sent, and received on an arrival port,
// at or after a start time.
type arrivalWatch struct {
	watchSockets
	sw        string // the switch whose namespace it watches, for results
	names     []string
	arrival   []bool // per interface: count frames received on it
	udpPort   uint16
	receivers map[uint16]bool
	// realOffset is CLOCK_REALTIME minus CLOCK_MONOTONIC: the kernel stamps
	// received frames in real time (SO_TIMESTAMPNS).
	realOffset int64

	mu              sync.Mutex
	after           int64 // CLOCK_MONOTONIC ns; 0: not armed yet
	sent, received  int64
	sentOn, recvdOn string
}

// watchArrivals opens a packet socket per interface of switch sw in
// namespace ns; frames received count only on the arrival interfaces. Arm
// sets the start time; Close stops the watch.
func watchArrivals(sw, ns string, ifaces []string, arrival map[string]bool, udpPort uint16, receivers map[uint16]bool) (*arrivalWatch, error) {
	w := &arrivalWatch{watchSockets: newWatchSockets(), sw: sw, udpPort: udpPort, receivers: receivers}
	err := afpacket.InNetns(ns, func() error {
		for _, name := range ifaces {
			fd, err := openWatchSocket(name)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			w.fds, w.names, w.arrival = append(w.fds, fd), append(w.names, name), append(w.arrival, arrival[name])
		}
		return nil
	})
	if err != nil {
		w.closeFds()
		return nil, fmt.Errorf("watching %v in %s: %w", ifaces, ns, err)
	}
	w.realOffset = realMinusMonotonic()
	for i := range w.fds {
		w.wg.Add(1)
		go w.read(i)
	}
	return w, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openWatchSocket opens a packet socket on interface name (of the calling
// thread's namespace) that stamps frames with the kernel's time and wakes
// its reader every 50 ms to see whether the watch is over.
func openWatchSocket(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("timestamps: %w", err)
	}
	tv := unix.NsecToTimeval(50e6)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// realMinusMonotonic is CLOCK_REALTIME minus CLOCK_MONOTONIC: the kernel
// stamps received frames in real time (SO_TIMESTAMPNS).
func realMinusMonotonic() int64 {
	var rt, mt unix.Timespec
	unix.ClockGettime(unix.CLOCK_REALTIME, &rt)
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &mt)
	return rt.Nano() - mt.Nano()
}

// setFilter makes the kernel pass a socket every frame (open) or none: a
// one-instruction classic BPF program, "return 0" dropping a frame before
// it is copied, "return 0x40000" keeping all of it.
func setFilter(fd int, open bool) error {
	keep := uint32(0)
	if open {
		keep = 0x40000
	}
	ins := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: keep}}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &ins[0]})
}

// Arm counts frames from t (CLOCK_MONOTONIC ns) on.
func (w *arrivalWatch) Arm(t int64) {
	w.mu.Lock()
	w.after = t
	w.mu.Unlock()
}

// FirstSent returns when the first matching frame was sent since Arm, and
// on which interface ("" if none).
func (w *arrivalWatch) FirstSent() (int64, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sent, w.sentOn
}

// FirstReceived is FirstSent for frames received on arrival interfaces.
func (w *arrivalWatch) FirstReceived() (int64, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.received, w.recvdOn
}

func (w *arrivalWatch) read(i int) {
	defer w.wg.Done()
	name := w.names[i]
	w.readLoop(w.fds[i], func(f []byte, out bool, ts int64) {
		if !out && !w.arrival[i] || !w.matches(f) {
			return
		}
		t := ts - w.realOffset
		w.mu.Lock()
		defer w.mu.Unlock()
		switch {
		case w.after == 0 || t < w.after:
		case out && (w.sent == 0 || t < w.sent):
			w.sent, w.sentOn = t, name
		case !out && (w.received == 0 || t < w.received):
			w.received, w.recvdOn = t, name
		}
	})
}

// watchSockets are a watch's packet sockets and their readers.
type watchSockets struct {
	fds  []int
	wg   sync.WaitGroup
	stop chan struct{}
}

func newWatchSockets() watchSockets { return watchSockets{stop: make(chan struct{})} }

// Close stops the readers and closes the sockets.
func (s *watchSockets) Close() {
	close(s.stop)
	s.wg.Wait()
	s.closeFds()
}

func (s *watchSockets) closeFds() {
	for _, fd := range s.fds {
		unix.Close(fd)
	}
	s.fds = nil
}

// readLoop hands each frame read from fd to each, with whether this host
// sent it and its kernel timestamp (CLOCK_REALTIME ns), until Close.
func (s *watchSockets) readLoop(fd int, each func(f []byte, out bool, ts int64)) {
	buf := make([]byte, 2048)
	oob := make([]byte, 128)
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		n, oobn, _, from, err := unix.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			continue // the receive timeout, or EINTR
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok {
			continue
		}
		if ts, ok := rxStamp(oob[:oobn]); ok {
			each(buf[:n], ll.Pkttype == unix.PACKET_OUTGOING, ts)
		}
	}
}

// rxStamp returns the SO_TIMESTAMPNS time (CLOCK_REALTIME ns): when the
// frame arrived, or, for one this host sent, when it was handed to the
// device.
func rxStamp(oob []byte) (int64, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			return sec*1e9 + nsec, true
		}
	}
	return 0, false
}

// matches: an IPv4 UDP frame to the fabric's port carrying an SMH DATA
// packet addressed to one of the receivers.
func (w *arrivalWatch) matches(f []byte) bool {
	h, ok := smhData(f, w.udpPort)
	if !ok {
		return false
	}
	hit := false
	h.ForEachReceiver(func(id uint16) {
		if w.receivers[id] {
			hit = true
		}
	})
	return hit
}

// smhData returns the SMH DATA header of an IPv4 UDP frame to udpPort.
func smhData(f []byte, udpPort uint16) (headers.SMH, bool) {
	// Ethernet, IPv4 (any header length), UDP.
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_IP || f[14]>>4 != 4 || f[14+9] != unix.IPPROTO_UDP {
		return nil, false
	}
	udp := 14 + int(f[14]&0x0F)*4
	if len(f) < udp+8 || binary.BigEndian.Uint16(f[udp+2:]) != udpPort {
		return nil, false
	}
	h := headers.SMH(f[udp+8:])
	if h.Validate() != nil || h.Type() != headers.TypeData {
		return nil, false
	}
	return h, true
}
