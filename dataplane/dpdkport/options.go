// Package dpdkport is a switch port over a DPDK ethdev: any device DPDK can
// drive, named as DPDK names it (vdevs such as net_null0, net_ring0,
// net_af_packet0,iface=veth0, net_af_xdp0,iface=eth1, net_memif0,
// net_tap0; PCI addresses on machines with VFIO or UIO). Frames stay in
// DPDK's mbufs from receive to transmit: the switch parses and rewrites them
// in place through views of the mbufs' memory, a copy is a header mbuf
// chained to an indirect mbuf on the original's payload (DPDK's
// ipv4_multicast), and the last copy is the original itself. The C side
// and all unsafe code are in package ffi, behind the build tag dpdk.
//
// Receive, one worker: RxBurst makes one cgo call (ffi.Ctx.Burst) that
// sends what every DPDK transmit queue of the worker queued since its
// previous call, frees the mbufs the worker released, refills the header
// stashes and receives one burst. The worker's transmit queues are found by
// the OS thread they are used from (workers are locked to theirs).
//
// Transmit, one queue per worker: TxBurst only writes descriptors into C
// memory; the worker's next RxBurst sends them. A worker that receives from
// no DPDK port sends them itself, with one cgo call per TxBurst.
//
// This file is built without the dpdk tag too, so that a configuration
// naming a DPDK port is checked, and refused with a clear message, by every
// build.
package dpdkport

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sparsecast/sparsecast/dataplane"
)

// ErrNotBuilt is returned by Open in a build without DPDK.
var ErrNotBuilt = errors.New("sparsecast was built without DPDK: build it with `make build-dpdk` (go build -tags dpdk; needs libdpdk-dev)")

// Options describe one DPDK port.
type Options struct {
	// Name is the port's label in metrics.
	Name string
	// Device is the DPDK device arguments: a vdev ("net_null0,size=64") or
	// a PCI address ("0000:03:00.1"). The ethdev name is its first field.
	Device string
	// EAL is the DPDK EAL's command line, used by the first port opened in
	// the process (DPDK initialises once). Default DefaultEAL().
	EAL []string
	// TxQueues is the number of transmit queues: one per worker.
	TxQueues int
	// Mbufs is the receive mempool's size (default 8192: what the worker's
	// own pool holds, dataplane.Config.Buffers).
	Mbufs int
	// DataRoom is each mbuf's data room, headroom included (default
	// buffer_size, at least 2048+128).
	DataRoom int
	// RxDesc and TxDesc are ring sizes (default 1024; the driver adjusts).
	RxDesc, TxDesc int
	// TxOnly never receives: RxBurst returns nothing without calling
	// DPDK. For devices that only sink (a benchmark's net_null outputs,
	// which would otherwise produce frames on every poll).
	TxOnly bool
}

// DefaultEAL runs DPDK without hugepages and without PCI, on lcore 0,
// with a file prefix of this process's own: enough for vdevs. Real NICs
// want hugepages (testbeds/dpdk/hugepages.sh) and their PCI devices, e.g.
// eal_args: [-l, "1", --file-prefix, sw1, --huge-dir, /mnt/sparsecast-huge, --huge-unlink, -m, "256"].
func DefaultEAL() []string {
	return []string{"-l", "0", "--no-pci", "--no-huge", "-m", "1024",
		"--file-prefix", fmt.Sprintf("sparsecast-%d", os.Getpid()), "--log-level", "*:warning"}
}

// FromConfig derives a port's options from the switch configuration.
func FromConfig(cfg *dataplane.Config, pc *dataplane.PortConfig) Options {
	o := Options{Name: pc.Name, Device: pc.Device, EAL: cfg.EAL, TxQueues: max(cfg.Workers, 1),
		Mbufs: cfg.Buffers, DataRoom: cfg.BufferSize}
	return o.withDefaults()
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name, _, _ = strings.Cut(o.Device, ",")
	}
	if len(o.EAL) == 0 {
		o.EAL = DefaultEAL()
	}
	if o.TxQueues == 0 {
		o.TxQueues = 1
	}
	if o.Mbufs == 0 {
		o.Mbufs = 8192
	}
	o.DataRoom = max(o.DataRoom, 2048+128)
	if o.RxDesc == 0 {
		o.RxDesc = 1024
	}
	if o.TxDesc == 0 {
		o.TxDesc = 1024
	}
	return o
}

// Validate checks the options without DPDK.
func (o Options) Validate() error {
	switch {
	case o.Device == "" || strings.HasPrefix(o.Device, ","):
		return errors.New("dpdk: no device (want e.g. device: net_null0, or a PCI address)")
	case strings.ContainsAny(o.Device, " \t\n\x00"):
		return fmt.Errorf("dpdk: device %q contains white space", o.Device)
	case o.TxQueues < 1 || o.TxQueues > 1024:
		return fmt.Errorf("dpdk: %d transmit queues: want 1-1024", o.TxQueues)
	case o.Mbufs < 2*dataplane.BurstSize || o.Mbufs > 1<<22:
		return fmt.Errorf("dpdk: %d mbufs: want %d-%d", o.Mbufs, 2*dataplane.BurstSize, 1<<22)
	case o.DataRoom > 65535:
		return fmt.Errorf("dpdk: data room %d: an mbuf holds at most 65535 bytes", o.DataRoom)
	case o.RxDesc < 32 || o.RxDesc > 32768 || o.TxDesc < 32 || o.TxDesc > 32768:
		return fmt.Errorf("dpdk: ring sizes %d/%d: want 32-32768", o.RxDesc, o.TxDesc)
	}
	for _, a := range o.EAL {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("dpdk: EAL argument %q contains a NUL byte", a)
		}
	}
	return nil
}
