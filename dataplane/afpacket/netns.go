//go:build linux

// Network namespaces: a function in, run on an OS thread switched into a
// namespace; sockets it opens stay in that namespace after the thread
// switches back. Ports use it to open transmit sockets in their own namespace
// whichever thread calls OpenTx; tests and labs use InNetns.
package afpacket

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// InNetns runs fn on a locked OS thread inside the network namespace name (a
// name under /run/netns, as made by `ip netns add`, or a path to a namespace
// file) and returns fn's error. Sockets and ports opened by fn live in that
// namespace for good and may be used from any goroutine afterwards; goroutines
// started by fn do not run in it.
func InNetns(name string, fn func() error) error {
	path := name
	if !strings.ContainsRune(name, '/') {
		path = "/run/netns/" + name
	}
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	defer unix.Close(target)
	return inNetnsFd(target, name, fn)
}

// inNetnsFd runs fn on a fresh locked thread switched into the namespace
// open as target.
func inNetnsFd(target int, name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open(threadNetnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: current namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: setns: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: a goroutine that exits locked takes its thread
			// with it, so no other goroutine runs in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("netns %s: restore: %w", name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

const threadNetnsPath = "/proc/thread-self/ns/net"

// netnsID identifies a network namespace.
type netnsID struct{ dev, ino uint64 }

// threadNetns identifies the calling thread's namespace; the caller has its
// goroutine locked to the thread.
func threadNetns() (netnsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(threadNetnsPath, &st); err != nil {
		return netnsID{}, err
	}
	return netnsID{uint64(st.Dev), st.Ino}, nil
}

// socketIn opens a packet socket in the namespace ns (open as fd). A socket
// belongs to the namespace of the thread that creates it, and OpenTx may be
// called from any thread; switching namespaces takes CAP_SYS_ADMIN, so it is
// done only when the calling thread is elsewhere.
func socketIn(fd int, ns netnsID) (int, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	}
	runtime.LockOSThread()
	id, err := threadNetns()
	if err == nil && id == ns {
		s, err := open()
		runtime.UnlockOSThread()
		return s, err
	}
	runtime.UnlockOSThread()
	s := -1
	err = inNetnsFd(fd, "of port", func() error {
		var err error
		s, err = open()
		return err
	})
	return s, err
}
