// The control process's durable state: what the API changes (the groups)
// kept in an embedded bbolt file, so that a restarted control pushes every
// group in its first resync instead of an empty table. In: group changes
// from the Server, each written and fsynced before the API answers. Out: the
// stored groups, read once when the Server is built.
//
// The file is <state-dir>/control.db, mode 0600:
//
//	bucket "meta"    "format" -> "sparsecast-control-state 1"
//	bucket "groups"  group ID (4 bytes, big endian) ->
//	                 members (2 bytes each, big endian, strictly ascending)
//
// bbolt commits a transaction by writing its pages, fsyncing, then writing
// one of two checksummed meta pages and fsyncing again: a process killed or
// a machine stopped mid-write leaves the last committed transaction. A file
// that is not that (garbage, truncated, both meta pages torn, a record that
// does not decode) is an error that names the file; it is never read as an
// empty store.
package control

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// DefaultStateDir is where `control run` keeps its state by default.
const DefaultStateDir = "/var/lib/sparsecast/control"

// StateFileName is the store's file in its state directory.
const StateFileName = "control.db"

// stateFormat marks a sparsecast state file and its layout version.
const stateFormat = "sparsecast-control-state 1"

var (
	bucketMeta   = []byte("meta")
	bucketGroups = []byte("groups")
	keyFormat    = []byte("format")
)

// ErrStateLocked says another process has the state file open.
var ErrStateLocked = errors.New("another control process is using this state directory")

// StateStore keeps what the API changes. Each write is durable when it
// returns; the Server writes before it applies and pushes a change, so the
// switches never hold a group the store has not got.
type StateStore interface {
	// LoadGroups returns every stored group.
	LoadGroups() (map[uint32][]uint16, error)
	// PutGroup stores group id with members (strictly ascending).
	PutGroup(id uint32, members []uint16) error
	// DeleteGroup removes group id (no error if it is not stored).
	DeleteGroup(id uint32) error
	// Describe says where the state is, for status and logs.
	Describe() string
	Close() error
}

// BoltStore is a StateStore in a bbolt file.
type BoltStore struct {
	db   *bolt.DB
	path string
}

// OpenBoltStore opens (creating if needed) the state file in dir, waiting
// up to lockWait for another process's lock on it. The whole file is read
// and checked before it returns.
func OpenBoltStore(dir string, lockWait time.Duration) (*BoltStore, error) {
	if dir == "" {
		return nil, errors.New("state directory: empty path")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("state directory %s: not a directory", dir)
	}
	path := filepath.Join(dir, StateFileName)
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("state file %s: not a regular file", path)
	}
	var db *bolt.DB
	err := guardCorrupt(path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait})
		if errors.Is(err, bolterrors.ErrTimeout) {
			return fmt.Errorf("state file %s: %w (waited %v for its lock)", path, ErrStateLocked, lockWait)
		}
		if err != nil {
			return corrupt(path, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s := &BoltStore{db: db, path: path}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// corrupt wraps an error reading the file.
func corrupt(path string, err error) error {
	return fmt.Errorf("state file %s is unreadable or corrupt: %w (control will not start on it: "+
		"restore it from a backup, or move it away to start with no groups)", path, err)
}

// guardCorrupt runs f, turning a panic or a memory fault inside bbolt (it
// panics on some corrupt pages, and a page past the end of a truncated file
// faults) into an error naming the file.
func guardCorrupt(path string, f func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = corrupt(path, fmt.Errorf("%v", r))
		}
	}()
	return f()
}

// init creates the buckets of a new file, or checks an existing one: its
// format mark, its size against its page count, bbolt's own consistency
// check, and that every group record decodes.
func (s *BoltStore) init() error {
	fresh := false
	err := guardCorrupt(s.path, func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				if tx.Bucket(bucketGroups) != nil || firstKey(tx) != nil {
					return corrupt(s.path, errors.New("a bbolt file, but not a sparsecast state file (no meta bucket)"))
				}
				fresh = true
				m, err := tx.CreateBucket(bucketMeta)
				if err != nil {
					return err
				}
				if err := m.Put(keyFormat, []byte(stateFormat)); err != nil {
					return err
				}
				_, err = tx.CreateBucket(bucketGroups)
				return err
			}
			if f := meta.Get(keyFormat); string(f) != stateFormat {
				return corrupt(s.path, fmt.Errorf("format %q, want %q", f, stateFormat))
			}
			if tx.Bucket(bucketGroups) == nil {
				return corrupt(s.path, errors.New("no groups bucket"))
			}
			return nil
		})
	})
	if err != nil || fresh {
		return err
	}
	return guardCorrupt(s.path, func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			fi, err := os.Stat(s.path)
			if err != nil {
				return err
			}
			if fi.Size() < tx.Size() {
				return corrupt(s.path, fmt.Errorf("truncated: %d bytes, its pages need %d", fi.Size(), tx.Size()))
			}
			if _, err := readGroups(tx, s.path); err != nil {
				return err
			}
			// Check reads the pages on a goroutine of its own, until its
			// channel is drained: drain it before the transaction ends.
			var first error
			for err := range tx.Check() {
				if first == nil {
					first = corrupt(s.path, err)
				}
			}
			return first
		})
	})
}

func groupKey(id uint32) []byte { return binary.BigEndian.AppendUint32(nil, id) }

func encodeMembers(m []uint16) []byte {
	b := make([]byte, 0, 2*len(m))
	for _, x := range m {
		b = binary.BigEndian.AppendUint16(b, x)
	}
	return b
}

// decodeMembers decodes a group's members record.
func decodeMembers(v []byte) ([]uint16, error) {
	if len(v)%2 != 0 {
		return nil, fmt.Errorf("members record of %d bytes, want an even count", len(v))
	}
	m := make([]uint16, len(v)/2)
	for i := range m {
		m[i] = binary.BigEndian.Uint16(v[2*i:])
		if i > 0 && m[i] <= m[i-1] {
			return nil, errors.New("members not strictly ascending")
		}
	}
	return m, nil
}

func readGroups(tx *bolt.Tx, path string) (map[uint32][]uint16, error) {
	b := tx.Bucket(bucketGroups)
	if b == nil {
		return nil, corrupt(path, errors.New("no groups bucket"))
	}
	out := map[uint32][]uint16{}
	err := b.ForEach(func(k, v []byte) error {
		if len(k) != 4 {
			return corrupt(path, fmt.Errorf("group key of %d bytes, want 4", len(k)))
		}
		id := binary.BigEndian.Uint32(k)
		m, err := decodeMembers(v)
		if err != nil {
			return corrupt(path, fmt.Errorf("group %d: %w", id, err))
		}
		out[id] = m
		return nil
	})
	return out, err
}

// LoadGroups returns every stored group.
func (s *BoltStore) LoadGroups() (map[uint32][]uint16, error) {
	var out map[uint32][]uint16
	err := guardCorrupt(s.path, func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			var err error
			out, err = readGroups(tx, s.path)
			return err
		})
	})
	return out, err
}

// PutGroup stores a group; it is on disk when PutGroup returns.
func (s *BoltStore) PutGroup(id uint32, members []uint16) error {
	return s.update(func(b *bolt.Bucket) error { return b.Put(groupKey(id), encodeMembers(members)) })
}

// DeleteGroup removes a group; the removal is on disk when it returns.
func (s *BoltStore) DeleteGroup(id uint32) error {
	return s.update(func(b *bolt.Bucket) error { return b.Delete(groupKey(id)) })
}

func (s *BoltStore) update(f func(*bolt.Bucket) error) error {
	err := s.db.Update(func(tx *bolt.Tx) error { return f(tx.Bucket(bucketGroups)) })
	if err != nil {
		return fmt.Errorf("state file %s: %w", s.path, err)
	}
	return nil
}

// Describe is the state file's path.
func (s *BoltStore) Describe() string { return s.path }

// Close releases the file and its lock.
func (s *BoltStore) Close() error { return s.db.Close() }

func firstKey(tx *bolt.Tx) []byte {
	k, _ := tx.Cursor().First()
	return k
}
