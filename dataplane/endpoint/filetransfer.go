package endpoint

// File transfer and token dispatch over reliable sessions. Each message
// starts with a one-byte kind:
//
//	'M' manifest: JSON {"name", "size", "sha256"}, sent first;
//	'D' file data: the file's bytes, after its manifest;
//	'T' token: an MoE token (its bytes are opaque).
//
// FileSink is a Sink that writes each file into a directory (as NAME.part,
// synced and renamed once its size and SHA-256 check out) or only hashes
// it, and counts tokens.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Message kinds.
const (
	KindManifest = 'M'
	KindFile     = 'D'
	KindToken    = 'T'
)

// Manifest describes a file sent after it.
type Manifest struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// maxManifest bounds a manifest message.
const maxManifest = 4096

// SendFile sends the manifest and then size bytes of r (whose SHA-256 is
// sum) to the stream's set.
func SendFile(ctx context.Context, s *ReliableSender, name string, r io.Reader, size int64, sum [32]byte) error {
	m, err := json.Marshal(Manifest{Name: name, Size: size, SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		return err
	}
	if len(m)+1 > maxManifest {
		return fmt.Errorf("file name too long for a manifest")
	}
	if err := s.SendMessage(ctx, nil, append([]byte{KindManifest}, m...)); err != nil {
		return err
	}
	return s.SendMessageFrom(ctx, nil, io.MultiReader(bytes.NewReader([]byte{KindFile}), r), size+1)
}

// FileResult is one received file.
type FileResult struct {
	Source  uint16 `json:"source"`
	Session uint16 `json:"session"`
	Name    string `json:"name"`
	Path    string `json:"path,omitempty"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	// Reason is the failure's ABORT reason (headers.AbortReason's name).
	Reason string `json:"reason,omitempty"`
}

type fileStream struct {
	kind     byte
	manifest []byte
	man      *Manifest
	f        sinkFile
	w        *bufio.Writer
	h        hash.Hash
	n        int64
	source   uint16
	session  uint16
}

// sinkFile is the file a FileSink writes (an *os.File; tests inject
// storage errors through FileSink.create).
type sinkFile interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
}

// FileSink is a Sink that stores files and counts tokens. A file is
// written as NAME.part in Dir; once its size and SHA-256 match the
// manifest it is synced, renamed to NAME and the directory synced, and
// only then is its last packet stored (so acknowledged). Commit flushes
// what was written to the operating system. Any failure (the manifest,
// the file system, the checksum) removes NAME.part, records the file as
// failed and is returned to the receiver, which sends ABORT.
type FileSink struct {
	// Dir is where files go; empty: files are only hashed.
	Dir string
	// Overwrite lets a file replace one of the same name in Dir (recv
	// --overwrite); without it such a file fails (AbortExists).
	Overwrite bool
	// OnFile, if set, is called after each file (from the delivering
	// goroutine).
	OnFile func(FileResult)

	// create opens NAME.part (nil: os.Create).
	create func(name string) (sinkFile, error)

	mu      sync.Mutex
	streams map[uint64]*fileStream
	results []FileResult
	tokens  map[uint16]uint64
	bad     uint64
}

// Deliver is the Sink's Deliver.
func (fs *FileSink) Deliver(d Delivery) error {
	key := streamKey(d.Source, d.Session, d.Epoch)
	st := fs.streams[key]
	if st == nil {
		if fs.streams == nil {
			fs.streams = map[uint64]*fileStream{}
		}
		st = &fileStream{source: d.Source, session: d.Session}
		fs.streams[key] = st
	}
	data := d.Data
	if d.Start {
		st.kind = 0
		if len(data) > 0 {
			st.kind, data = data[0], data[1:]
		}
		switch st.kind {
		case KindManifest:
			st.manifest = st.manifest[:0]
		case KindFile:
			if err := fs.openFile(st); err != nil {
				return fs.fail(st, err)
			}
		case KindToken:
		default:
			fs.bad++
		}
	}
	switch st.kind {
	case KindManifest:
		if len(st.manifest)+len(data) > maxManifest {
			return fs.fail(st, fmt.Errorf("%w: longer than %d bytes", ErrBadManifest, maxManifest))
		}
		st.manifest = append(st.manifest, data...)
		if d.End {
			if err := fs.parseManifest(st); err != nil {
				return fs.fail(st, err)
			}
		}
	case KindFile:
		st.h.Write(data)
		st.n += int64(len(data))
		if st.w != nil {
			if _, err := st.w.Write(data); err != nil {
				return fs.fail(st, err)
			}
		}
		if d.End {
			return fs.finishFile(st)
		}
	case KindToken:
		if d.End {
			fs.mu.Lock()
			if fs.tokens == nil {
				fs.tokens = map[uint16]uint64{}
			}
			fs.tokens[d.Source]++
			fs.mu.Unlock()
		}
	}
	return nil
}

// Commit is the Sink's Commit: it hands the open file's buffered data to
// the operating system.
func (fs *FileSink) Commit(source, session uint16, epoch uint32) error {
	st := fs.streams[streamKey(source, session, epoch)]
	if st == nil || st.w == nil {
		return nil
	}
	if err := st.w.Flush(); err != nil {
		return fs.fail(st, err)
	}
	return nil
}

func (fs *FileSink) parseManifest(st *fileStream) error {
	var m Manifest
	st.man = nil
	if err := json.Unmarshal(st.manifest, &m); err != nil {
		return fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	base := filepath.Base(m.Name)
	if m.Name == "" || base != m.Name || base == "." || base == ".." || strings.ContainsRune(base, 0) || m.Size < 0 {
		return fmt.Errorf("%w: it names %q (size %d): want a plain file name", ErrBadManifest, m.Name, m.Size)
	}
	st.man = &m
	if fs.Dir != "" && !fs.Overwrite {
		// Tell the sender before it sends the data.
		if err := noFileAt(filepath.Join(fs.Dir, m.Name)); err != nil {
			return err
		}
	}
	return nil
}

// noFileAt is nil if nothing is at path, and an EEXIST error if something
// is.
func noFileAt(path string) error {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return &os.PathError{Op: "store", Path: path, Err: syscall.EEXIST}
	case errors.Is(err, os.ErrNotExist):
		return nil
	}
	return err
}

func (fs *FileSink) openFile(st *fileStream) error {
	st.h, st.n, st.f, st.w = sha256.New(), 0, nil, nil
	if st.man == nil {
		return fmt.Errorf("%w: file data without a manifest", ErrBadManifest)
	}
	if fs.Dir == "" {
		return nil
	}
	create := fs.create
	if create == nil {
		create = func(name string) (sinkFile, error) { return os.Create(name) }
	}
	f, err := create(filepath.Join(fs.Dir, st.man.Name+".part"))
	if err != nil {
		return err
	}
	st.f, st.w = f, bufio.NewWriterSize(f, 256<<10)
	return nil
}

// finishFile checks the file against its manifest, and stores it: flush,
// fsync, close, rename NAME.part to NAME, fsync the directory.
func (fs *FileSink) finishFile(st *fileStream) error {
	sum := hex.EncodeToString(st.h.Sum(nil))
	switch {
	case st.n != st.man.Size:
		return fs.fail(st, fmt.Errorf("%w: size %d, manifest says %d", ErrChecksum, st.n, st.man.Size))
	case sum != st.man.SHA256:
		return fs.fail(st, fmt.Errorf("%w: SHA-256 %s, manifest says %s", ErrChecksum, sum, st.man.SHA256))
	}
	res := FileResult{Source: st.source, Session: st.session, Name: st.man.Name, Size: st.n, SHA256: sum, OK: true}
	if st.f != nil {
		if err := st.w.Flush(); err != nil {
			return fs.fail(st, err)
		}
		if err := st.f.Sync(); err != nil {
			return fs.fail(st, err)
		}
		f := st.f
		st.f, st.w = nil, nil
		part := f.Name()
		if err := f.Close(); err != nil {
			os.Remove(part)
			return fs.fail(st, err)
		}
		res.Path = strings.TrimSuffix(part, ".part")
		if err := fs.rename(part, res.Path); err != nil {
			os.Remove(part)
			return fs.fail(st, err)
		}
		if err := syncDir(fs.Dir); err != nil {
			return fs.fail(st, err)
		}
	}
	fs.done(st, res)
	return nil
}

// rename moves part to path, replacing a file there only with Overwrite.
func (fs *FileSink) rename(part, path string) error {
	if fs.Overwrite {
		return os.Rename(part, path)
	}
	err := unix.Renameat2(unix.AT_FDCWD, part, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without RENAME_NOREPLACE: check, then rename.
		if err = noFileAt(path); err == nil {
			return os.Rename(part, path)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: part, New: path, Err: err}
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// fail records the stream's file as failed with err, removes its .part and
// returns err (the receiver aborts the stream).
func (fs *FileSink) fail(st *fileStream, err error) error {
	res := FileResult{Source: st.source, Session: st.session, Size: st.n, Error: err.Error(), Reason: AbortReasonOf(err).String()}
	if st.man != nil {
		res.Name = st.man.Name
	}
	if st.f != nil {
		st.f.Close()
		os.Remove(st.f.Name())
	}
	fs.done(st, res)
	return err
}

func (fs *FileSink) done(st *fileStream, res FileResult) {
	st.kind, st.man, st.h, st.f, st.w = 0, nil, nil, nil, nil
	fs.mu.Lock()
	fs.results = append(fs.results, res)
	fs.mu.Unlock()
	if fs.OnFile != nil {
		fs.OnFile(res)
	}
}

// Results returns the files received so far.
func (fs *FileSink) Results() []FileResult {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]FileResult(nil), fs.results...)
}

// Tokens returns the tokens received per source.
func (fs *FileSink) Tokens() map[uint16]uint64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	m := make(map[uint16]uint64, len(fs.tokens))
	for k, v := range fs.tokens {
		m[k] = v
	}
	return m
}

// BadMessages counts messages of an unknown kind.
func (fs *FileSink) BadMessages() uint64 { return fs.bad }
