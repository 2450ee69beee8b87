package ffi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// shmPath returns a ring file path in a fresh directory of this user's
// under /dev/shm (falling back to the test's temp dir where /dev/shm does not
// exist), removed when the test ends. /dev/shm itself is writable by all,
// so OpenRingFile refuses it.
func shmPath(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "sparsecast-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	return filepath.Join(dir, fmt.Sprintf("sparsecast-test-%d-%s.ring", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_")))
}

// fillRec writes record number i: its index, then bytes derived from it, so
// a torn, reordered or stale record is caught.
func fillRec(b []byte, i uint64) {
	binary.LittleEndian.PutUint64(b, i)
	for j := 8; j < RingRecordSize; j++ {
		b[j] = byte(i*31 + uint64(j))
	}
}

func checkRec(b []byte, i uint64) error {
	if got := binary.LittleEndian.Uint64(b); got != i {
		return fmt.Errorf("record %d: index %d", i, got)
	}
	for j := 8; j < RingRecordSize; j++ {
		if b[j] != byte(i*31+uint64(j)) {
			return fmt.Errorf("record %d: byte %d is %#x, want %#x", i, j, b[j], byte(i*31+uint64(j)))
		}
	}
	return nil
}

func TestRingFileCreateAndReopen(t *testing.T) {
	p := shmPath(t)
	f, err := OpenRingFile(p, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.Created() || f.Slots() != 8 {
		t.Fatalf("created %v slots %d", f.Created(), f.Slots())
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != int64(RingFileSize(8)) {
		t.Fatalf("mode %v size %d, want 0600 and %d", st.Mode().Perm(), st.Size(), RingFileSize(8))
	}
	f.SetDataplaneBootID(7)
	f.SetAppliedGeneration(42)
	f.SetControlBootID(9)
	var rec [RingRecordSize]byte
	fillRec(rec[:], 5)
	if !f.Commands().TryPush(rec[:]) {
		t.Fatal("push failed")
	}

	g, err := OpenRingFile(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Created() || g.Slots() != 8 {
		t.Fatalf("reopen: created %v slots %d", g.Created(), g.Slots())
	}
	if g.DataplaneBootID() != 7 || g.AppliedGeneration() != 42 || g.ControlBootID() != 9 {
		t.Fatalf("header: %d %d %d", g.DataplaneBootID(), g.AppliedGeneration(), g.ControlBootID())
	}
	if g.Commands().Depth() != 1 || g.Events().Depth() != 0 {
		t.Fatalf("depths %d %d", g.Commands().Depth(), g.Events().Depth())
	}
	var out [RingRecordSize]byte
	if !g.Commands().TryPop(out[:]) {
		t.Fatal("pop failed")
	}
	if err := checkRec(out[:], 5); err != nil {
		t.Fatal(err)
	}
	if f.Commands().Depth() != 0 {
		t.Fatal("the first mapping does not see the pop")
	}
}

func TestRingFileRejects(t *testing.T) {
	p := shmPath(t)
	f, err := OpenRingFile(p, 16)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, tc := range []struct {
		name  string
		slots int
		prep  func()
		want  string
	}{
		{"slots not power of two", 12, nil, "power of two"},
		{"slots too small", 1, nil, "power of two"},
		{"slots differ", 32, nil, "16 slots per ring, 32 requested"},
		{"bad magic", 16, func() { patch(t, p, 0, []byte("NOTARING")) }, "not a sparsecast ring file"},
		{"bad layout", 16, func() { patch(t, p, 8, []byte{2, 0, 0, 0}) }, "layout version 2"},
		{"bad record size", 16, func() { patch(t, p, 12, []byte{128, 0, 0, 0}) }, "record size 128"},
		{"bad slots", 0, func() { patch(t, p, 16, []byte{3, 0, 0, 0}) }, "header says 3 slots"},
		{"truncated", 16, func() { os.Truncate(p, 5000) }, "5000 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(p)
			f, err := OpenRingFile(p, 16)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			if tc.prep != nil {
				tc.prep()
			}
			g, err := OpenRingFile(p, tc.slots)
			if err == nil {
				g.Close()
				t.Fatalf("opened")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %q does not say %q and name the file", err, tc.want)
			}
		})
	}
}

func patch(t *testing.T, p string, off int64, b []byte) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// A file created but never initialised (its creator died) is taken over.
func TestRingFileAbandoned(t *testing.T) {
	p := shmPath(t)
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenRingFile(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := os.Stat(p)
	if !f.Created() || st.Mode().Perm() != 0o600 {
		t.Fatalf("created %v, mode %v", f.Created(), st.Mode().Perm())
	}
}

// A ring file or directory that someone else could write is refused, with an
// error naming what is wrong, and left as it was.
func TestRingFileUntrusted(t *testing.T) {
	good := func(t *testing.T) string {
		p := shmPath(t)
		f, err := OpenRingFile(p, 4)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		return p
	}
	cases := []struct {
		name, want string
		setup      func(t *testing.T) string
		root       bool
	}{
		{"other user", "belongs to uid 65534", func(t *testing.T) string {
			p := good(t)
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return p
		}, true},
		{"mode", "mode 0666, want 0600", func(t *testing.T) string {
			p := good(t)
			os.Chmod(p, 0o666)
			return p
		}, false},
		{"symlink", "symbolic link", func(t *testing.T) string {
			p := good(t)
			l := p + ".link"
			if err := os.Symlink(p, l); err != nil {
				t.Fatal(err)
			}
			return l
		}, false},
		{"hard link", "2 hard links", func(t *testing.T) string {
			p := good(t)
			l := p + ".link"
			if err := os.Link(p, l); err != nil {
				t.Fatal(err)
			}
			return l
		}, false},
		{"fifo", "not a regular file", func(t *testing.T) string {
			p := shmPath(t)
			if err := unix.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, false},
		{"dir writable by others", "others can write it", func(t *testing.T) string {
			p := shmPath(t)
			os.Chmod(filepath.Dir(p), 0o777)
			return p
		}, false},
		{"dir of another user", "belongs to uid 65534", func(t *testing.T) string {
			p := shmPath(t)
			if err := os.Chown(filepath.Dir(p), 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return p
		}, true},
		{"world-writable dir", "others can write it", func(t *testing.T) string {
			return filepath.Join(os.TempDir(), fmt.Sprintf("sparsecast-never-%d.ring", os.Getpid()))
		}, false},
		{"missing dir", "does not exist", func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "missing", "x.ring")
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root (chown)")
			}
			p := tc.setup(t)
			before, _ := os.Lstat(p)
			f, err := OpenRingFile(p, 0)
			if err == nil {
				f.Close()
				t.Fatalf("opened %s", p)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
			if after, _ := os.Lstat(p); before != nil && (after == nil || after.Mode() != before.Mode() || after.Size() != before.Size()) {
				t.Fatal("the refused file was changed")
			}
		})
	}
}

// A fault inside a mapped ring (the file truncated under it) is an error, not
// a crash, and the file can be reopened.
func TestRingFileTruncatedUnderMapping(t *testing.T) {
	p := shmPath(t)
	f, err := OpenRingFile(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	var rec [RingRecordSize]byte
	err = CatchRingFault(func() { f.Commands().TryPop(rec[:]) })
	if !errors.Is(err, ErrRingFault) {
		t.Fatalf("TryPop on a truncated ring: %v, want ErrRingFault", err)
	}
	// Other panics are not swallowed.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a plain panic was swallowed")
			}
		}()
		CatchRingFault(func() { panic("not a fault") })
	}()
	g, err := OpenRingFile(p, 0)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	g.Close()
}

func TestSPSCFullEmptyWrap(t *testing.T) {
	f, err := OpenRingFile(shmPath(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q := f.Events()
	var rec, out [RingRecordSize]byte
	if q.TryPop(out[:]) {
		t.Fatal("pop from empty")
	}
	if q.TryPush(rec[:10]) || q.TryPop(out[:10]) {
		t.Fatal("short record accepted")
	}
	next, want := uint64(0), uint64(0)
	for round := 0; round < 10; round++ {
		for q.Depth() < 4 {
			fillRec(rec[:], next)
			if !q.TryPush(rec[:]) {
				t.Fatalf("push %d failed at depth %d", next, q.Depth())
			}
			next++
		}
		fillRec(rec[:], next)
		if q.TryPush(rec[:]) {
			t.Fatal("push into a full ring")
		}
		for i := 0; i < 3; i++ {
			if !q.TryPop(out[:]) {
				t.Fatal("pop failed")
			}
			if err := checkRec(out[:], want); err != nil {
				t.Fatal(err)
			}
			want++
		}
	}
	if q.Drain() != 1 || q.Depth() != 0 {
		t.Fatal("drain")
	}
}

// Staged records stay invisible until Publish shows them all at once;
// staging counts against the ring's room, and TryPush publishes what was
// staged before it.
func TestSPSCStagePublish(t *testing.T) {
	f, err := OpenRingFile(shmPath(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q := f.Commands()
	var rec, out [RingRecordSize]byte
	for i := range uint64(3) {
		fillRec(rec[:], i)
		if !q.Stage(rec[:]) {
			t.Fatalf("stage %d", i)
		}
	}
	if q.TryPop(out[:]) || q.Depth() != 0 {
		t.Fatal("a staged record is visible before Publish")
	}
	if q.Stage(rec[:10]) {
		t.Fatal("short record staged")
	}
	fillRec(rec[:], 3)
	if !q.Stage(rec[:]) {
		t.Fatal("stage 3")
	}
	if q.Stage(rec[:]) {
		t.Fatal("staged a fifth record into four slots")
	}
	if n := q.Publish(); n != 4 || q.Depth() != 4 {
		t.Fatalf("published %d, depth %d", n, q.Depth())
	}
	if q.Publish() != 0 {
		t.Fatal("published twice")
	}
	for i := range uint64(4) {
		if !q.TryPop(out[:]) {
			t.Fatalf("pop %d", i)
		}
		if err := checkRec(out[:], i); err != nil {
			t.Fatal(err)
		}
	}
	fillRec(rec[:], 4)
	q.Stage(rec[:])
	fillRec(rec[:], 5)
	if !q.TryPush(rec[:]) || q.Depth() != 2 {
		t.Fatalf("TryPush after a staged record: depth %d", q.Depth())
	}
	for i := uint64(4); i < 6; i++ {
		if !q.TryPop(out[:]) || checkRec(out[:], i) != nil {
			t.Fatalf("record %d after wrap", i)
		}
	}
}

// Garbage indexes (a stranger scribbled on the file) make TryPop resync
// instead of reading forever.
func TestSPSCCorruptIndexes(t *testing.T) {
	p := shmPath(t)
	f, err := OpenRingFile(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patch(t, p, RingHeaderLen+ringProdOff, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0})
	var out [RingRecordSize]byte
	if f.Commands().TryPop(out[:]) || f.Commands().Resyncs() != 1 || f.Commands().Depth() != 0 {
		t.Fatalf("resyncs %d depth %d", f.Commands().Resyncs(), f.Commands().Depth())
	}
}

func TestSPSCNoAllocs(t *testing.T) {
	f, err := OpenRingFile(shmPath(t), 64)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q := f.Commands()
	var rec, out [RingRecordSize]byte
	allocs := testing.AllocsPerRun(1000, func() {
		q.TryPush(rec[:])
		q.TryPop(out[:])
		_ = q.Depth()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per push+pop", allocs)
	}
}

const (
	childEnv    = "SPARSECAST_SHMRING_CHILD"
	twoProcRecs = 1_000_000
)

// TestSPSCTwoProcesses runs the producer in a second process (this test
// binary, re-executed) and checks every record's order and content.
func TestSPSCTwoProcesses(t *testing.T) {
	if p := os.Getenv(childEnv); p != "" {
		produce(t, p)
		return
	}
	if testing.Short() {
		t.Skip("-short")
	}
	p := shmPath(t)
	f, err := OpenRingFile(p, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSPSCTwoProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+p)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	q := f.Commands()
	var out [RingRecordSize]byte
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for i := uint64(0); i < twoProcRecs; {
		if !q.TryPop(out[:]) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("timed out after %d records; child: %s", i, stderr.String())
			}
			select {
			case err := <-done:
				if q.Depth() == 0 {
					t.Fatalf("producer exited (%v) after %d records: %s", err, i, stderr.String())
				}
				done <- err
			default:
			}
			continue
		}
		if err := checkRec(out[:], i); err != nil {
			cmd.Process.Kill()
			t.Fatal(err)
		}
		i++
	}
	el := time.Since(start)
	if err := <-done; err != nil {
		t.Fatalf("producer: %v: %s", err, stderr.String())
	}
	if q.Depth() != 0 {
		t.Fatalf("%d records left over", q.Depth())
	}
	t.Logf("%d records across processes in %v: %.1f M records/s", twoProcRecs, el, twoProcRecs/el.Seconds()/1e6)
}

func produce(t *testing.T, path string) {
	f, err := OpenRingFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q := f.Commands()
	var rec [RingRecordSize]byte
	deadline := time.Now().Add(60 * time.Second)
	for i := uint64(0); i < twoProcRecs; i++ {
		fillRec(rec[:], i)
		for !q.TryPush(rec[:]) {
			if time.Now().After(deadline) {
				t.Fatalf("consumer stalled at %d", i)
			}
		}
	}
}

// BenchmarkSPSC measures records per second between two goroutines.
func BenchmarkSPSC(b *testing.B) {
	f, err := OpenRingFile(shmPath(b), 1024)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	q := f.Commands()
	done := make(chan struct{})
	go func() {
		var rec [RingRecordSize]byte
		for i := 0; i < b.N; i++ {
			fillRec(rec[:], uint64(i))
			for !q.TryPush(rec[:]) {
			}
		}
		close(done)
	}()
	var out [RingRecordSize]byte
	for i := 0; i < b.N; {
		if q.TryPop(out[:]) {
			i++
		}
	}
	<-done
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
