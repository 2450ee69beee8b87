package endpoint

// Acknowledged means stored: the sink interface, FileSink's storage and
// its failures, the receiver's ACK gating and ABORT, and the sender's
// handling of ABORT (docs/feedback.md, "What a receiver acknowledges").

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sparsecast/sparsecast/headers"
)

func TestAbortReasonOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want headers.AbortReason
	}{
		{nil, 0},
		{&os.PathError{Op: "open", Path: "/x/f.part", Err: syscall.EROFS}, headers.AbortReadOnly},
		{fmt.Errorf("flush: %w", &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}), headers.AbortNoSpace},
		{syscall.EDQUOT, headers.AbortNoSpace},
		{&os.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}, headers.AbortPermission},
		{syscall.EPERM, headers.AbortPermission},
		{&os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.EEXIST}, headers.AbortExists},
		{fs.ErrExist, headers.AbortExists},
		{fmt.Errorf("%w: size 3, manifest says 4", ErrChecksum), headers.AbortChecksum},
		{fmt.Errorf("%w: no name", ErrBadManifest), headers.AbortBadManifest},
		{syscall.EIO, headers.AbortIO},
		{errors.New("something else"), headers.AbortIO},
	} {
		if got := AbortReasonOf(c.err); got != c.want {
			t.Errorf("AbortReasonOf(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// faultFile is a .part file that fails its writes with errno once more
// than room bytes were written.
type faultFile struct {
	*os.File
	room  int
	errno syscall.Errno
}

func (f *faultFile) Write(b []byte) (int, error) {
	if len(b) > f.room {
		n, _ := f.File.Write(b[:f.room])
		f.room = 0
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: f.errno}
	}
	f.room -= len(b)
	return f.File.Write(b)
}

// failCreate makes a FileSink's create fail with errno.
func failCreate(errno syscall.Errno) func(string) (sinkFile, error) {
	return func(name string) (sinkFile, error) {
		return nil, &os.PathError{Op: "open", Path: name, Err: errno}
	}
}

// limitCreate makes a FileSink's files fail with errno after room bytes.
func limitCreate(room int, errno syscall.Errno) func(string) (sinkFile, error) {
	return func(name string) (sinkFile, error) {
		f, err := os.Create(name)
		if err != nil {
			return nil, err
		}
		return &faultFile{File: f, room: room, errno: errno}, nil
	}
}

func randomData(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 9))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// feedFile delivers a manifest (name, len(data), sum) and data to fs as a
// receiver would, in 1400-byte packets, committing every 8 packets, and
// returns the first error.
func feedFile(fs *FileSink, name string, data []byte, sum string) error {
	m := fmt.Sprintf(`{"name":%q,"size":%d,"sha256":%q}`, name, len(data), sum)
	seq := uint32(0)
	if err := fs.Deliver(Delivery{Source: 1, Session: 2, Seq: seq, Data: append([]byte{KindManifest}, m...), Start: true, End: true}); err != nil {
		return err
	}
	msg := append([]byte{KindFile}, data...)
	for off := 0; off < len(msg) || off == 0; off += 1400 {
		seq++
		end := min(off+1400, len(msg))
		if err := fs.Deliver(Delivery{Source: 1, Session: 2, Seq: seq, Data: msg[off:end], Start: off == 0, End: end == len(msg)}); err != nil {
			return err
		}
		if seq%8 == 0 {
			if err := fs.Commit(1, 2, 0); err != nil {
				return err
			}
		}
	}
	return fs.Commit(1, 2, 0)
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestFileSinkStores(t *testing.T) {
	dir := t.TempDir()
	sink := &FileSink{Dir: dir}
	data := randomData(100_000, 1)
	m := fmt.Sprintf(`{"name":"f.bin","size":%d,"sha256":%q}`, len(data), sumOf(data))
	if err := sink.Deliver(Delivery{Source: 1, Session: 2, Data: append([]byte{KindManifest}, m...), Start: true, End: true}); err != nil {
		t.Fatal(err)
	}
	// Commit hands what was delivered to the file system: the .part file
	// holds it (the receiver ACKs only after that).
	msg := append([]byte{KindFile}, data...)
	if err := sink.Deliver(Delivery{Source: 1, Session: 2, Seq: 1, Data: msg[:50_001], Start: true}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Commit(1, 2, 0); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "f.bin.part")); err != nil || st.Size() != 50_000 {
		t.Fatalf("after Commit the .part file is %v (%v), want 50000 bytes", st, err)
	}
	if err := sink.Deliver(Delivery{Source: 1, Session: 2, Seq: 2, Data: msg[50_001:], End: true}); err != nil {
		t.Fatal(err)
	}
	// The last packet's Deliver stored the file under its name.
	got, err := os.ReadFile(filepath.Join(dir, "f.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored file: %d bytes, %v", len(got), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "f.bin.part")); !os.IsNotExist(err) {
		t.Errorf(".part file left: %v", err)
	}
	res := sink.Results()
	if len(res) != 1 || !res[0].OK || res[0].Path != filepath.Join(dir, "f.bin") || res[0].Reason != "" {
		t.Errorf("results %+v", res)
	}
}

func TestFileSinkFailures(t *testing.T) {
	data := randomData(60_000, 2)
	for _, c := range []struct {
		name      string
		file      string
		sum       string
		exists    bool
		overwrite bool
		create    func(string) (sinkFile, error)
		want      headers.AbortReason
	}{
		{name: "read-only", create: failCreate(syscall.EROFS), want: headers.AbortReadOnly},
		{name: "permission", create: failCreate(syscall.EACCES), want: headers.AbortPermission},
		{name: "no space", create: limitCreate(20_000, syscall.ENOSPC), want: headers.AbortNoSpace},
		{name: "io", create: limitCreate(30_000, syscall.EIO), want: headers.AbortIO},
		{name: "exists", exists: true, want: headers.AbortExists},
		{name: "overwrite", exists: true, overwrite: true},
		{name: "checksum", sum: sumOf(data[1:]), want: headers.AbortChecksum},
		{name: "bad name", file: "../up.bin", want: headers.AbortBadManifest},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			name := cmpOr(c.file, "f.bin")
			path := filepath.Join(dir, name)
			if c.exists {
				if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			sink := &FileSink{Dir: dir, Overwrite: c.overwrite, create: c.create}
			var seen []FileResult
			sink.OnFile = func(r FileResult) { seen = append(seen, r) }
			err := feedFile(sink, name, data, cmpOr(c.sum, sumOf(data)))
			if got := AbortReasonOf(err); got != c.want {
				t.Fatalf("error %v: reason %v, want %v", err, got, c.want)
			}
			wantReason := ""
			if c.want != 0 {
				wantReason = c.want.String()
			}
			if len(seen) != 1 || seen[0].OK != (c.want == 0) || seen[0].Reason != wantReason {
				t.Fatalf("results %+v", seen)
			}
			if c.want == 0 {
				if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("stored %d bytes, %v", len(got), err)
				}
				return
			}
			// Nothing half-written is left, and an existing file is
			// untouched.
			if _, err := os.Stat(filepath.Join(dir, "f.bin.part")); !os.IsNotExist(err) {
				t.Errorf(".part file left: %v", err)
			}
			got, err := os.ReadFile(path)
			switch {
			case c.exists && string(got) != "old":
				t.Errorf("the existing file now holds %d bytes (%v)", len(got), err)
			case !c.exists && !os.IsNotExist(err):
				t.Errorf("a file was stored: %d bytes, %v", len(got), err)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestFileSinkRenameNoReplace: a file that appears under the name while
// the transfer runs is not replaced without Overwrite.
func TestFileSinkRenameNoReplace(t *testing.T) {
	dir := t.TempDir()
	sink := &FileSink{Dir: dir}
	data := randomData(5000, 3)
	m := fmt.Sprintf(`{"name":"f.bin","size":%d,"sha256":%q}`, len(data), sumOf(data))
	if err := sink.Deliver(Delivery{Data: append([]byte{KindManifest}, m...), Start: true, End: true}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Deliver(Delivery{Seq: 1, Data: append([]byte{KindFile}, data[:100]...), Start: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f.bin"), []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := sink.Deliver(Delivery{Seq: 2, Data: data[100:], End: true})
	if AbortReasonOf(err) != headers.AbortExists {
		t.Fatalf("error %v, want exists", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f.bin")); string(got) != "theirs" {
		t.Errorf("the file that appeared was replaced (%d bytes)", len(got))
	}
}

// commitSink is a Sink that records deliveries and fails its Commit with
// err once failAt or more packets were delivered.
type commitSink struct {
	delivered int
	commits   []int
	failAt    int
	err       error
}

func (c *commitSink) Deliver(Delivery) error { c.delivered++; return nil }
func (c *commitSink) Commit(uint16, uint16, uint32) error {
	if c.failAt > 0 && c.delivered >= c.failAt {
		return c.err
	}
	c.commits = append(c.commits, c.delivered)
	return nil
}

// dataPackets builds n fixed-mode DATA packets of stream 7/3 to receiver
// 1, sequence numbers from 0, the last with F.
func dataPackets(t *testing.T, n int) [][]byte {
	t.Helper()
	p := &pipeTransport{}
	s, err := NewReliableSender(p, SessionConfig{SourceID: 7, SessionID: 3, Receivers: []uint16{1}, CC: CCConfig{InitialRate: 1e6, MaxRate: 1e6, Burst: 4096},
		MinRTO: time.Minute, MaxRTO: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMessage(context.Background(), nil, make([]byte, n*s.MaxAppData(1))); err != nil {
		t.Fatal(err)
	}
	if len(p.sent) != n {
		t.Fatalf("%d packets, want %d", len(p.sent), n)
	}
	return p.sent
}

// TestReceiverAcksOnlyStored: every ACK follows a Commit that covered it;
// when Commit fails no ACK goes, ABORT does (reason, first sequence not
// stored, the receiver named), and again on later DATA at most every
// AbortRepeat.
func TestReceiverAcksOnlyStored(t *testing.T) {
	pkts := dataPackets(t, 100)
	sink := &commitSink{failAt: 70, err: &os.PathError{Op: "write", Path: "/out/f.part", Err: syscall.ENOSPC}}
	p := &pipeTransport{}
	r, err := NewReliableReceiver(p, SessionReceiverConfig{ID: 1, AckEvery: 16, Sink: sink, AbortRepeat: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var acks []uint32
	var aborts []headers.SMH
	collect := func() {
		for _, b := range p.sent {
			h := headers.SMH(b)
			if err := h.Validate(); err != nil {
				t.Fatalf("receiver sent a malformed packet: %v", err)
			}
			switch h.Type() {
			case headers.TypeACK:
				acks = append(acks, h.Sequence())
			case headers.TypeABORT:
				aborts = append(aborts, h)
			}
		}
		p.sent = nil
	}
	now := int64(time.Millisecond)
	for i, b := range pkts[:80] {
		r.now = now + int64(i)*int64(10*time.Microsecond)
		r.handle(b)
		r.timers(r.now)
	}
	collect()
	// ACKs at 16, 32, 48 and 64 deliveries, each after its Commit; at 80
	// Commit fails.
	if want := []uint32{16, 32, 48, 64}; !slices.Equal(acks, want) {
		t.Fatalf("ACKs %v, want %v", acks, want)
	}
	if want := []int{16, 32, 48, 64}; !slices.Equal(sink.commits, want) {
		t.Fatalf("commits at %v, want %v", sink.commits, want)
	}
	if len(aborts) != 1 {
		t.Fatalf("%d ABORTs, want 1", len(aborts))
	}
	a := aborts[0]
	if headers.AbortReason(a.FeedbackCount()) != headers.AbortNoSpace || a.Sequence() != 64 || a.SpeaksFor() != 1 ||
		a.ReporterID() != 1 || !slices.Equal(a.AppendReceivers(nil), []uint16{1}) || a.SourceID() != 7 || a.SessionID() != 3 {
		t.Errorf("ABORT %+v, set %v", a.Fields(), a.AppendReceivers(nil))
	}
	// Later DATA: no delivery, no ACK, no NACK; ABORT again once
	// AbortRepeat has passed since the last.
	delivered := sink.delivered
	last := r.now
	for i, b := range pkts[80:] {
		r.now = last + int64(i+1)*int64(time.Millisecond)
		r.handle(b)
		r.timers(r.now)
	}
	aborts = nil
	collect()
	if sink.delivered != delivered || len(acks) != 4 {
		t.Errorf("after the failure: %d more deliveries, ACKs %v", sink.delivered-delivered, acks)
	}
	// 20 packets 1 ms apart: an ABORT at 10 ms and one at 20 ms.
	if len(aborts) != 2 {
		t.Errorf("%d ABORTs on later DATA, want 2", len(aborts))
	}
	for _, b := range p.sent {
		if headers.SMH(b).Type() == headers.TypeNACK {
			t.Errorf("NACK after the abort")
		}
	}
	st := r.Report().Streams[0]
	if st.AbortReason != "no_space" || st.StoreError == "" || st.ABORTs != 3 || st.ACKs != 4 {
		t.Errorf("stream report %+v", st)
	}
}

// abortPkt is an ABORT about stream 7/3 naming ids.
func abortPkt(reason headers.AbortReason, seq uint32, reporter uint16, ids []uint16) []byte {
	b := make([]byte, 256)
	n := headers.PutHeader(b, headers.Fields{Type: headers.TypeABORT, HopLimit: 4, SourceID: 7, SessionID: 3, Epoch: testEpoch, Sequence: seq,
		Count: uint16(reason), SpeaksFor: uint16(len(ids)), ReporterID: reporter}, ids)
	return b[:n]
}

// TestSenderABORT: an ABORT fails the receivers it names that the stream
// addressed (others are counted as ambiguous), frees what only they held,
// gets them no repairs, and a later ACK does not revive them.
func TestSenderABORT(t *testing.T) {
	p := &pipeTransport{}
	// No RTO or give-up within the test: only feedback moves the sender.
	s, err := NewReliableSender(p, SessionConfig{SourceID: 7, SessionID: 3, Epoch: testEpoch, Receivers: []uint16{1, 2, 3, 4}, CC: CCConfig{InitialRate: 1e6, MaxRate: 1e6},
		RepairWindow: -1, MinRTO: time.Minute, MaxRTO: time.Minute, GiveUp: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMessage(context.Background(), nil, make([]byte, 10*1442+1)); err != nil {
		t.Fatal(err)
	}
	// 2 cannot store the stream; a NACK from 1 and 2 for 3-4 then repairs
	// only 1.
	nack := make([]byte, 256)
	n := headers.PutHeader(nack, headers.Fields{Type: headers.TypeNACK, HopLimit: 4, SourceID: 7, SessionID: 3, Epoch: testEpoch, Sequence: 3, Count: 2, SpeaksFor: 2, ReporterID: 0xFFFF}, []uint16{1, 2})
	p.sent = nil
	p.in = append(p.in, abortPkt(headers.AbortReadOnly, 0, 2, []uint16{2}), nack[:n])
	s.poll()
	if len(p.sent) != 2 {
		t.Fatalf("%d retransmissions, want 2", len(p.sent))
	}
	for _, d := range p.sent {
		if ids := headers.SMH(d).AppendReceivers(nil); !slices.Equal(ids, []uint16{1}) {
			t.Errorf("retransmission to %v, want [1]", ids)
		}
	}
	// The others acknowledge everything: nothing is left for 2. 4 then
	// says it cannot store what it got; 99 was never addressed.
	p.in = append(p.in,
		ack(11, 3, 0xFFFF, []uint16{1, 3, 4}),
		abortPkt(headers.AbortNoSpace, 0, 0xFFFF, []uint16{4, 99}),
		ack(5, 1, 2, nil), // a late ACK from 2 does not revive it
	)
	s.poll()
	if s.Outstanding() != 0 {
		t.Errorf("%d packets outstanding: the aborted receiver still holds them", s.Outstanding())
	}
	rep := s.Report()
	if rep.Complete || !slices.Equal(rep.Failed(), []uint16{2, 4}) || rep.ABORTs != 2 || rep.AmbiguousABORTs != 1 {
		t.Fatalf("complete %v, failed %v, ABORTs %d (%d ambiguous)", rep.Complete, rep.Failed(), rep.ABORTs, rep.AmbiguousABORTs)
	}
	for _, c := range rep.Receivers {
		var wantReason, wantErr string
		switch c.ID {
		case 2:
			wantReason, wantErr = "read_only", headers.AbortReadOnly.Message()
		case 4:
			wantReason, wantErr = "no_space", headers.AbortNoSpace.Message()
		}
		if c.AbortReason != wantReason || c.Error != wantErr || c.Failed != (wantReason != "") || c.Complete != (wantReason == "") {
			t.Errorf("receiver %+v", c)
		}
	}
}

// TestReliableStoreFailures sends a file through an in-memory switch with
// loss to five receivers: one stores it, and the others cannot (a
// read-only directory, a full device, an existing file, a denied
// permission). The sender's report names each failed one with its reason
// well before the give-up time, and the first stores the file byte-exact.
func TestReliableStoreFailures(t *testing.T) {
	ids := []uint16{100, 1, 2, 3, 4, 5}
	trs := memSwitch(t, ids, 0.02)
	data := randomData(400_000, 4)
	sinks := make([]*FileSink, 5)
	dirs := make([]string, 5)
	for i := range sinks {
		dirs[i] = t.TempDir()
		sinks[i] = &FileSink{Dir: dirs[i]}
	}
	sinks[1].create = failCreate(syscall.EROFS)
	sinks[2].create = limitCreate(150_000, syscall.ENOSPC)
	if err := os.WriteFile(filepath.Join(dirs[3], "ckpt.bin"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	sinks[4].create = failCreate(syscall.EACCES)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	reps := make([]*SessionReport, 5)
	for i, sink := range sinks {
		r, err := NewReliableReceiver(trs[i+1], SessionReceiverConfig{ID: ids[i+1], Sink: sink})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i], _ = r.Run(ctx)
		}()
	}
	s, err := NewReliableSender(trs[0], SessionConfig{SourceID: 100, SessionID: 8, Receivers: ids[1:], GiveUp: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 15*time.Second)
	defer tcancel()
	start := time.Now()
	if err := SendFile(tctx, s, "ckpt.bin", bytes.NewReader(data), int64(len(data)), sha256.Sum256(data)); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Flush(tctx)
	if err != nil {
		t.Fatalf("flush: %v (the failed receivers still held packets?)", err)
	}
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	want := map[uint16]string{2: "read_only", 3: "no_space", 4: "exists", 5: "permission"}
	for _, c := range rep.Receivers {
		if c.AbortReason != want[c.ID] || c.Complete != (want[c.ID] == "") || c.Failed != (want[c.ID] != "") {
			t.Errorf("receiver %+v, want reason %q", c, want[c.ID])
		}
		if w := want[c.ID]; w != "" && c.Error == "" {
			t.Errorf("receiver %d: no error text", c.ID)
		}
	}
	if !slices.Equal(rep.Failed(), []uint16{2, 3, 4, 5}) {
		t.Errorf("failed %v", rep.Failed())
	}
	got, err := os.ReadFile(filepath.Join(dirs[0], "ckpt.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("receiver 1 stored %d bytes (%v)", len(got), err)
	}
	for i := 1; i < 5; i++ {
		res := sinks[i].Results()
		if len(res) != 1 || res[0].OK || res[0].Reason != want[ids[i+1]] {
			t.Errorf("receiver %d results %+v", ids[i+1], res)
		}
		if st := reps[i].Streams; len(st) != 1 || st[0].ABORTs == 0 || st[0].AbortReason != want[ids[i+1]] {
			t.Errorf("receiver %d streams %+v", ids[i+1], st)
		}
		if matches, _ := filepath.Glob(filepath.Join(dirs[i], "*.part")); len(matches) != 0 {
			t.Errorf("receiver %d left %v", ids[i+1], matches)
		}
	}
	t.Logf("%v, %d packets, %d retransmissions, %d ABORTs heard", elapsed, rep.Packets, rep.Retransmissions, rep.ABORTs)
}

// TestReliableChecksumAbort: the manifest's SHA-256 does not match the data
// (every receiver hashes what it got): every receiver aborts with
// checksum, the sender's report says so and Flush ends.
func TestReliableChecksumAbort(t *testing.T) {
	ids := []uint16{100, 1, 2}
	trs := memSwitch(t, ids, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := range 2 {
		r, err := NewReliableReceiver(trs[i+1], SessionReceiverConfig{ID: ids[i+1], Sink: &FileSink{Dir: t.TempDir()}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); r.Run(ctx) }()
	}
	s, err := NewReliableSender(trs[0], SessionConfig{SourceID: 100, SessionID: 8, Receivers: ids[1:], GiveUp: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 15*time.Second)
	defer tcancel()
	data := randomData(50_000, 5)
	if err := SendFile(tctx, s, "f.bin", bytes.NewReader(data), int64(len(data)), sha256.Sum256(data[1:])); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Flush(tctx)
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Receivers {
		if c.Complete || c.AbortReason != "checksum" {
			t.Errorf("receiver %+v", c)
		}
	}
}

// TestFileSinkDoesNotAllocate: a file packet's trip through FileSink
// (hash, buffer, Commit) allocates nothing.
func TestFileSinkDoesNotAllocate(t *testing.T) {
	sink := &FileSink{Dir: t.TempDir()}
	m := `{"name":"f.bin","size":100000000,"sha256":"00"}`
	if err := sink.Deliver(Delivery{Data: append([]byte{KindManifest}, m...), Start: true, End: true}); err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 1400)
	pkt[0] = KindFile
	if err := sink.Deliver(Delivery{Seq: 1, Data: pkt, Start: true}); err != nil {
		t.Fatal(err)
	}
	seq := uint32(1)
	if a := testing.AllocsPerRun(1000, func() {
		seq++
		if err := sink.Deliver(Delivery{Seq: seq, Data: pkt}); err != nil {
			t.Fatal(err)
		}
		if seq%32 == 0 {
			if err := sink.Commit(0, 0, 0); err != nil {
				t.Fatal(err)
			}
		}
	}); a != 0 {
		t.Errorf("%v allocations per packet", a)
	}
}
