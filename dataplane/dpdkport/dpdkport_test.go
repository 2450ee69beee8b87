//go:build dpdk

package dpdkport

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/dataplane"
	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
)

// One EAL per process: every test uses these arguments (hugepages when
// make test-dpdk reserved them, see dpdkTestEAL).
var testEAL = dpdkTestEAL()

func open(t *testing.T, dev string, txOnly bool) *Port {
	t.Helper()
	p, err := OpenPort(Options{Device: dev, EAL: testEAL, TxOnly: txOnly, Mbufs: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// onThread runs fn on a locked OS thread, as a worker runs.
func onThread(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		fn()
	}()
	<-done
}

func frames(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		f := make([]byte, size)
		copy(f, []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xb5})
		for j := 14; j < size; j++ {
			f[j] = byte(i*7 + j)
		}
		out[i] = f
	}
	return out
}

// rxAll polls p until want frames came or a second passed.
func rxAll(p *Port, want int) []*dataplane.Packet {
	var got []*dataplane.Packet
	var burst [dataplane.BurstSize]*dataplane.Packet
	deadline := time.Now().Add(time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		n, _ := p.RxBurst(nil, burst[:])
		got = append(got, burst[:n]...)
	}
	return got
}

// TestRingLoopback sends frames from Go memory into a ring device (copied
// into header mbufs), receives them (copied into the port's pool, being from
// another pool), sends those back by reference and receives them again
// unchanged: no copy the second time.
func TestRingLoopback(t *testing.T) {
	p := open(t, "net_ring10", false)
	want := frames(100, 200)
	onThread(t, func() {
		tx, err := p.OpenTx()
		if err != nil {
			t.Error(err)
			return
		}
		pool := dataplane.NewPool(256, 2048+dataplane.Headroom)
		var pkts []*dataplane.Packet
		for _, f := range want {
			pk := pool.Get()
			pk.SetFrame(copy(pk.RxRoom(), f))
			pkts = append(pkts, pk)
		}
		for sent := 0; sent < len(pkts); {
			n, err := tx.TxBurst(pkts[sent:])
			if err != nil {
				t.Error(err)
				return
			}
			sent += n
			p.RxBurst(nil, nil) // the C call that sends
		}
		if pool.Available() != pool.Cap() {
			t.Errorf("%d Go buffers still held after TxBurst", pool.Cap()-pool.Available())
		}
		for round := 0; round < 2; round++ {
			got := rxAll(p, len(want))
			if len(got) != len(want) {
				t.Errorf("round %d: received %d of %d frames", round, len(got), len(want))
				return
			}
			for i, pk := range got {
				if !bytes.Equal(pk.Head, want[i]) {
					t.Errorf("round %d: frame %d differs", round, i)
					return
				}
			}
			if round == 1 {
				for _, pk := range got {
					pk.Free()
				}
				break
			}
			for sent := 0; sent < len(got); {
				n, _ := tx.TxBurst(got[sent:])
				sent += n
				p.RxBurst(nil, nil)
			}
		}
	})
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.RxCopied != 100 || s.TxSent != 200 || s.TxDropped != 0 || s.RxDropped != 0 {
		t.Fatalf("stats %+v: want 100 frames copied on receive (the first round only), 200 sent", s)
	}
}

// TestSwitchReplicates runs the switch from a net_null device whose frames
// are the test frame (stamped into its pool) to two ring devices, and reads
// the rings: the copy and the original rewritten in place must be byte for
// byte what BuildFrame makes for each branch. The copy is its header mbuf
// with the payload copied in (200 bytes, at most ffi.DPDKCopyMax) or
// chained to an indirect mbuf on the original's payload (800 bytes).
func TestSwitchReplicates(t *testing.T) {
	for i, n := range []int{200, 800} {
		t.Run(fmt.Sprintf("payload=%d", n), func(t *testing.T) { testSwitchReplicates(t, n, 20+3*i) })
	}
}

func testSwitchReplicates(t *testing.T, payload, dev int) {
	spec := dataplane.FrameSpec{
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		SrcIP: net.IPv4(10, 0, 0, 2), DstIP: net.IPv4(10, 0, 0, 1), SrcPort: 5000,
		Fields:    headers.Fields{Type: headers.TypeData, HopLimit: 16, SessionID: 7},
		Receivers: []uint16{1, 98}, Payload: bytes.Repeat([]byte("payload!"), payload/8),
	}
	in, err := dataplane.BuildFrame(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &dataplane.Config{Name: "t", PollMode: dataplane.PollBusy, Buffers: 1024, EAL: testEAL}
	cfg.Ports = []dataplane.PortConfig{
		{Name: "in", Type: "dpdk", Device: fmt.Sprintf("net_null%d,size=%d", dev, len(in))},
		{Name: "a", Type: "dpdk", Device: fmt.Sprintf("net_ring%d", dev+1), NeighborMAC: "02:00:00:00:0a:01", NeighborIP: "10.9.0.1"},
		{Name: "b", Type: "dpdk", Device: fmt.Sprintf("net_ring%d", dev+2), NeighborMAC: "02:00:00:00:0b:01", NeighborIP: "10.9.0.2"},
	}
	cfg.Routes = []dataplane.RouteEntry{{Receivers: "1", Port: "a"}, {Receivers: "98", Port: "b"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var ports []dataplane.Port
	var dp []*Port
	for i := range cfg.Ports {
		o := FromConfig(cfg, &cfg.Ports[i])
		o.TxOnly = i > 0 // the outputs are read by the test
		p, err := OpenPort(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		ports = append(ports, p)
		dp = append(dp, p)
	}
	for _, v := range dp[0].Pool().Views() {
		copy(v[128:], in)
	}
	dp[0].Pool().SetStamp(in)
	tables, err := dataplane.TablesFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := dataplane.NewSwitch(cfg, ports, tables)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	expect := func(p *Port, id uint16, mac string, ip net.IP) []byte {
		s := spec
		s.SrcMAC = p.HardwareAddr()
		s.DstMAC, _ = net.ParseMAC(mac)
		s.DstIP = ip
		s.Fields.HopLimit--
		s.Receivers = []uint16{id}
		f, err := dataplane.BuildFrame(s)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, c := range []struct {
		dev  string
		want []byte
	}{
		{fmt.Sprintf("net_ring%d", dev+1), expect(dp[1], 1, "02:00:00:00:0a:01", net.IPv4(10, 9, 0, 1))},
		{fmt.Sprintf("net_ring%d", dev+2), expect(dp[2], 98, "02:00:00:00:0b:01", net.IPv4(10, 9, 0, 2))},
	} {
		got, err := ffi.DrainRing("ETH_RXTX0_"+c.dev, 512)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) < 100 {
			t.Errorf("%s: %d frames", c.dev, len(got))
		}
		bad := 0
		for _, f := range got {
			if !bytes.Equal(f, c.want) {
				if bad == 0 {
					t.Errorf("%s:\n got %x\nwant %x", c.dev, f, c.want)
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d frames differ", c.dev, bad, len(got))
		}
	}
	var drops []string
	for _, c := range sw.Counters() {
		for r := range c.Drops {
			if v := c.Drops[r].Load(); v > 0 {
				drops = append(drops, fmt.Sprintf("%v=%d", dataplane.DropReason(r), v))
			}
		}
	}
	if len(drops) > 0 {
		t.Errorf("switch drops: %s", strings.Join(drops, " "))
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{{}, {Device: ",x"}, {Device: "net_null0", TxQueues: 5000}, {Device: "net null0"}} {
		if err := o.withDefaults().Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := OpenPort(Options{Device: "net_nosuchdriver0", EAL: testEAL}); err == nil {
		t.Error("unknown device opened")
	}
}
