// Ports move bursts of packets between the switch and the world. Receive is
// owned by one worker; every worker opens its own transmit queue on every
// port (as DPDK's l3fwd gives each lcore its own tx queue), so no queue is
// ever shared between cores.
package dataplane

import "net"

// BurstSize is the most packets a port moves per call.
const BurstSize = 32

// Port is one switch port.
type Port interface {
	// Name is the configured port name (a label in metrics).
	Name() string
	// HardwareAddr is the port's MAC, used as source MAC of frames it sends.
	HardwareAddr() net.HardwareAddr
	// RxBurst receives up to len(pkts) frames into buffers taken from pool and
	// returns how many it stored in pkts. It never blocks.
	RxBurst(pool *Pool, pkts []*Packet) (int, error)
	// OpenTx opens a transmit queue for one worker.
	OpenTx() (TxQueue, error)
	// WaitFd is a file descriptor that polls readable when RxBurst has work,
	// or -1 if the port has none (the worker then naps instead of blocking).
	WaitFd() int
	Close() error
}

// TxQueue is one worker's transmit queue on a port.
type TxQueue interface {
	// TxBurst sends pkts in order and returns how many it took; it frees the
	// ones it took. The caller keeps the rest and retries them later. pkts
	// may be a view of the caller's queue: TxBurst neither keeps nor
	// writes it.
	TxBurst(pkts []*Packet) (int, error)
}

// MaxPorts bounds the ports of one switch; port indexes fit the route table's
// uint8 entries with one value left for "no route".
const MaxPorts = 255
