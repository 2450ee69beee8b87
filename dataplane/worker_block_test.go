package dataplane

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
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
