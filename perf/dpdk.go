//go:build dpdk

// `sparsecast bench dpdk`: the switch over DPDK virtual devices against
// dpdk-testpmd on the same kind of device. Three numbers per run, each on
// one pinned core:
//
//   - switch: the whole switch (rx, parse, replicate, tx; the same worker
//     as `switch run`) with an input port and --fanout output ports;
//   - io: frames moved from one port to another through the same DPDK port
//     code and the same one-cgo-call burst, nothing else (the cost of the
//     Go/DPDK boundary alone, as testpmd's io mode);
//   - testpmd: dpdk-testpmd --forward-mode=io over two such devices.
//
// The input devices deliver whatever their mbufs hold (net_null) or what a
// generator put in their ring (net_ring), so the input pool's mbufs carry
// the bench frame and the port stamps its headers back into every frame it
// receives (the part the switch rewrites in place; the Go bench's generator
// copies whole frames).
package perf

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/dataplane/dpdkport"
	"github.com/sparsecast/sparsecast/headers"
)

// DPDKOptions configure BenchDPDK.
type DPDKOptions struct {
	Vdev      string // net_null or net_ring
	Fanout    int
	Size      int
	Seconds   float64
	CPU       int // the forwarding core (testpmd's too)
	VsTestpmd bool
	// EAL arguments for this process (default: -l CPU, hugepages from
	// HugeDir or none).
	EAL []string
	// HugeDir is a hugetlbfs mount (testbeds/dpdk/with-hugepages.sh makes
	// one). With it, this process and testpmd run on 2 MiB pages, as DPDK
	// does on a switch; without, both run with --no-huge, on 4 KiB pages.
	HugeDir string
	// DeviceBase numbers the switch's devices from here (net_null<base>
	// in, the outputs after it). DPDK probes a device name once per
	// process, so runs repeated in one process (the sweep) each take
	// numbers of their own.
	DeviceBase int
	// CPUProfile, if set, receives a CPU profile (pprof) of the switch's
	// measured window.
	CPUProfile io.Writer
}

// maxDPDKFrame is the largest bench frame: mbufs are sized to hold it.
const maxDPDKFrame = 9000

// DPDKResult is what `sparsecast bench dpdk --json` prints.
type DPDKResult struct {
	Vdev    string  `json:"vdev"`
	Fanout  int     `json:"fanout"`
	Size    int     `json:"size"`
	Seconds float64 `json:"seconds"`
	CPU     int     `json:"cpu"`
	// Hugepages says whether DPDK memory (mbufs, rings) was on 2 MiB
	// pages, for this process and testpmd alike.
	Hugepages bool `json:"hugepages"`
	// SwitchMpps is packets the switch received per second; EgressMpps the
	// copies the devices accepted per second (fanout times SwitchMpps when
	// nothing is lost).
	SwitchMpps  float64 `json:"switch_mpps"`
	EgressMpps  float64 `json:"egress_mpps"`
	NsPerPacket float64 `json:"ns_per_packet"`
	// SwitchCPUMpps and EgressCPUMpps are the same per CPU-second of this
	// process over the window (getrusage): on a shared machine the
	// forwarding core gets only part of a CPU, and these rates do not
	// depend on how large a part.
	SwitchCPUMpps float64 `json:"switch_cpu_mpps"`
	EgressCPUMpps float64 `json:"egress_cpu_mpps"`
	// SwitchDrops is what the switch dropped in the window, by reason.
	SwitchDrops   map[string]uint64 `json:"switch_drops,omitempty"`
	SwitchSkipped string            `json:"switch_skipped,omitempty"`
	// IOMpps is the io forwarder over the same port code.
	IOMpps float64 `json:"io_mpps"`
	// TestpmdMpps and the ratios are set with --vs-testpmd.
	TestpmdMpps      float64 `json:"testpmd_mpps,omitempty"`
	RatioVsTestpmd   float64 `json:"ratio_vs_testpmd,omitempty"`
	EgressVsTestpmd  float64 `json:"egress_ratio_vs_testpmd,omitempty"`
	IORatioVsTestpmd float64 `json:"io_ratio_vs_testpmd,omitempty"`
	TestpmdCommand   string  `json:"testpmd_command,omitempty"`
	// TestpmdCPUMpps is testpmd io's packets per CPU-second of its process;
	// the CPU ratios compare per CPU-second rates, which a loaded machine
	// distorts far less than the wall-clock ratios above (they compare
	// runs seconds apart, each given whatever share of a core it got).
	TestpmdCPUMpps     float64 `json:"testpmd_cpu_mpps,omitempty"`
	CPURatioVsTestpmd  float64 `json:"cpu_ratio_vs_testpmd,omitempty"`
	EgressCPUVsTestpmd float64 `json:"egress_cpu_ratio_vs_testpmd,omitempty"`
	// TestpmdMacMpps is testpmd again in mac mode, which writes each
	// frame's Ethernet addresses: what DPDK's own C code forwards here when
	// it touches every packet's header, as the switch must. The switch's
	// ratio to it says how far the switch is from a header-writing
	// forwarder, where ratio_vs_testpmd says how far from moving mbufs.
	TestpmdMacMpps    float64 `json:"testpmd_mac_mpps,omitempty"`
	RatioVsTestpmdMac float64 `json:"ratio_vs_testpmd_mac,omitempty"`
	// TestpmdMacVsIO is testpmd mac mode over testpmd io mode.
	TestpmdMacVsIO float64  `json:"testpmd_mac_vs_io,omitempty"`
	EAL            []string `json:"eal_args"`
}

// BenchDPDK runs testpmd (if asked), then the io forwarder, then the switch.
func BenchDPDK(ctx context.Context, o DPDKOptions) (*DPDKResult, error) {
	if o.Vdev != "net_null" && o.Vdev != "net_ring" {
		return nil, fmt.Errorf("vdev %q: want net_null or net_ring", o.Vdev)
	}
	if o.Fanout < 1 || o.Fanout > 64 {
		return nil, fmt.Errorf("fanout %d: want 1-64", o.Fanout)
	}
	if o.CPU < 0 || o.CPU >= runtime.NumCPU() {
		return nil, fmt.Errorf("cpu %d: this machine has CPUs 0-%d", o.CPU, runtime.NumCPU()-1)
	}
	if o.DeviceBase < 0 || o.DeviceBase > 1<<16 {
		return nil, fmt.Errorf("device base %d: want 0-65536", o.DeviceBase)
	}
	frame, err := benchFrame(o.Fanout, o.Size)
	if err != nil {
		return nil, err
	}
	r := &DPDKResult{Vdev: o.Vdev, Fanout: o.Fanout, Size: o.Size, CPU: o.CPU, Hugepages: o.HugeDir != ""}
	if o.VsTestpmd {
		// Main lcore elsewhere, forwarding lcore on the measured CPU.
		main := (o.CPU + 1) % runtime.NumCPU()
		for _, mode := range []string{"io", "mac"} {
			eal := append([]string{"-l", fmt.Sprintf("%d,%d", main, o.CPU), "--main-lcore", fmt.Sprint(main)},
				benchEAL(fmt.Sprintf("sc-testpmd-%s-%d", mode, os.Getpid()), o.HugeDir)...)
			tp, err := RunTestpmd(ctx, TestpmdOptions{
				EAL:     eal,
				Vdevs:   []string{vdevArgs(o.Vdev, 90, o.Size), vdevArgs(o.Vdev, 91, o.Size)},
				Seconds: min(o.Seconds, 5),
				Ring:    o.Vdev == "net_ring",
				Mode:    mode,
			})
			if err != nil {
				return nil, fmt.Errorf("testpmd %s mode: %w", mode, err)
			}
			if mode == "io" {
				r.TestpmdMpps, r.TestpmdCommand, r.TestpmdCPUMpps = tp.Mpps, tp.Command, tp.CPUMpps
			} else {
				r.TestpmdMacMpps = tp.Mpps
			}
		}
	}
	r.EAL = o.EAL
	if len(r.EAL) == 0 {
		r.EAL = append([]string{"-l", fmt.Sprint(o.CPU)}, benchEAL(fmt.Sprintf("sc-bench-%d", os.Getpid()), o.HugeDir)...)
	}
	if r.IOMpps, err = benchIO(ctx, o, r.EAL, frame); err != nil {
		return nil, fmt.Errorf("io forwarder: %w", err)
	}
	if o.Vdev == "net_ring" {
		// A ring device only gives back what was sent into it, and the
		// switch's output must not come back (its hop limit falls on every
		// pass): there is no input that generates frames by itself.
		r.SwitchSkipped = "the switch is measured on net_null only: a ring device has no traffic source of its own"
	} else if err := benchSwitch(ctx, o, r, frame); err != nil {
		return nil, err
	}
	if r.TestpmdMpps > 0 {
		r.RatioVsTestpmd = r.SwitchMpps / r.TestpmdMpps
		r.EgressVsTestpmd = r.EgressMpps / r.TestpmdMpps
		r.IORatioVsTestpmd = r.IOMpps / r.TestpmdMpps
		r.TestpmdMacVsIO = r.TestpmdMacMpps / r.TestpmdMpps
	}
	if r.TestpmdCPUMpps > 0 {
		r.CPURatioVsTestpmd = r.SwitchCPUMpps / r.TestpmdCPUMpps
		r.EgressCPUVsTestpmd = r.EgressCPUMpps / r.TestpmdCPUMpps
	}
	if r.TestpmdMacMpps > 0 {
		r.RatioVsTestpmdMac = r.SwitchMpps / r.TestpmdMacMpps
	}
	return r, nil
}

// benchEAL is the EAL arguments of every bench process but its cores: no
// PCI, files named by prefix, and memory: 512 MiB of the hugetlbfs at
// hugeDir (unlinked, so nothing stays behind) or 1 GiB of ordinary memory.
func benchEAL(prefix, hugeDir string) []string {
	mem := []string{"--no-huge", "-m", "1024"}
	if hugeDir != "" {
		mem = []string{"--huge-dir", hugeDir, "--huge-unlink", "-m", "512"}
	}
	return append([]string{"--no-pci", "--file-prefix", prefix, "--log-level", "*:warning"}, mem...)
}

// vdevArgs names device i of the kind. A net_null device makes frames of
// the bench size; a net_ring device is a ring sent into and received from.
func vdevArgs(kind string, i, size int) string {
	if kind == "net_null" {
		return fmt.Sprintf("net_null%d,size=%d", i, size)
	}
	return fmt.Sprintf("net_ring%d", i)
}

// benchFrame is the bench replicate frame: a DATA packet to fanout
// receivers spread over blocks, so each copy gets a header of its own.
func benchFrame(fanout, size int) ([]byte, error) {
	ids := benchIDs(fanout)
	hdr := 14 + 20 + 8 + headers.HeaderLenFor(headers.TypeData, ids)
	if size < hdr || size > maxDPDKFrame {
		return nil, fmt.Errorf("size %d: want %d-%d bytes for fan-out %d", size, hdr, maxDPDKFrame, fanout)
	}
	return dataplane.BuildFrame(dataplane.FrameSpec{
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		SrcIP: net.IPv4(10, 0, 0, 2), DstIP: net.IPv4(10, 0, 0, 1), SrcPort: 50000,
		Fields:    headers.Fields{Type: headers.TypeData, HopLimit: headers.DefaultHopLimit, SessionID: 1},
		Receivers: ids, Payload: make([]byte, size-hdr),
	})
}

// stampPool writes the frame into every mbuf of p's pool and makes the port
// restore its headers on receive. For a ring device, the generator is the
// port's own transmit queue: see feedRing.
func stampPool(p *dpdkport.Port, frame []byte) {
	hl := len(frame)
	// The headers end where the SMH set ends; restoring a few bytes more
	// costs nothing measurable and keeps this independent of the layout.
	hl = min(hl, 128)
	for _, v := range p.Pool().Views() {
		copy(v[128:], frame)
	}
	p.Pool().SetStamp(frame[:hl])
}

// benchIO forwards from one device to another through the port code on a
// locked, pinned thread, and returns the rate.
func benchIO(ctx context.Context, o DPDKOptions, eal []string, frame []byte) (float64, error) {
	errc := make(chan error, 1)
	var mpps float64
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := pin(o.CPU); err != nil {
			errc <- err
			return
		}
		in, err := dpdkport.OpenPort(dpdkport.Options{Device: vdevArgs(o.Vdev, 80, o.Size), EAL: eal, DataRoom: dataRoom(o.Size)})
		if err != nil {
			errc <- err
			return
		}
		defer in.Close()
		out, err := dpdkport.OpenPort(dpdkport.Options{Device: vdevArgs(o.Vdev, 81, o.Size), EAL: eal, DataRoom: dataRoom(o.Size)})
		if err != nil {
			errc <- err
			return
		}
		defer out.Close()
		stampPool(in, frame)
		txIn, err := in.OpenTx()
		if err != nil {
			errc <- err
			return
		}
		tx, err := out.OpenTx()
		if err != nil {
			errc <- err
			return
		}
		var pkts [dataplane.BurstSize]*dataplane.Packet
		if o.Vdev == "net_ring" {
			if err := primeRing(in, txIn, frame); err != nil {
				errc <- err
				return
			}
		}
		_ = txIn
		warm := time.Duration(min(o.Seconds/5, 0.3) * float64(time.Second))
		var n uint64
		start := time.Now()
		deadline := start.Add(warm + time.Duration(o.Seconds*float64(time.Second)))
		var t0 time.Time
		var n0 uint64
		for i := 0; ; i++ {
			if i&1023 == 0 {
				now := time.Now()
				if t0.IsZero() && now.Sub(start) >= warm {
					t0, n0 = now, n
				}
				if now.After(deadline) || ctx.Err() != nil {
					el := now.Sub(t0).Seconds()
					mpps = float64(n-n0) / el / 1e6
					break
				}
			}
			k, _ := in.RxBurst(nil, pkts[:])
			if k == 0 {
				continue
			}
			n += uint64(k)
			dst := tx
			if o.Vdev == "net_ring" {
				// A ring device gives back what is sent into it: send the
				// frames back into the input ring (a circulating load, as
				// testpmd --tx-first makes) and count them.
				dst = txIn
			}
			sent := 0
			for sent < k {
				s, _ := dst.TxBurst(pkts[sent:k])
				if s == 0 {
					break
				}
				sent += s
			}
			for _, pk := range pkts[sent:k] {
				pk.Free()
			}
		}
		errc <- nil
	}()
	err := <-errc
	return mpps, err
}

// primeRing puts a pool's worth of frames into a ring device through its
// transmit queue, so the receive side has traffic.
func primeRing(p *dpdkport.Port, tx dataplane.TxQueue, frame []byte) error {
	pool := dataplane.NewPool(512, 2048+dataplane.Headroom)
	var pkts [dataplane.BurstSize]*dataplane.Packet
	for round := 0; round < 16; round++ {
		for i := range pkts {
			pk := pool.Get()
			pk.SetFrame(copy(pk.RxRoom(), frame))
			pkts[i] = pk
		}
		n, err := tx.TxBurst(pkts[:])
		if err != nil {
			return err
		}
		for _, pk := range pkts[n:] {
			pk.Free()
		}
		// The frames go out with the receive side's next C call.
		var got [dataplane.BurstSize]*dataplane.Packet
		k, _ := p.RxBurst(nil, got[:0])
		_ = k
	}
	return nil
}

// dataRoom is an mbuf's size for frames of size bytes: DPDK's headroom
// and the frame (a net_null device fills its mbufs to the size it was given
// without checking the room).
func dataRoom(size int) int { return max(size, 2048) + 128 }

// selfCPU is the user and system time this process has used.
func selfCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func pin(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}

// benchSwitch runs the switch: port 0 a device with the bench frames,
// ports 1..fanout devices whose transmit side is the sink.
func benchSwitch(ctx context.Context, o DPDKOptions, r *DPDKResult, frame []byte) error {
	// Buffers (and so mbufs) hold the whole frame past the switch's
	// headroom, or the egress ports would refuse it as too big.
	cfg := &dataplane.Config{Name: "bench-dpdk", PollMode: dataplane.PollBusy, CPUs: []int{o.CPU}, EAL: r.EAL,
		BufferSize: max(o.Size, 2048) + dataplane.Headroom}
	cfg.Ports = append(cfg.Ports, dataplane.PortConfig{Name: "in", Type: "dpdk", Device: vdevArgs(o.Vdev, o.DeviceBase, o.Size)})
	for i, id := range benchIDs(o.Fanout) {
		name := fmt.Sprintf("out%d", i)
		cfg.Ports = append(cfg.Ports, dataplane.PortConfig{Name: name, Type: "dpdk", Device: vdevArgs(o.Vdev, o.DeviceBase+i+1, o.Size),
			NeighborMAC: "02:00:00:00:00:01", NeighborIP: "10.1.0.2"})
		cfg.Routes = append(cfg.Routes, dataplane.RouteEntry{Receivers: fmt.Sprint(id), Port: name})
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	var ports []*dpdkport.Port
	var dports []dataplane.Port
	defer func() {
		for _, p := range ports {
			p.Close()
		}
	}()
	for i := range cfg.Ports {
		po := dpdkport.FromConfig(cfg, &cfg.Ports[i])
		po.TxOnly = i > 0 && o.Vdev == "net_null"
		if po.TxOnly {
			// Never received into: a small pool (a mempool with a
			// per-core cache of 256 wants at least 1.5 times that).
			po.Mbufs = 512
		}
		p, err := dpdkport.OpenPort(po)
		if err != nil {
			return err
		}
		ports = append(ports, p)
		dports = append(dports, p)
	}
	stampPool(ports[0], frame)
	t, err := dataplane.TablesFromConfig(cfg)
	if err != nil {
		return err
	}
	sw, err := dataplane.NewSwitch(cfg, dports, t)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sw.Run(runCtx) }()
	warm := time.Duration(min(o.Seconds/5, 0.5) * float64(time.Second))
	time.Sleep(warm)
	in0, out0, d0 := switchCounts(sw, ports)
	if o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			stop()
			<-done
			return fmt.Errorf("cpu profile: %w", err)
		}
	}
	c0 := selfCPU()
	t0 := time.Now()
	select {
	case <-time.After(time.Duration(o.Seconds * float64(time.Second))):
	case <-ctx.Done():
	}
	in1, out1, d1 := switchCounts(sw, ports)
	el := time.Since(t0).Seconds()
	cpu := (selfCPU() - c0).Seconds()
	if o.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	stop()
	if err := <-done; err != nil {
		return err
	}
	r.Seconds = el
	r.SwitchMpps = float64(in1-in0) / el / 1e6
	r.EgressMpps = float64(out1-out0) / el / 1e6
	if in1 > in0 {
		r.NsPerPacket = el * 1e9 / float64(in1-in0)
	}
	if cpu > 0 {
		r.SwitchCPUMpps = float64(in1-in0) / cpu / 1e6
		r.EgressCPUMpps = float64(out1-out0) / cpu / 1e6
	}
	for i := range d1 {
		if d := d1[i] - d0[i]; d > 0 {
			if r.SwitchDrops == nil {
				r.SwitchDrops = map[string]uint64{}
			}
			r.SwitchDrops[dataplane.DropReason(i).String()] = d
		}
	}
	return nil
}

// switchCounts reads packets received on port 0, frames the output devices
// accepted, and drops by reason.
func switchCounts(sw *dataplane.Switch, ports []*dpdkport.Port) (in, out uint64, drops [dataplane.NumDropReasons]uint64) {
	for _, c := range sw.Counters() {
		in += c.Ports[0].RxPackets.Load()
		for i := range drops {
			drops[i] += c.Drops[i].Load()
		}
	}
	for _, p := range ports[1:] {
		s, _ := p.Stats()
		out += s.TxSent
	}
	return in, out, drops
}
