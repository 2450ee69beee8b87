// The control ring file (docs/control.md): one file in a directory of its
// user's (default /run/sparsecast), mmapped by the control process and the
// switch, holding a header and two
// single-producer single-consumer rings of fixed-size records (commands from
// control, events back). The model is gVisor's sharedmem pipe: free-running
// indexes in shared memory, a record written before the producer index moves
// past it, indexes stored with release and loaded with acquire semantics
// (sync/atomic on x86-64 and arm64). Nothing here knows what a record means
// (that is headers/ring.go); this file only moves 64-byte slots.
package ffi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ring file layout.
//
//	offset 0      header page (RingHeaderLen bytes)
//	  0   magic "SCRING01"            8 bytes, stored last when initialising
//	  8   layout version u32 (=1), record size u32 (=64), slots u32, pad u32
//	  24  reserved
//	  32  dataplane boot ID u64       atomic
//	  40  applied generation u64      atomic
//	  48  control boot ID u64         atomic
//	offset 4096   command ring: producer index (own 64-byte line), consumer
//	              index (own line), then slots x 64-byte records
//	then          event ring: the same
const (
	RingMagic         = "SCRING01"
	RingLayoutVersion = 1
	RingRecordSize    = 64
	RingHeaderLen     = 4096
	DefaultRingSlots  = 1024
	MinRingSlots      = 2
	MaxRingSlots      = 1 << 20

	hdrMagic      = 0
	hdrLayout     = 8
	hdrRecordSize = 12
	hdrSlots      = 16
	hdrBootID     = 32
	hdrApplied    = 40
	hdrControlID  = 48

	ringProdOff = 0
	ringConsOff = 64
	ringRecsOff = 128

	// openWait bounds how long an opener waits for another process that
	// created the file to finish initialising it.
	openWait = 200 * time.Millisecond
)

var magicWord = binary.LittleEndian.Uint64([]byte(RingMagic))

// RingFileSize is the size of a ring file with the given slots per ring.
func RingFileSize(slots int) int { return RingHeaderLen + 2*ringLen(slots) }

func ringLen(slots int) int { return ringRecsOff + slots*RingRecordSize }

// RingFile is an open, mmapped ring file. Its methods may be called from any
// goroutine; each SPSC must have one producer and one consumer at a time.
type RingFile struct {
	path    string
	mem     []byte
	slots   int
	created bool
	// words are the header's atomic fields: magic, dataplane boot ID,
	// applied generation, control boot ID.
	words   [4]*uint64
	cmd, ev SPSC
}

// SPSC is one single-producer single-consumer ring of RingRecordSize-byte
// records inside a RingFile.
type SPSC struct {
	prod, cons *uint64
	recs       []byte
	slots      uint64
	mask       uint64
	resyncs    atomic.Uint64
	staged     uint64 // producer side: records written past prod, not yet published
}

// u64 returns the 8-byte word at off in b as an atomic-capable pointer. The
// index expression bounds-checks the word before the pointer is formed.
func u64(b []byte, off int) (*uint64, error) {
	_ = b[off+7]
	p := unsafe.Pointer(&b[off])
	if uintptr(p)%8 != 0 {
		return nil, fmt.Errorf("ring file: word at offset %d is not 8-byte aligned", off)
	}
	return (*uint64)(p), nil
}

// DefaultRingDir is where ring files go unless told otherwise: a directory
// of the running user's alone (0700), created by whichever side starts first.
const DefaultRingDir = "/run/sparsecast"

// OpenRingFile opens the ring file at path, creating and initialising it
// (mode 0600) when it does not exist. slots is the number of records per
// ring, a power of two in [MinRingSlots, MaxRingSlots]; 0 takes the existing
// file's (or DefaultRingSlots for a new file). An existing file must be a
// ring file of this layout and, unless slots is 0, of this many slots;
// otherwise the error says what differs and the file is left alone.
//
// The file is trusted only as far as its directory is (docs/control.md,
// "Who may touch a ring"): the directory must exist (DefaultRingDir is
// created 0700 if missing), belong to this process's user and be writable
// by no one else, and an existing file must be a regular file with one
// link, this user's, mode 0600. Anything else is refused with an error that
// names what is wrong; the file is never adopted or changed.
func OpenRingFile(path string, slots int) (*RingFile, error) {
	if slots != 0 && (slots < MinRingSlots || slots > MaxRingSlots || slots&(slots-1) != 0) {
		return nil, fmt.Errorf("ring file %s: %d slots: want a power of two in %d-%d", path, slots, MinRingSlots, MaxRingSlots)
	}
	if err := CheckRingDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("ring file %s: %w", path, err)
	}
	created := true
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if errors.Is(err, unix.EEXIST) {
		created = false
		fd, err = unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("ring file %s: is a symbolic link: refusing it", path)
		}
		return nil, fmt.Errorf("ring file %s: open: %w", path, err)
	}
	// The mapping outlives the descriptor.
	defer unix.Close(fd)
	if created {
		// The umask may have taken bits off; the file is ours and new.
		if err := unix.Fchmod(fd, 0o600); err != nil {
			return nil, fmt.Errorf("ring file %s: fchmod: %w", path, err)
		}
	} else if err := checkRingFileOwner(fd); err != nil {
		return nil, fmt.Errorf("ring file %s: %w (remove it if it is stale)", path, err)
	}
	init := created
	if !created {
		hdr, size, err := waitHeader(fd)
		if err != nil {
			return nil, fmt.Errorf("ring file %s: %w", path, err)
		}
		if hdr == nil {
			// The creator never finished (it died between create and
			// initialisation): initialise it ourselves.
			init = true
		} else {
			if err := checkHeader(hdr, size, &slots); err != nil {
				return nil, fmt.Errorf("ring file %s: %w", path, err)
			}
		}
	}
	if slots == 0 {
		slots = DefaultRingSlots
	}
	size := RingFileSize(slots)
	if init {
		if err := unix.Ftruncate(fd, int64(size)); err != nil {
			return nil, fmt.Errorf("ring file %s: ftruncate to %d bytes: %w", path, size, err)
		}
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("ring file %s: mmap %d bytes: %w", path, size, err)
	}
	f := &RingFile{path: path, mem: mem, slots: slots, created: init}
	for i, off := range []int{hdrMagic, hdrBootID, hdrApplied, hdrControlID} {
		if f.words[i], err = u64(mem, off); err != nil {
			unix.Munmap(mem)
			return nil, fmt.Errorf("ring file %s: %w", path, err)
		}
	}
	if init {
		binary.LittleEndian.PutUint32(mem[hdrLayout:], RingLayoutVersion)
		binary.LittleEndian.PutUint32(mem[hdrRecordSize:], RingRecordSize)
		binary.LittleEndian.PutUint32(mem[hdrSlots:], uint32(slots))
		clear(mem[hdrSlots+4 : RingHeaderLen])
		clear(mem[RingHeaderLen:])
	}
	err = f.cmd.init(mem[RingHeaderLen:RingHeaderLen+ringLen(slots)], slots)
	if err == nil {
		err = f.ev.init(mem[RingHeaderLen+ringLen(slots):], slots)
	}
	if err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("ring file %s: %w", path, err)
	}
	if init {
		atomic.StoreUint64(f.words[0], magicWord)
	}
	return f, nil
}

// CheckRingDir checks that dir may hold ring files: an existing directory
// (DefaultRingDir is created, 0700, when missing) that is this process's
// user's and that no one else can write, so no one else can put a file or a
// link there or swap the ring file out. Its ancestors must be root's or
// this user's and, when others can write them, sticky (like /tmp), so no
// one else can rename the directory away either.
func CheckRingDir(dir string) error {
	dir = filepath.Clean(dir)
	if dir == DefaultRingDir {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("directory %s: %w", dir, err)
		}
	}
	euid := uint32(os.Geteuid())
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("directory %s does not exist (create it, mode 0700, owned by the user running control and the switch)", dir)
		}
		return fmt.Errorf("directory %s: %w", dir, err)
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("directory %s is a symbolic link: give the real directory", dir)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%s is not a directory", dir)
	case st.Uid != euid:
		return fmt.Errorf("directory %s belongs to uid %d, not to this process's uid %d: ring files go in a directory of their own user's (e.g. %s, mode 0700)", dir, st.Uid, euid, DefaultRingDir)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("directory %s is mode %04o: others can write it, so they could plant or swap a ring file (chmod 0700 it, or use %s)", dir, st.Mode&0o7777, DefaultRingDir)
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if err := unix.Stat(d, &st); err != nil {
			return fmt.Errorf("directory %s: %w", d, err)
		}
		if st.Uid != 0 && st.Uid != euid {
			return fmt.Errorf("directory %s (above %s) belongs to uid %d: that user could move the ring directory", d, dir, st.Uid)
		}
		if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
			return fmt.Errorf("directory %s (above %s) is mode %04o: others could move the ring directory", d, dir, st.Mode&0o7777)
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}

// checkRingFileOwner refuses an existing ring file that someone else could
// still write or swap: it must be a regular file with one link, this
// process's user's, mode 0600.
func checkRingFileOwner(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fstat: %w", err)
	}
	euid := uint32(os.Geteuid())
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return errors.New("not a regular file")
	case st.Uid != euid:
		return fmt.Errorf("belongs to uid %d, not to this process's uid %d: refusing a ring another user created", st.Uid, euid)
	case st.Mode&0o7777 != 0o600:
		return fmt.Errorf("mode %04o, want 0600: refusing a ring others may map", st.Mode&0o7777)
	case st.Nlink != 1:
		return fmt.Errorf("%d hard links, want 1", st.Nlink)
	}
	return nil
}

// waitHeader reads the header of an existing file, waiting up to openWait
// for a creating process to size and initialise it. It returns a nil header
// when the file stays uninitialised.
func waitHeader(fd int) ([]byte, int64, error) {
	hdr := make([]byte, 64)
	deadline := time.Now().Add(openWait)
	for {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, 0, fmt.Errorf("fstat: %w", err)
		}
		if st.Size >= int64(len(hdr)) {
			n, err := unix.Pread(fd, hdr, 0)
			if err != nil {
				return nil, 0, fmt.Errorf("read header: %w", err)
			}
			if n == len(hdr) && binary.LittleEndian.Uint64(hdr) != 0 {
				return hdr, st.Size, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, st.Size, nil
		}
		time.Sleep(time.Millisecond)
	}
}

// checkHeader validates an initialised header and the file size; slots 0
// adopts the file's.
func checkHeader(hdr []byte, size int64, slots *int) error {
	if string(hdr[:8]) != RingMagic {
		return fmt.Errorf("not a sparsecast ring file (magic %q, want %q)", hdr[:8], RingMagic)
	}
	if v := binary.LittleEndian.Uint32(hdr[hdrLayout:]); v != RingLayoutVersion {
		return fmt.Errorf("layout version %d, this build speaks %d", v, RingLayoutVersion)
	}
	if r := binary.LittleEndian.Uint32(hdr[hdrRecordSize:]); r != RingRecordSize {
		return fmt.Errorf("record size %d, want %d", r, RingRecordSize)
	}
	s := int(binary.LittleEndian.Uint32(hdr[hdrSlots:]))
	if s < MinRingSlots || s > MaxRingSlots || s&(s-1) != 0 {
		return fmt.Errorf("header says %d slots: not a power of two in %d-%d", s, MinRingSlots, MaxRingSlots)
	}
	if *slots != 0 && *slots != s {
		return fmt.Errorf("file has %d slots per ring, %d requested (remove the file or use the same slots)", s, *slots)
	}
	if size != int64(RingFileSize(s)) {
		return fmt.Errorf("file is %d bytes, %d slots need %d", size, s, RingFileSize(s))
	}
	*slots = s
	return nil
}

func (q *SPSC) init(mem []byte, slots int) error {
	var err error
	if q.prod, err = u64(mem, ringProdOff); err != nil {
		return err
	}
	if q.cons, err = u64(mem, ringConsOff); err != nil {
		return err
	}
	q.recs = mem[ringRecsOff : ringRecsOff+slots*RingRecordSize : ringRecsOff+slots*RingRecordSize]
	q.slots = uint64(slots)
	q.mask = uint64(slots - 1)
	return nil
}

func (q *SPSC) unmap() { q.prod, q.cons, q.recs, q.slots, q.mask = nil, nil, nil, 0, 0 }

// Path is the file's path.
func (f *RingFile) Path() string { return f.path }

// Slots is the number of records each ring holds.
func (f *RingFile) Slots() int { return f.slots }

// Created reports whether this open created (initialised) the file.
func (f *RingFile) Created() bool { return f.created }

// Commands is the command ring (control produces, the dataplane consumes).
func (f *RingFile) Commands() *SPSC { return &f.cmd }

// Events is the event ring (the dataplane produces, control consumes).
func (f *RingFile) Events() *SPSC { return &f.ev }

const (
	wordBootID    = 1
	wordApplied   = 2
	wordControlID = 3
)

func (f *RingFile) load(w int) uint64     { return atomic.LoadUint64(f.words[w]) }
func (f *RingFile) store(w int, v uint64) { atomic.StoreUint64(f.words[w], v) }

// DataplaneBootID is the running dataplane's boot ID (0: none yet).
func (f *RingFile) DataplaneBootID() uint64 { return f.load(wordBootID) }

// SetDataplaneBootID publishes the dataplane's boot ID.
func (f *RingFile) SetDataplaneBootID(id uint64) { f.store(wordBootID, id) }

// AppliedGeneration is the generation the dataplane last published.
func (f *RingFile) AppliedGeneration() uint64 { return f.load(wordApplied) }

// SetAppliedGeneration records a published generation.
func (f *RingFile) SetAppliedGeneration(g uint64) { f.store(wordApplied, g) }

// ControlBootID is the running control process's boot ID (0: none yet).
func (f *RingFile) ControlBootID() uint64 { return f.load(wordControlID) }

// SetControlBootID publishes the control process's boot ID.
func (f *RingFile) SetControlBootID(id uint64) { f.store(wordControlID, id) }

// Close unmaps the file (which stays in its directory for the other side and for
// restarts). The RingFile and its rings must not be used afterwards.
func (f *RingFile) Close() error {
	if f.mem == nil {
		return nil
	}
	err := unix.Munmap(f.mem)
	f.mem = nil
	f.words = [4]*uint64{}
	f.cmd.unmap()
	f.ev.unmap()
	return err
}

// TryPush copies rec (exactly RingRecordSize bytes) into the next free slot
// and publishes it, with any records staged before it. It returns false,
// without waiting, when the ring is full or rec has another length.
// Producer side only.
func (q *SPSC) TryPush(rec []byte) bool {
	if !q.Stage(rec) {
		return false
	}
	q.Publish()
	return true
}

// Stage copies rec (exactly RingRecordSize bytes) into the next free slot
// after those already staged, without publishing it: a producer writes a
// batch with Stage and makes it visible at once with Publish, so the
// consumer never waits inside a batch. It returns false when the ring is
// full (staged records included) or rec has another length. Producer side
// only.
func (q *SPSC) Stage(rec []byte) bool {
	if len(rec) != RingRecordSize {
		return false
	}
	p := atomic.LoadUint64(q.prod) + q.staged
	c := atomic.LoadUint64(q.cons)
	if p-c >= q.slots {
		return false
	}
	o := (p & q.mask) * RingRecordSize
	copy(q.recs[o:o+RingRecordSize], rec)
	q.staged++
	return true
}

// Publish makes every staged record visible to the consumer with one store
// and returns how many there were. Producer side only.
func (q *SPSC) Publish() int {
	n := q.staged
	if n > 0 {
		atomic.StoreUint64(q.prod, atomic.LoadUint64(q.prod)+n) // release: the records are visible first
		q.staged = 0
	}
	return int(n)
}

// TryPop copies the oldest record into dst (at least RingRecordSize bytes)
// and frees its slot. It returns false when the ring is empty. Consumer side
// only. Indexes that no producer could have written (more records than
// slots: a corrupted or foreign file) are resynchronised by dropping every
// pending record, counted by Resyncs, so a bad file never wedges a reader.
func (q *SPSC) TryPop(dst []byte) bool {
	if len(dst) < RingRecordSize {
		return false
	}
	c := atomic.LoadUint64(q.cons)
	p := atomic.LoadUint64(q.prod) // acquire: the record is visible
	if p == c {
		return false
	}
	if p-c > q.slots {
		q.resyncs.Add(1)
		atomic.StoreUint64(q.cons, p)
		return false
	}
	o := (c & q.mask) * RingRecordSize
	copy(dst[:RingRecordSize], q.recs[o:o+RingRecordSize])
	atomic.StoreUint64(q.cons, c+1) // release: the slot may be reused
	return true
}

// Depth is the number of records waiting, in [0, slots].
func (q *SPSC) Depth() int {
	c := atomic.LoadUint64(q.cons)
	p := atomic.LoadUint64(q.prod)
	d := p - c
	if d > q.slots { // a consumer moved past a stale load, or garbage
		if int64(d) < 0 {
			return 0
		}
		return int(q.slots)
	}
	return int(d)
}

// Slots is the ring's capacity in records.
func (q *SPSC) Slots() int { return int(q.slots) }

// Drain drops every waiting record (consumer side: a restarted consumer
// that does not want what its predecessor left) and returns how many.
func (q *SPSC) Drain() int {
	c := atomic.LoadUint64(q.cons)
	p := atomic.LoadUint64(q.prod)
	atomic.StoreUint64(q.cons, p)
	return int(p - c)
}

// Resyncs counts the times TryPop found impossible indexes and skipped to
// the producer's.
func (q *SPSC) Resyncs() uint64 { return q.resyncs.Load() }

// ErrRingFault is the error CatchRingFault returns for a memory fault inside
// a mapped ring file: the file shrank (truncated by someone) under the
// mapping. The mapping must be dropped; the file may be reopened.
var ErrRingFault = errors.New("memory fault in the mapped ring file (it shrank under the mapping)")

// CatchRingFault runs fn, which reads or writes a mapped ring file, and
// turns a memory fault inside it (SIGBUS on a truncated file) into
// ErrRingFault instead of a crash of the whole process
// (debug.SetPanicOnFault, for this goroutine, while fn runs). Any other
// panic goes on. fn must leave nothing half-done that matters if it is cut
// short; callers drop the ring on ErrRingFault.
func CatchRingFault(fn func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if re, ok := r.(runtime.Error); ok {
				if _, addr := re.(interface{ Addr() uintptr }); addr {
					err = fmt.Errorf("%w: %v", ErrRingFault, re)
					return
				}
			}
			panic(r)
		}
	}()
	fn()
	return nil
}
