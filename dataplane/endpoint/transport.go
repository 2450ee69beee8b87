package endpoint

// Transports carry SMH datagrams (UDP payloads) between a host and its
// gateway, the switch port it is attached to. The reliability core (Sender
// and Receiver sessions) only sees datagrams; where they travel is the
// transport's business:
//
//   - UDPTransport: real sockets. The host binds the SMH port (9471) to
//     receive DATA and feedback, sends feedback from that socket, and sends
//     DATA from a second socket bound to the stream's entropy source port
//     (SourcePort, docs/smh.md section 1), so one stream keeps one ECMP path.
//   - MemTransport: one end of a dataplane.MemPort pair whose other end is a
//     switch port, so whole fabrics run in one process. It wraps datagrams
//     in Ethernet/IPv4-or-IPv6/UDP frames (the outer header is a template
//     made once with dataplane.BuildFrame and patched per frame) and unwraps
//     what the switch sends back.
//
// Neither allocates per datagram.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/headers"
)

// Transport moves SMH datagrams between a host and its gateway. A transport
// is used by one goroutine at a time.
type Transport interface {
	// Send sends one SMH datagram (header and payload) to the gateway.
	// ErrBackpressure means the host's queue is full: try again later.
	Send(b []byte) error
	// Recv reads one datagram into b. It waits until deadline; a zero
	// deadline does not wait. ErrTimeout means none came in time.
	Recv(b []byte, deadline time.Time) (int, error)
	// Stats returns the transport's counters.
	Stats() TransportStats
	Close() error
}

// TransportStats count a transport's datagrams.
type TransportStats struct {
	SentData     uint64 `json:"sent_data"`
	SentFeedback uint64 `json:"sent_feedback"`
	SentBytes    uint64 `json:"sent_bytes"`
	Received     uint64 `json:"received"`
	RecvData     uint64 `json:"recv_data"`
	RecvFeedback uint64 `json:"recv_feedback"`
	RecvBytes    uint64 `json:"recv_bytes"`
	// Backpressure counts sends refused for a full queue; NotSMH frames that
	// were not SMH datagrams to the SMH port (memory transport); Overflow
	// datagrams the kernel dropped for a full socket buffer (UDP, when the
	// kernel reports it).
	Backpressure uint64 `json:"backpressure"`
	NotSMH       uint64 `json:"not_smh"`
	Overflow     uint64 `json:"overflow"`
}

func (s *TransportStats) countSend(b []byte) {
	if len(b) > 0 && headers.Type(b[0]&0x0F) == headers.TypeData {
		s.SentData++
	} else {
		s.SentFeedback++
	}
	s.SentBytes += uint64(len(b))
}

func (s *TransportStats) countRecv(b []byte) {
	s.Received++
	s.RecvBytes += uint64(len(b))
	if len(b) > 0 && headers.Type(b[0]&0x0F) == headers.TypeData {
		s.RecvData++
	} else {
		s.RecvFeedback++
	}
}

// Sentinel errors of transports.
var (
	ErrTimeout      = errors.New("transport: no datagram before the deadline")
	ErrBackpressure = errors.New("transport: transmit queue full")
	ErrNoDataSocket = errors.New("transport: no DATA socket (set SourceID/SessionID or DataPort)")
)

// UDPConfig configures a UDPTransport.
type UDPConfig struct {
	// Listen is the address receiving DATA and feedback: ":9471" (default:
	// all addresses, IPv4 and IPv6), "IP", "IP:port".
	Listen string
	// Gateway is the switch port's IP and SMH port ("10.0.0.1:9471",
	// "[fd00::1]", a host without port means 9471).
	Gateway string
	// Data opens the DATA socket, bound to Local's IP (if any) and to
	// DataPort, or SourcePort(SourceID, SessionID) when DataPort is 0.
	Data      bool
	Local     string
	DataPort  uint16
	SourceID  uint16
	SessionID uint16
	// ReadBuffer is the receive socket buffer (default 8 MiB).
	ReadBuffer int
}

// UDPTransport is a Transport over UDP sockets.
type UDPTransport struct {
	listen *net.UDPConn
	data   *net.UDPConn
	gw     netip.AddrPort
	raw    syscall.RawConn
	st     TransportStats

	// Non-blocking read state, used by rawRead (made once: no closure per
	// call).
	rbuf    []byte
	rn      int
	rerr    error
	oob     [64]byte
	rawRead func(fd uintptr) bool
	waitFn  func(fd uintptr) bool
	dlSet   time.Time
	ovfl    uint32
}

// NewUDPTransport binds the sockets.
func NewUDPTransport(cfg UDPConfig) (*UDPTransport, error) {
	if cfg.Listen == "" {
		cfg.Listen = fmt.Sprintf(":%d", headers.DefaultUDPPort)
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = 8 << 20
	}
	gw, err := ResolveAddr(cfg.Gateway, headers.DefaultUDPPort)
	if err != nil {
		return nil, fmt.Errorf("transport: gateway: %w", err)
	}
	if !gw.Addr().IsValid() || gw.Addr().IsUnspecified() || gw.Port() == 0 {
		return nil, fmt.Errorf("transport: gateway %q: need an IP address and a non-zero port", cfg.Gateway)
	}
	la, err := ResolveAddr(cfg.Listen, headers.DefaultUDPPort)
	if err != nil {
		return nil, fmt.Errorf("transport: listen address: %w", err)
	}
	network := "udp"
	ua := &net.UDPAddr{Port: int(la.Port())}
	if la.Addr().IsValid() {
		if la.Addr().Is6() != gw.Addr().Is6() {
			return nil, fmt.Errorf("transport: listen address %s and gateway %s are of different IP versions", la.Addr(), gw.Addr())
		}
		ua.IP, ua.Zone = la.Addr().AsSlice(), la.Addr().Zone()
		network = "udp4"
		if la.Addr().Is6() {
			network = "udp6"
		}
	}
	listen, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, fmt.Errorf("transport: bind %s: %w", ua, err)
	}
	setReadBuffer(listen, cfg.ReadBuffer)
	_ = listen.SetWriteBuffer(4 << 20)
	t := &UDPTransport{listen: listen, gw: gw}
	if t.raw, err = listen.SyscallConn(); err != nil {
		listen.Close()
		return nil, err
	}
	// Ask the kernel to report socket-buffer drops (SO_RXQ_OVFL).
	_ = t.raw.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1) })
	t.rawRead, t.waitFn = t.readOnce, t.waitRead
	if cfg.Data {
		if err := t.openData(cfg, gw); err != nil {
			listen.Close()
			return nil, err
		}
	}
	return t, nil
}

func (t *UDPTransport) openData(cfg UDPConfig, gw netip.AddrPort) error {
	port := cfg.DataPort
	if port == 0 {
		port = SourcePort(cfg.SourceID, cfg.SessionID)
	}
	ua := &net.UDPAddr{Port: int(port)}
	network := "udp4"
	if gw.Addr().Is6() {
		network = "udp6"
	}
	if cfg.Local != "" {
		local, err := ResolveAddr(cfg.Local, 0)
		if err != nil {
			return fmt.Errorf("transport: local address: %w", err)
		}
		if local.Addr().IsValid() {
			if local.Addr().Is6() != gw.Addr().Is6() {
				return fmt.Errorf("transport: local address %s and gateway %s are of different IP versions", local.Addr(), gw.Addr())
			}
			ua.IP, ua.Zone = local.Addr().AsSlice(), local.Addr().Zone()
		}
	}
	c, err := net.ListenUDP(network, ua)
	if err != nil {
		return fmt.Errorf("transport: bind DATA socket %s (source port of stream %d/%d): %w", ua, cfg.SourceID, cfg.SessionID, err)
	}
	_ = c.SetWriteBuffer(4 << 20)
	t.data = c
	return nil
}

// LocalAddr is the listening socket's address.
func (t *UDPTransport) LocalAddr() netip.AddrPort {
	return t.listen.LocalAddr().(*net.UDPAddr).AddrPort()
}

// DataAddr is the DATA socket's address (zero without one).
func (t *UDPTransport) DataAddr() netip.AddrPort {
	if t.data == nil {
		return netip.AddrPort{}
	}
	return t.data.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Gateway is the resolved gateway.
func (t *UDPTransport) Gateway() netip.AddrPort { return t.gw }

// Send sends DATA from the DATA socket and feedback from the listening one.
func (t *UDPTransport) Send(b []byte) error {
	c := t.listen
	if len(b) > 0 && headers.Type(b[0]&0x0F) == headers.TypeData {
		if t.data == nil {
			return ErrNoDataSocket
		}
		c = t.data
	}
	if _, err := c.WriteToUDPAddrPort(b, t.gw); err != nil {
		if transient(err) {
			t.st.Backpressure++
			return ErrBackpressure
		}
		return err
	}
	t.st.countSend(b)
	return nil
}

// readOnce is one non-blocking recvmsg on the listening socket.
func (t *UDPTransport) readOnce(fd uintptr) bool {
	n, oobn, _, _, err := unix.Recvmsg(int(fd), t.rbuf, t.oob[:], unix.MSG_DONTWAIT)
	t.rn, t.rerr = n, err
	if err == nil && oobn > 0 {
		t.parseOverflow(t.oob[:oobn])
	}
	return true
}

// parseOverflow reads the SO_RXQ_OVFL drop count from control messages
// without allocating.
func (t *UDPTransport) parseOverflow(oob []byte) {
	// struct cmsghdr: a size_t length, then int level and int type.
	const lenSize = unix.SizeofCmsghdr - 8
	for len(oob) >= unix.SizeofCmsghdr {
		var l int
		if lenSize == 8 {
			l = int(binary.NativeEndian.Uint64(oob))
		} else {
			l = int(binary.NativeEndian.Uint32(oob))
		}
		level := int32(binary.NativeEndian.Uint32(oob[lenSize:]))
		typ := int32(binary.NativeEndian.Uint32(oob[lenSize+4:]))
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return
		}
		if level == unix.SOL_SOCKET && typ == unix.SO_RXQ_OVFL && l >= unix.CmsgLen(4) {
			v := binary.NativeEndian.Uint32(oob[unix.CmsgLen(0):])
			if v > t.ovfl {
				t.st.Overflow += uint64(v - t.ovfl)
				t.ovfl = v
			}
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			return
		}
		oob = oob[next:]
	}
}

// Recv reads one datagram, waiting until deadline.
func (t *UDPTransport) Recv(b []byte, deadline time.Time) (int, error) {
	for {
		t.rbuf = b
		err := t.raw.Read(t.rawRead)
		t.rbuf = nil
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// A deadline of an earlier wait has passed: clear it.
				if err := t.listen.SetReadDeadline(time.Time{}); err != nil {
					return 0, err
				}
				t.dlSet = time.Time{}
				continue
			}
			return 0, err
		}
		switch {
		case t.rerr == nil:
			t.st.countRecv(b[:t.rn])
			return t.rn, nil
		case t.rerr == unix.EINTR:
			continue
		case t.rerr != unix.EAGAIN:
			if errors.Is(t.rerr, syscall.ECONNREFUSED) {
				continue
			}
			return 0, t.rerr
		}
		if deadline.IsZero() || !time.Now().Before(deadline) {
			return 0, ErrTimeout
		}
		// Wait for readability until the deadline through the poller: a
		// RawConn read whose function reports "not done" on EAGAIN.
		if !deadline.Equal(t.dlSet) {
			if err := t.listen.SetReadDeadline(deadline); err != nil {
				return 0, err
			}
			t.dlSet = deadline
		}
		t.rbuf = b
		err = t.raw.Read(t.waitFn)
		t.rbuf = nil
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, ErrTimeout
			}
			return 0, err
		}
		if t.rerr == nil {
			t.st.countRecv(b[:t.rn])
			return t.rn, nil
		}
	}
}

// waitRead tries one read; on EAGAIN it asks the poller to wait.
func (t *UDPTransport) waitRead(fd uintptr) bool {
	t.readOnce(fd)
	return t.rerr != unix.EAGAIN
}

// Stats returns the counters.
func (t *UDPTransport) Stats() TransportStats { return t.st }

// Close closes both sockets.
func (t *UDPTransport) Close() error {
	err := t.listen.Close()
	if t.data != nil {
		if e := t.data.Close(); err == nil {
			err = e
		}
	}
	return err
}

// MemConfig configures a MemTransport.
type MemConfig struct {
	// HostIP and GatewayIP are the host's and its switch port's addresses
	// (both IPv4 or both IPv6).
	HostIP, GatewayIP netip.Addr
	// GatewayMAC is the switch port's MAC (default: the peer port's).
	GatewayMAC net.HardwareAddr
	// UDPPort is the SMH port (default 9471).
	UDPPort uint16
	// Pool is the number of frame buffers of the transport (default 256).
	Pool int
}

// MemTransport is a Transport over the host end of an in-memory link.
type MemTransport struct {
	port    *dataplane.MemPort
	tx      dataplane.TxQueue
	pool    *dataplane.Pool
	udpPort uint16
	v6      bool
	tmpl    []byte // Ethernet + IP + UDP header template
	ipOff   int
	udpOff  int
	pseudo  uint64 // checksum of the IPv6 addresses (IPv6 only)
	out     [1]*dataplane.Packet
	in      [dataplane.BurstSize]*dataplane.Packet
	inN     int
	inI     int
	rxErr   error
	st      TransportStats
	// wake is a duplicate of the port's eventfd in Go's poller: an idle
	// Recv sleeps on it until the switch sends or the deadline passes,
	// as a host blocks in recvmsg, rather than polling (hundreds of
	// polling receivers were most of an in-memory fabric's time).
	wake   *os.File
	wakeRC syscall.RawConn
	rxFn   func(uintptr) bool // t.rxWoken, bound once: no allocation per wait
}

// NewMemTransport makes a transport over port, the host's end of a MemPort
// pair whose peer is a switch port.
func NewMemTransport(port *dataplane.MemPort, cfg MemConfig) (*MemTransport, error) {
	if cfg.UDPPort == 0 {
		cfg.UDPPort = headers.DefaultUDPPort
	}
	if cfg.Pool == 0 {
		cfg.Pool = 256
	}
	if !cfg.HostIP.IsValid() || !cfg.GatewayIP.IsValid() || cfg.HostIP.Is4() != cfg.GatewayIP.Is4() {
		return nil, fmt.Errorf("memory transport: host %v and gateway %v must be addresses of one IP family", cfg.HostIP, cfg.GatewayIP)
	}
	gwMAC := cfg.GatewayMAC
	if gwMAC == nil {
		gwMAC = localPeerMAC(port)
	}
	// The template: a feedback SMH with an empty set and no payload; its
	// outer headers are what every frame starts with.
	fr, err := dataplane.BuildFrame(dataplane.FrameSpec{
		SrcMAC: port.HardwareAddr(), DstMAC: gwMAC,
		SrcIP: cfg.HostIP.AsSlice(), DstIP: cfg.GatewayIP.AsSlice(),
		SrcPort: cfg.UDPPort, DstPort: cfg.UDPPort,
		Fields: headers.Fields{Type: headers.TypeACK, SpeaksFor: 1},
	})
	if err != nil {
		return nil, fmt.Errorf("memory transport: %w", err)
	}
	tx, err := port.OpenTx()
	if err != nil {
		return nil, fmt.Errorf("memory transport: %w", err)
	}
	t := &MemTransport{
		port: port, tx: tx, udpPort: cfg.UDPPort, v6: cfg.HostIP.Is6(),
		pool: dataplane.NewPool(cfg.Pool, 65536+dataplane.Headroom),
		tmpl: fr[:len(fr)-headers.FeedbackLen], ipOff: 14,
	}
	if t.v6 {
		t.udpOff = 14 + 40
		t.pseudo = dataplane.ChecksumAdd(t.tmpl[14+8:14+40], 0)
	} else {
		t.udpOff = 14 + 20
	}
	if fd := port.WaitFd(); fd >= 0 {
		// A duplicate, so that closing (or collecting) the file never
		// closes the port's descriptor under the switch that signals it.
		if d, err := unix.Dup(fd); err == nil {
			t.wake = os.NewFile(uintptr(d), port.Name()+"-wake")
			if rc, err := t.wake.SyscallConn(); err == nil {
				t.wakeRC = rc
				t.rxFn = t.rxWoken
			} else {
				t.wake.Close()
				t.wake = nil
			}
		}
	}
	return t, nil
}

// rxWoken is the poller's callback: take a burst; false sleeps until the
// eventfd is signaled again.
func (t *MemTransport) rxWoken(uintptr) bool {
	t.inN, t.rxErr = t.port.RxBurst(t.pool, t.in[:])
	t.inI = 0
	return t.inN > 0 || t.rxErr != nil
}

// localPeerMAC is the MAC of a MemPort's peer, found through the transmit
// path's naming: MemPort exposes only its own MAC, so the switch port's MAC
// must be given when it matters. Switches do not check destination MACs, so
// the host's own MAC with the local bit pattern is a safe default.
func localPeerMAC(p *dataplane.MemPort) net.HardwareAddr {
	m := append(net.HardwareAddr(nil), p.HardwareAddr()...)
	m[5] ^= 0xFF
	return m
}

// Send wraps b in the outer headers and hands it to the switch port.
func (t *MemTransport) Send(b []byte) error {
	hl := t.udpOff + 8
	if hl+len(b) > t.pool.BufSize()-dataplane.Headroom {
		return fmt.Errorf("memory transport: %d-byte datagram too big", len(b))
	}
	pk := t.pool.Get()
	if pk == nil {
		t.st.Backpressure++
		return ErrBackpressure
	}
	fr := pk.RxRoom()
	copy(fr, t.tmpl)
	copy(fr[hl:], b)
	n := hl + len(b)
	ulen := 8 + len(b)
	src := t.udpPort
	if len(b) >= headers.FixedLen && headers.Type(b[0]&0x0F) == headers.TypeData {
		h := headers.SMH(b)
		src = SourcePort(h.SourceID(), h.SessionID())
	}
	u := fr[t.udpOff:]
	binary.BigEndian.PutUint16(u[0:], src)
	binary.BigEndian.PutUint16(u[4:], uint16(ulen))
	u[6], u[7] = 0, 0
	if t.v6 {
		binary.BigEndian.PutUint16(fr[t.ipOff+4:], uint16(ulen))
		c := ^dataplane.ChecksumFold(dataplane.ChecksumAdd(u[:ulen], t.pseudo+17+uint64(ulen)))
		if c == 0 {
			c = 0xFFFF
		}
		binary.BigEndian.PutUint16(u[6:], c)
	} else {
		ip := fr[t.ipOff : t.ipOff+20]
		binary.BigEndian.PutUint16(ip[2:], uint16(20+ulen))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^dataplane.ChecksumFold(dataplane.ChecksumAdd(ip, 0)))
		// UDP checksum 0 over IPv4: allowed (docs/smh.md section 1).
	}
	pk.SetFrame(n)
	t.out[0] = pk
	sent, err := t.tx.TxBurst(t.out[:])
	t.out[0] = nil
	if err != nil || sent == 0 {
		pk.Free()
		if err != nil {
			return err
		}
		t.st.Backpressure++
		return ErrBackpressure
	}
	t.st.countSend(b)
	return nil
}

// Recv unwraps the next SMH datagram from the switch port, polling until
// deadline: spinning briefly, then yielding, then sleeping.
func (t *MemTransport) Recv(b []byte, deadline time.Time) (int, error) {
	spins := 0
	for {
		for t.inI < t.inN {
			pk := t.in[t.inI]
			t.in[t.inI] = nil
			t.inI++
			n, ok := t.unwrap(pk.Head, b)
			pk.Free()
			if ok {
				t.st.countRecv(b[:n])
				return n, nil
			}
			t.st.NotSMH++
		}
		n, err := t.port.RxBurst(t.pool, t.in[:])
		if err != nil {
			return 0, err
		}
		t.inN, t.inI = n, 0
		if n > 0 {
			continue
		}
		if deadline.IsZero() {
			return 0, ErrTimeout
		}
		spins++
		if spins&15 == 0 && !time.Now().Before(deadline) {
			return 0, ErrTimeout
		}
		switch {
		case spins < 4 || (spins < 64 && t.wakeRC == nil):
			runtime.Gosched()
		case t.wakeRC != nil:
			// Sleep in the poller until a frame comes (RxBurst reads
			// the eventfd only when it finds nothing, then looks
			// again, so a wake-up is never slept through).
			_ = t.wake.SetReadDeadline(deadline)
			err := t.wakeRC.Read(t.rxFn)
			if t.rxErr != nil {
				return 0, t.rxErr
			}
			if err != nil && t.inN == 0 {
				if t.port.Closed() || errors.Is(err, os.ErrClosed) {
					return 0, dataplane.ErrPortClosed
				}
				return 0, ErrTimeout
			}
		default:
			// Go's timer granularity makes this about a millisecond on a
			// loaded machine; a host is not a busy-polling switch.
			d := time.Until(deadline)
			if d <= 0 {
				return 0, ErrTimeout
			}
			time.Sleep(min(d, 200*time.Microsecond))
		}
	}
}

// unwrap copies the UDP payload of an SMH frame into b.
func (t *MemTransport) unwrap(fr, b []byte) (int, bool) {
	if len(fr) < 14 {
		return 0, false
	}
	l3 := 14
	et := binary.BigEndian.Uint16(fr[12:])
	if et == 0x8100 {
		if len(fr) < 18 {
			return 0, false
		}
		et = binary.BigEndian.Uint16(fr[16:])
		l3 = 18
	}
	var udp, end int
	switch et {
	case 0x0800:
		if len(fr) < l3+20 || fr[l3]>>4 != 4 || fr[l3+9] != 17 {
			return 0, false
		}
		ihl := int(fr[l3]&0x0F) * 4
		total := int(binary.BigEndian.Uint16(fr[l3+2:]))
		if ihl < 20 || total < ihl+8 || len(fr) < l3+total {
			return 0, false
		}
		udp, end = l3+ihl, l3+total
	case 0x86DD:
		if len(fr) < l3+40 || fr[l3+6] != 17 {
			return 0, false
		}
		plen := int(binary.BigEndian.Uint16(fr[l3+4:]))
		if plen < 8 || len(fr) < l3+40+plen {
			return 0, false
		}
		udp, end = l3+40, l3+40+plen
	default:
		return 0, false
	}
	if binary.BigEndian.Uint16(fr[udp+2:]) != t.udpPort {
		return 0, false
	}
	ulen := int(binary.BigEndian.Uint16(fr[udp+4:]))
	if ulen < 8 || udp+ulen > end {
		return 0, false
	}
	n := copy(b, fr[udp+8:udp+ulen])
	return n, n == ulen-8
}

// Stats returns the counters.
func (t *MemTransport) Stats() TransportStats { return t.st }

// Close closes the port.
func (t *MemTransport) Close() error {
	err := t.port.Close() // first: a Recv the Close below wakes sees it closed
	if t.wake != nil {
		t.wake.Close()
	}
	return err
}
