//go:build linux

// Tests of the unsafe helpers: ring layout constants against the kernel ABI
// (linux/if_packet.h), atomic word access bounds, and sendmmsg over a local
// datagram socket pair, where each message must arrive as head+tail.
package ffi

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

func TestTpacketLayout(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"block_status", BlockStatusOff, 8},
		{"num_pkts", BlockNumPktsOff, 12},
		{"offset_to_first_pkt", BlockFirstPktOff, 16},
		{"blk_len", BlockLenOff, 20},
		{"tp_next_offset", FrameNextOff, 0},
		{"tp_snaplen", FrameSnaplenOff, 12},
		{"tp_len", FrameLenOff, 16},
		{"tp_status", FrameStatusOff, 20},
		{"tp_mac", FrameMacOff, 24},
		{"tp_vlan_tci", FrameVlanTCIOff, 32},
		{"tp_vlan_tpid", FrameVlanTPIDOff, 36},
		{"sizeof tpacket3_hdr", FrameHdrSize, 48},
		{"v2 tp_status", V2StatusOff, 0},
		{"v2 tp_len", V2LenOff, 4},
		{"v2 tp_snaplen", V2SnaplenOff, 8},
		{"v2 tp_mac", V2MacOff, 12},
		{"v2 tp_vlan_tci", V2VlanTCIOff, 24},
		{"v2 tp_vlan_tpid", V2VlanTPIDOff, 26},
		{"sizeof tpacket2_hdr", V2HdrSize, 32},
	} {
		if c.got != c.want {
			t.Errorf("%s at %d, kernel ABI says %d", c.name, c.got, c.want)
		}
	}
}

func TestAtomicWord(t *testing.T) {
	b := make([]byte, 16)
	StoreUint32(b, 8, 0xdeadbeef)
	if got := LoadUint32(b, 8); got != 0xdeadbeef {
		t.Fatalf("load %#x", got)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("word past the end of the slice did not panic")
		}
	}()
	LoadUint32(b, 13)
}

func TestMmsgsSend(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	head := []byte("head-")
	tails := [][]byte{[]byte("tail-one"), nil, []byte("t3")}
	m := NewMmsgs(4)
	for i, tl := range tails {
		m.Set(i, head, tl)
	}
	m.Set(3, nil, []byte("only-tail"))
	n, e := m.Send(fds[0], 0, 4, unix.MSG_DONTWAIT)
	if e != 0 || n != 4 {
		t.Fatalf("sent %d, errno %v", n, e)
	}
	want := []string{"head-tail-one", "head-", "head-t3", "only-tail"}
	buf := make([]byte, 64)
	for _, w := range want {
		k, err := unix.Read(fds[1], buf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:k], []byte(w)) {
			t.Fatalf("got %q want %q", buf[:k], w)
		}
	}
	if n, _ := m.Send(fds[0], 2, 2, 0); n != 0 {
		t.Fatalf("empty range sent %d", n)
	}
	m.Clear()

	allocs := testing.AllocsPerRun(100, func() {
		m.Set(0, head, tails[0])
		m.Set(1, head, nil)
		if n, e := m.Send(fds[0], 0, 2, unix.MSG_DONTWAIT); n != 2 || e != 0 {
			t.Fatalf("sent %d, errno %v", n, e)
		}
		unix.Read(fds[1], buf)
		unix.Read(fds[1], buf)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per send", allocs)
	}
}

func TestMmsgsSendError(t *testing.T) {
	m := NewMmsgs(1)
	m.Set(0, []byte("x"), nil)
	if _, e := m.Send(-1, 0, 1, 0); e != unix.EBADF {
		t.Fatalf("errno %v, want EBADF", e)
	}
}

// TestMonotonicNsIsClockMonotonic: the vDSO reading lies between two
// clock_gettime(CLOCK_MONOTONIC) system calls.
func TestMonotonicNsIsClockMonotonic(t *testing.T) {
	for range 100 {
		var a, b unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &a)
		m := MonotonicNs()
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &b)
		if m < a.Nano() || m > b.Nano() {
			t.Fatalf("MonotonicNs %d outside [%d, %d]", m, a.Nano(), b.Nano())
		}
	}
}
