package dataplane

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/headers"
)

// A socket with an error pending (a packet socket whose interface went down
// holds ENETDOWN) makes poll return POLLERR at once until the error is read.
// block reads it, so the next wait sleeps instead of returning at once: the
// worker used to spin a core for as long as a link stayed down. Here the
// pending error is ECONNREFUSED on a connected UDP socket (no root needed).
func TestBlockClearsPendingSocketError(t *testing.T) {
	l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dst := l.LocalAddr().(*net.UDPAddr)
	l.Close() // nobody listens: the datagram below draws a port unreachable
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: dst.Port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, []byte("x")); err != nil {
		t.Fatal(err)
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, _ := unix.Poll(pfd, 1000); n != 1 || pfd[0].Revents&unix.POLLERR == 0 {
		t.Fatalf("no pending error to test with: poll %d, revents %#x", n, pfd[0].Revents)
	}
	w := &Worker{counters: &CoreCounters{}, pollFds: []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}}
	w.block(false)
	pfd[0].Revents = 0
	if n, _ := unix.Poll(pfd, 0); n != 0 {
		t.Fatalf("after block the socket still polls ready (revents %#x): the worker would spin", pfd[0].Revents)
	}
}

// ENETDOWN pending on a port's socket is that port's interface going down:
// the worker marks it down and moves its routes at once. Other errors are
// only cleared.
func TestSocketErrorTakesPortDown(t *testing.T) {
	b, err := NewBenchSwitch(2, 256, PollAdaptive, -1)
	if err != nil {
		t.Fatal(err)
	}
	w := b.workers[0]
	w.pollPort = []uint8{1, 2} // out0, out1 (receivers 1 and 98)
	w.socketError(0, unix.ECONNREFUSED)
	w.socketError(5, unix.ENETDOWN) // no such entry
	if b.LinkState(1) != headers.LinkUp || b.Tables().Routes.Lookup(1) != 1 {
		t.Fatal("a port went down on an error that is not ENETDOWN")
	}
	w.socketError(0, unix.ENETDOWN)
	if b.LinkState(1) != headers.LinkDown || b.Tables().Routes.Lookup(1) == 1 {
		t.Fatalf("after ENETDOWN: state %d, receiver 1 via port %d", b.LinkState(1), b.Tables().Routes.Lookup(1))
	}
	if b.LinkState(2) != headers.LinkUp || b.Tables().Routes.Lookup(98) != 2 {
		t.Fatal("the other port was touched")
	}
}
