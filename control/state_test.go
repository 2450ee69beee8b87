package control

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openStore(t testing.TB, dir string) *BoltStore {
	t.Helper()
	s, err := OpenBoltStore(dir, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func loadAll(t *testing.T, s *BoltStore) map[uint32][]uint16 {
	t.Helper()
	g, err := s.LoadGroups()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func sameGroups(a, b map[uint32][]uint16) bool {
	return maps.EqualFunc(a, b, func(x, y []uint16) bool { return slices.Equal(x, y) })
}

func TestBoltStoreRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := openStore(t, dir)
	if g := loadAll(t, s); len(g) != 0 {
		t.Fatalf("new store has %v", g)
	}
	want := map[uint32][]uint16{7: {1, 2, 3}, 1 << 31: {4}, 0: {}}
	for id, m := range want {
		if err := s.PutGroup(id, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutGroup(9, []uint16{1}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGroup(9); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGroup(12345); err != nil {
		t.Fatalf("deleting an absent group: %v", err)
	}
	s.Close()
	fi, err := os.Stat(filepath.Join(dir, StateFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
	s = openStore(t, dir)
	defer s.Close()
	if got := loadAll(t, s); !sameGroups(got, want) {
		t.Fatalf("reopened: %v, want %v", got, want)
	}
}

// A second process (or a second open in this one) on the same directory
// is refused, not let in to race the first.
func TestBoltStoreLocked(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	_, err := OpenBoltStore(dir, 200*time.Millisecond)
	if !errors.Is(err, ErrStateLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second open: %v", err)
	}
	// Once the first closes, the directory is free.
	s.Close()
	openStore(t, dir).Close()
}

func writeState(t *testing.T, dir string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, StateFileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// expectCorrupt opens dir and wants an error naming the file and saying
// what is wrong, and no store.
func expectCorrupt(t *testing.T, dir, want string) {
	t.Helper()
	s, err := OpenBoltStore(dir, 100*time.Millisecond)
	if err == nil {
		g, _ := s.LoadGroups()
		s.Close()
		t.Fatalf("opened a bad state file, with %d groups", len(g))
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, StateFileName)) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q: want the file's path and %q", err, want)
	}
	t.Log(err)
}

// pageSize is bbolt's page size for files it creates here.
var pageSize = os.Getpagesize()

// metaTxid reads a meta page's transaction ID (page header 16 bytes, then
// magic, version, page size, flags, root bucket 16, freelist, pgid, txid).
func metaTxid(b []byte, i int) uint64 {
	return binary.LittleEndian.Uint64(b[i*pageSize+16+4+4+4+4+16+8+8:])
}

// filledState writes groups 1..n into a store in dir and returns the file.
func filledState(t *testing.T, dir string, n int) []byte {
	t.Helper()
	openStore(t, dir).Close()
	// One transaction, not n fsyncs.
	db, err := bolt.Open(filepath.Join(dir, StateFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for i := 1; i <= n; i++ {
			if err := tx.Bucket(bucketGroups).Put(groupKey(uint32(i)), encodeMembers([]uint16{uint16(i), uint16(i + 1)})); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, StateFileName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBoltStoreBadFiles(t *testing.T) {
	t.Run("garbage", func(t *testing.T) {
		dir := t.TempDir()
		writeState(t, dir, []byte(strings.Repeat("not a bbolt file\n", 1000)))
		expectCorrupt(t, dir, "corrupt")
	})
	t.Run("short", func(t *testing.T) {
		dir := t.TempDir()
		writeState(t, dir, []byte("x"))
		expectCorrupt(t, dir, "corrupt")
	})
	t.Run("truncated", func(t *testing.T) {
		dir := t.TempDir()
		b := filledState(t, dir, 3000)
		writeState(t, dir, b[:len(b)/2])
		expectCorrupt(t, dir, "corrupt")
	})
	t.Run("both meta pages torn", func(t *testing.T) {
		dir := t.TempDir()
		b := filledState(t, dir, 10)
		for i := range 2 {
			b[i*pageSize+40] ^= 0xFF // inside the meta, under its checksum
		}
		writeState(t, dir, b)
		expectCorrupt(t, dir, "corrupt")
	})
	t.Run("data page overwritten", func(t *testing.T) {
		dir := t.TempDir()
		b := filledState(t, dir, 3000)
		for i := 2 * pageSize; i < len(b); i++ {
			b[i] = 0xA5
		}
		writeState(t, dir, b)
		expectCorrupt(t, dir, "corrupt")
	})
	t.Run("another bbolt file", func(t *testing.T) {
		dir := t.TempDir()
		db, err := bolt.Open(filepath.Join(dir, StateFileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error {
			b, _ := tx.CreateBucket([]byte("someone else's"))
			return b.Put([]byte("k"), []byte("v"))
		})
		db.Close()
		expectCorrupt(t, dir, "not a sparsecast state file")
	})
	t.Run("bad record", func(t *testing.T) {
		dir := t.TempDir()
		filledState(t, dir, 2)
		db, err := bolt.Open(filepath.Join(dir, StateFileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketGroups).Put(groupKey(5), []byte{0, 3, 0})
		})
		db.Close()
		expectCorrupt(t, dir, "group 5: members record of 3 bytes")
	})
	t.Run("members out of order", func(t *testing.T) {
		dir := t.TempDir()
		filledState(t, dir, 2)
		db, err := bolt.Open(filepath.Join(dir, StateFileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketGroups).Put(groupKey(6), encodeMembers([]uint16{4, 4}))
		})
		db.Close()
		expectCorrupt(t, dir, "group 6: members not strictly ascending")
	})
}

func TestBoltStoreUnusablePaths(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBoltStore(file, 0); err == nil || !strings.Contains(err.Error(), "state directory "+file) {
		t.Errorf("state dir is a file: %v", err)
	}
	if _, err := OpenBoltStore(filepath.Join(file, "sub"), 0); err == nil || !strings.Contains(err.Error(), "state directory") {
		t.Errorf("state dir under a file: %v", err)
	}
	dir := filepath.Join(tmp, "dir")
	if err := os.MkdirAll(filepath.Join(dir, StateFileName), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBoltStore(dir, 0); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("state file is a directory: %v", err)
	}
	if _, err := OpenBoltStore("", 0); err == nil {
		t.Error("empty path accepted")
	}
	if os.Geteuid() != 0 {
		// Root reads through permissions; everyone else must be told.
		ro := filepath.Join(tmp, "ro")
		filledState(t, ro, 1)
		os.Chmod(filepath.Join(ro, StateFileName), 0)
		if _, err := OpenBoltStore(ro, 0); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable file: %v", err)
		}
	}
}

// A torn last commit (its meta page half written when the machine
// stopped) loses that commit only: bbolt falls back to the other meta
// page, and the store opens with every earlier write.
func TestBoltStoreTornLastCommit(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	for i := uint32(1); i <= 20; i++ {
		if err := s.PutGroup(i, []uint16{uint16(i)}); err != nil {
			t.Fatal(err)
		}
	}
	before := loadAll(t, s)
	if err := s.PutGroup(21, []uint16{21}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, err := os.ReadFile(filepath.Join(dir, StateFileName))
	if err != nil {
		t.Fatal(err)
	}
	newest := 0
	if metaTxid(b, 1) > metaTxid(b, 0) {
		newest = 1
	}
	for i := newest*pageSize + 16 + 24; i < (newest+1)*pageSize; i++ {
		b[i] = 0 // the tail of the page never made it
	}
	writeState(t, dir, b)
	s = openStore(t, dir)
	defer s.Close()
	if got := loadAll(t, s); !sameGroups(got, before) {
		t.Fatalf("after a torn last commit: %d groups, want the %d before it", len(got), len(before))
	}
	// And it goes on taking writes.
	if err := s.PutGroup(22, []uint16{1}); err != nil {
		t.Fatal(err)
	}
}

// The writer side of TestBoltStoreKilledMidWrite: with the variable set,
// the test binary writes groups until killed, printing each ID once its
// write has returned.
const killedWriterEnv = "SPARSECAST_STATE_WRITER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(killedWriterEnv); dir != "" {
		s, err := OpenBoltStore(dir, 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		w := bufio.NewWriter(os.Stdout)
		for i := uint32(1); ; i++ {
			// Groups grow and shrink, so pages split and are freed.
			members := make([]uint16, i%300+1)
			for j := range members {
				members[j] = uint16(j*3) + uint16(i%3)
			}
			if err := s.PutGroup(i, members); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			if i%7 == 0 {
				if err := s.DeleteGroup(i - 3); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
			}
			fmt.Fprintf(w, "%d\n", i)
			w.Flush()
		}
	}
	os.Exit(m.Run())
}

// writerGroups is what the writer has stored after writing group n.
func writerGroups(n uint32) map[uint32][]uint16 {
	g := map[uint32][]uint16{}
	for i := uint32(1); i <= n; i++ {
		members := make([]uint16, i%300+1)
		for j := range members {
			members[j] = uint16(j*3) + uint16(i%3)
		}
		g[i] = members
		if i%7 == 0 {
			delete(g, i-3)
		}
	}
	return g
}

// A control process killed (SIGKILL) in the middle of writes leaves a
// store that opens, holds every write that had returned, and at most the
// one in flight besides.
func TestBoltStoreKilledMidWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns writers")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		dir := t.TempDir()
		cmd := exec.Command(exe, "-test.run", "^$")
		cmd.Env = append(os.Environ(), killedWriterEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a different number of acknowledged writes each round.
		killAt := 50 + round*37
		sc := bufio.NewScanner(out)
		var acked uint32
		for sc.Scan() {
			n, err := strconv.ParseUint(sc.Text(), 10, 32)
			if err != nil {
				t.Fatalf("writer said %q", sc.Text())
			}
			acked = uint32(n)
			if int(acked) == killAt {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		cmd.Wait()
		if acked != uint32(killAt) {
			t.Fatalf("round %d: writer stopped at %d: %s", round, acked, stderr.String())
		}
		s := openStore(t, dir)
		got := loadAll(t, s)
		s.Close()
		// The writer went on writing until the signal landed: the store
		// holds the state after some write from the last acknowledged one
		// on, its highest group telling which (the delete after a put is a
		// write of its own, so it may be missing).
		var n uint32
		for id := range got {
			n = max(n, id)
		}
		ok := n >= acked && sameGroups(got, writerGroups(n))
		if !ok && n > acked && n%7 == 0 {
			prev := writerGroups(n - 1)
			prev[n] = got[n]
			ok = sameGroups(got, prev) && sameGroups(map[uint32][]uint16{n: got[n]}, map[uint32][]uint16{n: writerGroups(n)[n]})
		}
		if !ok {
			t.Fatalf("round %d: killed after write %d: the store holds %d groups up to %d, not the state after any write from %d on", round, acked, len(got), n, acked)
		}
		t.Logf("round %d: acknowledged %d, the store holds the state after write %d", round, acked, n)
	}
}
