// The monotonic clock the switch and control stamp their events with
// (link detection, table publishes, ring hand-overs), shared by every
// process on the machine so one process's readings can be compared with
// another's. x/sys's unix.ClockGettime is a real system call, and
// a goroutine in a system call may lose its P: on a measured path (an
// update's hand-over and publish) that cost microseconds and, on a busy
// machine, sometimes far more. The runtime reads the same clock through
// the vDSO, without entering the kernel.
package ffi

import (
	_ "unsafe" // go:linkname
)

// runtime.nanotime is CLOCK_MONOTONIC read through the vDSO on Linux (see
// runtime/sys_linux_amd64.s and friends); the runtime keeps the symbol
// linkable for packages outside it (go.dev/issue/67401).
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// MonotonicNs returns CLOCK_MONOTONIC in nanoseconds, without a system call.
func MonotonicNs() int64 { return nanotime() }
