// Package ffi holds every use of unsafe in sparsecast, so that the rest of the
// module can be read (and vetted) as memory-safe Go. What flows through here:
// raw pointers handed to the kernel (sendmmsg's mmsghdr/iovec arrays), atomic
// access to words the kernel writes in memory shared with it (AF_PACKET ring
// status words, the control rings' shared memory), and struct layouts of
// kernel ABI headers. Files named *_linux.go need no cgo; the cgo DPDK layer
// (dpdk.go, dpdk.c, dpdk.h) is built only with the "dpdk" build tag.
package ffi
