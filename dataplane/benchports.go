// Synthetic ports for benchmarks and load tests. In: template frames. Out:
// a GeneratorPort "receives" an endless stream of copies of its templates
// (one copy per frame into the worker's pool, as a NIC's DMA would); a
// SinkPort "transmits" by counting and freeing. Nothing else differs from a
// real port, so `sparsecast bench replicate` measures the real switch code.
package dataplane

import (
	"net"
	"sync/atomic"
)

// GeneratorPort replays template frames round robin on receive.
type GeneratorPort struct {
	name   string
	frames [][]byte
	next   int
	// Generated counts frames handed to the switch (read after the run).
	Generated atomic.Uint64
}

// NewGeneratorPort returns a port that receives copies of frames forever.
func NewGeneratorPort(name string, frames [][]byte) *GeneratorPort {
	return &GeneratorPort{name: name, frames: frames}
}

func (g *GeneratorPort) Name() string                   { return g.name }
func (g *GeneratorPort) HardwareAddr() net.HardwareAddr { return localMAC(g.name) }
func (g *GeneratorPort) WaitFd() int                    { return -1 }
func (g *GeneratorPort) Close() error                   { return nil }
func (g *GeneratorPort) OpenTx() (TxQueue, error)       { return &SinkPort{name: g.name}, nil }

// RxBurst fills pkts with template copies until the burst or the pool ends.
func (g *GeneratorPort) RxBurst(pool *Pool, pkts []*Packet) (int, error) {
	n := 0
	for n < len(pkts) {
		pk := pool.Get()
		if pk == nil {
			break
		}
		pk.SetFrame(copy(pk.RxRoom(), g.frames[g.next]))
		g.next++
		if g.next == len(g.frames) {
			g.next = 0
		}
		pkts[n] = pk
		n++
	}
	inc(&g.Generated, uint64(n))
	return n, nil
}

// SinkPort discards what it transmits, counting it.
type SinkPort struct {
	name    string
	Packets atomic.Uint64
	Bytes   atomic.Uint64
}

// NewSinkPort returns a port whose transmit queues discard frames.
func NewSinkPort(name string) *SinkPort { return &SinkPort{name: name} }

func (s *SinkPort) Name() string                   { return s.name }
func (s *SinkPort) HardwareAddr() net.HardwareAddr { return localMAC(s.name) }
func (s *SinkPort) WaitFd() int                    { return -1 }
func (s *SinkPort) Close() error                   { return nil }
func (s *SinkPort) OpenTx() (TxQueue, error)       { return s, nil }

// RxBurst never receives anything.
func (s *SinkPort) RxBurst(*Pool, []*Packet) (int, error) { return 0, nil }

// TxBurst takes the whole burst. The counters use atomic adds because
// several workers may share one sink.
func (s *SinkPort) TxBurst(pkts []*Packet) (int, error) {
	b := 0
	for _, pk := range pkts {
		b += pk.Len()
		pk.Free()
	}
	s.Packets.Add(uint64(len(pkts)))
	s.Bytes.Add(uint64(b))
	return len(pkts), nil
}
