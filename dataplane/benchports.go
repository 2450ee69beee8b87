// Synthetic ports for benchmarks and load tests. In: template frames. Out:
// a GeneratorPort "receives" an endless stream of copies of its templates
// (one copy per frame into the worker's pool, as a NIC's DMA would); a
// SinkPort "transmits" by counting and freeing. Nothing else differs from a
// real port, so `sparsecast bench replicate` measures the real switch code.
package dataplane

import (
	"fmt"
	"net"
	"sync/atomic"

	"github.com/sparsecast/sparsecast/headers"
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

// BenchSwitch is a switch whose port 0 is a generator sending every packet
// to fanout receivers, each behind its own sink port: the set-up of
// `sparsecast bench replicate` and of the replicate benchmarks.
type BenchSwitch struct {
	*Switch
	Generator *GeneratorPort
	Sinks     []*SinkPort
}

// NewBenchSwitch builds a one-worker switch in the given poll mode, pinned to
// cpu if cpu >= 0, with frames of size bytes on the wire.
func NewBenchSwitch(fanout, size int, mode PollMode, cpu int) (*BenchSwitch, error) {
	if fanout < 1 || fanout > MaxPorts-1 {
		return nil, fmt.Errorf("fanout %d: want 1-%d", fanout, MaxPorts-1)
	}
	// A buffer holds a whole frame: 2048 bytes as in a switch's default
	// configuration, more for jumbo frames (`bench sweep` runs 4096).
	cfg := &Config{Name: "bench", PollMode: mode, Buffers: 8192, BufferSize: min(max(size, 2048), 65536) + Headroom}
	if cpu >= 0 {
		cfg.CPUs = []int{cpu}
	}
	cfg.Ports = append(cfg.Ports, PortConfig{Name: "in", Type: "mem"})
	ids := make([]uint16, fanout)
	for i := range ids {
		// Spread the receivers over blocks, as random IDs would be, so the
		// set is an ID list and every copy gets a header of its own.
		ids[i] = uint16(1 + i*97)
		name := fmt.Sprintf("out%d", i)
		cfg.Ports = append(cfg.Ports, PortConfig{Name: name, Type: "mem", NeighborMAC: "02:00:00:00:00:01", NeighborIP: "10.1.0.2"})
		cfg.Routes = append(cfg.Routes, RouteEntry{Receivers: fmt.Sprint(ids[i]), Port: name})
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hdr := ethHdrLen + 20 + udpHdrLen + headers.HeaderLenFor(headers.TypeData, ids)
	if size < hdr || size > cfg.BufferSize-Headroom {
		return nil, fmt.Errorf("size %d: want %d-%d bytes for fan-out %d", size, hdr, cfg.BufferSize-Headroom, fanout)
	}
	frame, err := BuildFrame(FrameSpec{
		SrcMAC: localMAC("src"), DstMAC: localMAC("in"),
		SrcIP: net.IPv4(10, 0, 0, 2), DstIP: net.IPv4(10, 0, 0, 1), SrcPort: 50000,
		Fields:    headers.Fields{Type: headers.TypeData, HopLimit: headers.DefaultHopLimit, SessionID: 1},
		Receivers: ids, Payload: make([]byte, size-hdr),
	})
	if err != nil {
		return nil, err
	}
	b := &BenchSwitch{Generator: NewGeneratorPort("in", [][]byte{frame})}
	ports := []Port{b.Generator}
	for i := 0; i < fanout; i++ {
		s := NewSinkPort(fmt.Sprintf("out%d", i))
		b.Sinks = append(b.Sinks, s)
		ports = append(ports, s)
	}
	t, err := TablesFromConfig(cfg)
	if err != nil {
		return nil, err
	}
	if b.Switch, err = NewSwitch(cfg, ports, t); err != nil {
		return nil, err
	}
	return b, nil
}

// Step runs one round of the first worker (receive, forward, transmit) on
// the calling goroutine and returns the packets received: for benchmarks
// that drive the loop themselves.
func (b *BenchSwitch) Step() int {
	w := b.workers[0]
	n := w.poll()
	w.flush()
	return n
}
