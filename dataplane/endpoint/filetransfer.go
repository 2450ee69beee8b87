package endpoint

// File transfer and token dispatch over reliable sessions. Each message
// starts with a one-byte kind:
//
//	'M' manifest: JSON {"name", "size", "sha256"}, sent first;
//	'D' file data: the file's bytes, after its manifest;
//	'T' token: an MoE token (its bytes are opaque).
//
// FileSink is a Deliver function that writes each file into a directory
// (as NAME.part, renamed once its size and SHA-256 check out) or only
// hashes it, and counts tokens.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
}

type fileStream struct {
	kind     byte
	manifest []byte
	man      *Manifest
	f        *os.File
	w        *bufio.Writer
	h        hash.Hash
	n        int64
	err      error
	source   uint16
	session  uint16
}

// FileSink consumes deliveries: files and tokens.
type FileSink struct {
	// Dir is where files go; empty: files are only hashed.
	Dir string
	// OnFile, if set, is called after each file (from the delivering
	// goroutine).
	OnFile func(FileResult)

	mu      sync.Mutex
	streams map[uint32]*fileStream
	results []FileResult
	tokens  map[uint16]uint64
	bad     uint64
}

// Deliver is a ReliableReceiver's Deliver function.
func (fs *FileSink) Deliver(d Delivery) {
	key := uint32(d.Source)<<16 | uint32(d.Session)
	st := fs.streams[key]
	if st == nil {
		if fs.streams == nil {
			fs.streams = map[uint32]*fileStream{}
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
			fs.openFile(st)
		case KindToken:
		default:
			fs.bad++
		}
	}
	switch st.kind {
	case KindManifest:
		if len(st.manifest)+len(data) <= maxManifest {
			st.manifest = append(st.manifest, data...)
		} else {
			st.err = fmt.Errorf("manifest longer than %d bytes", maxManifest)
		}
		if d.End {
			fs.parseManifest(st)
		}
	case KindFile:
		if st.h != nil {
			st.h.Write(data)
			st.n += int64(len(data))
			if st.w != nil && st.err == nil {
				if _, err := st.w.Write(data); err != nil {
					st.err = err
				}
			}
		}
		if d.End {
			fs.finishFile(st)
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
}

func (fs *FileSink) parseManifest(st *fileStream) {
	var m Manifest
	st.man, st.err = nil, nil
	if err := json.Unmarshal(st.manifest, &m); err != nil {
		st.err = fmt.Errorf("bad manifest: %w", err)
		return
	}
	base := filepath.Base(m.Name)
	if m.Name == "" || base != m.Name || base == "." || base == ".." || strings.ContainsRune(base, 0) || m.Size < 0 {
		st.err = fmt.Errorf("manifest names %q (size %d): want a plain file name", m.Name, m.Size)
		return
	}
	st.man = &m
}

func (fs *FileSink) openFile(st *fileStream) {
	st.h, st.n, st.f, st.w = sha256.New(), 0, nil, nil
	if st.man == nil {
		if st.err == nil {
			st.err = fmt.Errorf("file data without a manifest")
		}
		return
	}
	if fs.Dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(fs.Dir, st.man.Name+".part"))
	if err != nil {
		st.err = err
		return
	}
	st.f, st.w = f, bufio.NewWriterSize(f, 1<<20)
}

func (fs *FileSink) finishFile(st *fileStream) {
	res := FileResult{Source: st.source, Session: st.session, Size: st.n}
	if st.h != nil {
		res.SHA256 = hex.EncodeToString(st.h.Sum(nil))
	}
	if st.man != nil {
		res.Name = st.man.Name
	}
	err := st.err
	if st.w != nil {
		if e := st.w.Flush(); err == nil {
			err = e
		}
		if e := st.f.Close(); err == nil {
			err = e
		}
	}
	if err == nil && st.man != nil {
		switch {
		case st.n != st.man.Size:
			err = fmt.Errorf("size %d, manifest says %d", st.n, st.man.Size)
		case res.SHA256 != st.man.SHA256:
			err = fmt.Errorf("SHA-256 %s, manifest says %s", res.SHA256, st.man.SHA256)
		}
	}
	if st.f != nil {
		part := st.f.Name()
		if err == nil {
			res.Path = strings.TrimSuffix(part, ".part")
			err = os.Rename(part, res.Path)
		} else {
			os.Remove(part)
		}
	}
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
	}
	st.man, st.h, st.f, st.w, st.err = nil, nil, nil, nil, nil
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
