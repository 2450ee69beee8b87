package dataplane

import (
	"testing"

	"github.com/sparsecast/sparsecast/headers"
)

// FuzzSwitch feeds arbitrary frames through the whole pipeline: it must
// never panic, every copy it sends must parse as valid SMH with checksums
// that hold, and every buffer must come back to the pool, whether the
// packet takes the full path or the flow cache's.
func FuzzSwitch(f *testing.F) {
	fb := newTestFabric(f, 4, func(c *Config) {
		c.Groups = []GroupEntry{{ID: 5, Members: "1-3"}}
		c.Routes = append(c.Routes, RouteEntry{Receivers: "0", Port: "p0"})
	})
	f.Add(buildFrame(f, frameOpts{fields: headers.Fields{HopLimit: 2}, ids: []uint16{1, 2, 3}, payload: []byte("abc")}))
	f.Add(buildFrame(f, frameOpts{v6: true, fields: headers.Fields{HopLimit: 2}, ids: []uint16{1, 3}, payload: []byte("abcd")}))
	f.Add(buildFrame(f, frameOpts{fields: headers.Fields{HopLimit: 1}, group: 5}))
	f.Add(buildFrame(f, frameOpts{vlan: true, fields: headers.Fields{Type: headers.TypeACK, HopLimit: 2, SpeaksFor: 3}, ids: []uint16{2}}))
	// With a Transfer Epoch (E): DATA, its ACK, and an ABORT.
	f.Add(buildFrame(f, frameOpts{fields: headers.Fields{HopLimit: 2, Epoch: 0x01020304}, ids: []uint16{1, 2, 3}, payload: []byte("abc")}))
	f.Add(buildFrame(f, frameOpts{v6: true, fields: headers.Fields{HopLimit: 2, Epoch: 7}, group: 5, payload: []byte("e")}))
	f.Add(buildFrame(f, frameOpts{fields: headers.Fields{Type: headers.TypeACK, HopLimit: 2, Epoch: 0x01020304, Sequence: 1, SpeaksFor: 1, ReporterID: 1}}))
	f.Add(buildFrame(f, frameOpts{fields: headers.Fields{Type: headers.TypeABORT, HopLimit: 2, Epoch: 0x01020304, Count: uint16(headers.AbortReadOnly), SpeaksFor: 1, ReporterID: 2}, ids: []uint16{2}}))
	f.Add(buildFrame(f, frameOpts{fields: headers.Fields{Type: headers.TypeABORT, HopLimit: 2, Count: uint16(headers.AbortExists), SpeaksFor: 2, ReporterID: 3}, ids: []uint16{1, 3}}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 2000 {
			return
		}
		fuzzSend(t, fb, frame)
		if fb.w.pool.Available() != fb.w.pool.Cap() {
			t.Fatalf("leaked %d buffers", fb.w.pool.Cap()-fb.w.pool.Available())
		}
	})
}

// TestSwitchFuzzSequence replays inputs that FuzzSwitch found failing only
// in this order, through one switch as the fuzzer does: a DATA stream,
// then the same stream from another port, then an ACK from that port. The
// aggregate stage sent an aggregated ACK naming no receiver (speaks-for 0,
// an empty set), which every switch drops as bad_feedback.
func TestSwitchFuzzSequence(t *testing.T) {
	fb := newTestFabric(t, 4, func(c *Config) {
		c.Groups = []GroupEntry{{ID: 5, Members: "1-3"}}
		c.Routes = append(c.Routes, RouteEntry{Receivers: "0", Port: "p0"})
	})
	for _, frame := range [][]byte{
		[]byte("000000000000\b\x00E\x00\x003\x00\x00\x00\x00@\x11f\xb8\n\x00\x00\x02\n\x00\x00\x01\xc3P$\xff\x00\x1f,\xf2\x10\x00\x02\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01\x00\x02\x00\x03abc"),
		[]byte("000000000000\b\x00E0\x00200\x00\x000\x11000000000000$\xff\x00\x1e00\x1001\x00\x00\x01\x00\x00\x00\x000000\x00\x00000000"),
		[]byte("0!C  !#zY X%\x81\x000!\b\x00E0\x002'\"\x00\x000\x110\"\"\"'\"%B b'B$\xff\x00\x1e0b\x110B\x00\x00\x01\x00\x00\x00\x000\x008&$&$%y)' "),
	} {
		fuzzSend(t, fb, frame)
	}
}

// fuzzSend sends a frame twice on each of two ports, the second time
// through the flow cache, and checks every copy the switch sends: it must
// parse as valid SMH, with checksums that hold if the frame's did.
func fuzzSend(t *testing.T, fb *testFabric, frame []byte) {
	t.Helper()
	csumOK := udpChecksumOK(frame)
	for _, in := range []int{0, 0, 2, 2} {
		fb.send(t, in, frame)
		for p := 0; p < 4; p++ {
			for _, out := range fb.recv(p) {
				checkFrameCsum(t, out, csumOK)
			}
		}
	}
}
