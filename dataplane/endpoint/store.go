package endpoint

// What a ReliableReceiver's deliveries go to: a Sink, which stores them
// and says when they are stored (the receiver acknowledges only that), and
// the mapping of its storage errors to ABORT reasons (docs/smh.md 2.3,
// docs/feedback.md "What a receiver acknowledges").

import (
	"errors"
	"io/fs"
	"syscall"

	"github.com/sparsecast/sparsecast/headers"
)

// Sink stores what a ReliableReceiver delivers. The receiver acknowledges
// a sequence number only once the sink has stored it: it calls Commit
// before every ACK, and a message's last packet (End) counts as stored
// once Deliver returns nil for it, so a sink that keeps files syncs and
// renames them into place in that call.
//
// An error from either stops the stream: the receiver delivers nothing
// more of it, acknowledges nothing more, and sends ABORT with the reason
// AbortReasonOf gives the error. The sink cleans up its own state for the
// stream before it returns the error. Both are called from Run's
// goroutine.
type Sink interface {
	// Deliver takes one packet's app data, in order; d.Data is only valid
	// during the call.
	Deliver(d Delivery) error
	// Commit stores (at least hands to the operating system) everything
	// delivered so far for the stream (source, session, epoch).
	Commit(source, session uint16, epoch uint32) error
}

// DeliverFunc is a Sink that keeps nothing: every delivery counts as
// stored once the function returns.
type DeliverFunc func(Delivery)

// Deliver calls f.
func (f DeliverFunc) Deliver(d Delivery) error {
	f(d)
	return nil
}

// Commit has nothing to store.
func (DeliverFunc) Commit(uint16, uint16, uint32) error { return nil }

// Storage errors a Sink reports that are not operating-system errors.
var (
	// ErrChecksum: what was stored does not match the manifest's size or
	// SHA-256 (AbortChecksum).
	ErrChecksum = errors.New("stored data does not match the manifest")
	// ErrBadManifest: the manifest was rejected (AbortBadManifest).
	ErrBadManifest = errors.New("bad manifest")
)

// AbortReasonOf maps a storage error to the reason an ABORT carries
// (docs/smh.md 2.3): the sentinels above, and the operating system's
// errnos for a full device, a read-only file system, a permission denied
// and an existing file; anything else is AbortIO.
func AbortReasonOf(err error) headers.AbortReason {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrChecksum):
		return headers.AbortChecksum
	case errors.Is(err, ErrBadManifest):
		return headers.AbortBadManifest
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return headers.AbortNoSpace
	case errors.Is(err, syscall.EROFS):
		return headers.AbortReadOnly
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return headers.AbortPermission
	case errors.Is(err, syscall.EEXIST), errors.Is(err, fs.ErrExist):
		return headers.AbortExists
	}
	return headers.AbortIO
}
