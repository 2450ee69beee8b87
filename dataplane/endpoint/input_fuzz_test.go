package endpoint

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/sparsecast/sparsecast/headers"
)

// FuzzManifest delivers an arbitrary manifest and then file data to a
// FileSink writing into a directory: it fails with an error or stores one
// plain file directly in the directory, never anything elsewhere, never a
// panic.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"name":"a.bin","size":3,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}`), []byte("abc"))
	f.Add([]byte(`{"name":"../evil","size":1}`), []byte("x"))
	f.Add([]byte(`{"name":"a/b","size":1}`), []byte("x"))
	f.Add([]byte(`{"name":"..","size":-1}`), []byte(""))
	f.Add([]byte(`{"name":"x\u0000y","size":0}`), []byte(""))
	f.Add([]byte(`not json`), []byte("x"))
	root := f.TempDir()
	dir := filepath.Join(root, "store")
	f.Fuzz(func(t *testing.T, manifest, data []byte) {
		if len(manifest) > 8192 || len(data) > 8192 {
			return
		}
		os.RemoveAll(dir)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		fs := &FileSink{Dir: dir, Overwrite: true}
		// The manifest in two packets, then the file in one.
		half := len(manifest) / 2
		fs.Deliver(Delivery{Source: 1, Session: 2, Seq: 1, Data: append([]byte{KindManifest}, manifest[:half]...), Start: true})
		fs.Deliver(Delivery{Source: 1, Session: 2, Seq: 2, Data: manifest[half:], End: true})
		fs.Deliver(Delivery{Source: 1, Session: 2, Seq: 3, Data: append([]byte{KindFile}, data...), Start: true, End: true})
		fs.Commit(1, 2, 0)
		top, err := os.ReadDir(root)
		if err != nil || len(top) != 1 || top[0].Name() != "store" {
			t.Fatalf("manifest %q: %s holds %v", manifest, root, top)
		}
		in, _ := os.ReadDir(dir)
		for _, e := range in {
			if !e.Type().IsRegular() {
				t.Fatalf("manifest %q: %s in the store is not a plain file", manifest, e.Name())
			}
		}
		for _, r := range fs.Results() {
			if r.OK && (len(in) != 1 || in[0].Name() != filepath.Base(r.Name)) {
				t.Fatalf("manifest %q: result %+v, store %v", manifest, r, in)
			}
		}
	})
}

// FuzzSenderFeedback feeds a reliable sender with ten packets in flight
// arbitrary datagrams as feedback (ACK, NACK, ABORT or anything): it counts
// what it cannot use and never panics, and its window stays consistent.
func FuzzSenderFeedback(f *testing.F) {
	f.Add(ack(5, 1, 2, nil))
	f.Add(ack(9, 3, 0xFFFF, []uint16{1, 2, 4}))
	f.Add(ack(12, 4, 0xFFFF, []uint16{1, 2, 3}))
	b := make([]byte, 256)
	n := headers.PutHeader(b, headers.Fields{Type: headers.TypeNACK, HopLimit: 4, SourceID: 7, SessionID: 3, Sequence: 2, Epoch: testEpoch, Count: 3, SpeaksFor: 2, ReporterID: 0xFFFF}, []uint16{1, 4})
	f.Add(b[:n])
	f.Add(append(ack(3, 1, 1, nil), ack(4, 1, 3, nil)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		p := &pipeTransport{}
		s, err := NewReliableSender(p, SessionConfig{SourceID: 7, SessionID: 3, Epoch: testEpoch, Receivers: []uint16{1, 2, 3, 4},
			CC: CCConfig{InitialRate: 1e9, MaxRate: 1e9}, RepairWindow: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMessage(context.Background(), nil, make([]byte, 10*1000)); err != nil {
			t.Fatal(err)
		}
		sent := s.next
		// Datagrams: a 2-byte length, then that many bytes; the rest is one.
		for len(in) > 0 {
			d := in
			if len(in) > 2 {
				if l := int(binary.BigEndian.Uint16(in)); l <= len(in)-2 {
					d, in = in[2:2+l], in[2+l:]
				} else {
					in = nil
				}
			} else {
				in = nil
			}
			p.in = append(p.in, d)
		}
		p.sent = nil
		s.poll()
		if s.next != sent || s.head > s.next {
			t.Fatalf("head %d next %d, sent %d", s.head, s.next, sent)
		}
		for _, r := range s.Report().Receivers {
			if seqLess(sent, r.Acked) {
				t.Fatalf("receiver %d acked %d, only %d sent", r.ID, r.Acked, sent)
			}
		}
		for _, d := range p.sent {
			if h := headers.SMH(d); h.Type() != headers.TypeData || !seqLess(h.Sequence(), sent) {
				t.Fatalf("sent %v seq %d, only %d data packets exist", h.Type(), h.Sequence(), sent)
			}
		}
	})
}
