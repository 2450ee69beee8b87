// Network namespaces for tests and labs: a function in, run on an OS thread
// switched into a named namespace; sockets it opens stay in that namespace
// after the thread switches back.
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

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
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
