package lab

// Session IDs for the scenarios. A switch keeps per-stream state keyed on
// (Source ID, Session ID), so two transfers from one host with the same
// session, one after the other or at the same time, could be taken for one
// stream. Every scenario run therefore picks fresh random sessions, and
// reserves them on the fabric while it runs: a file per session under the
// fabric's directory, created exclusively and holding the run's PID, so a
// concurrent run on the same testbed picks others. A reservation whose
// process is gone (a crashed run) is taken over.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sessionReservation holds sessions reserved on a fabric until Release.
type sessionReservation struct {
	IDs   []uint16
	files []string
}

// reserveSessions picks n distinct random sessions (1-65535) not reserved
// by another live run on the fabric whose directory is dir. fixed, if
// nonzero, is the first session (the user's --session): it is reserved
// when free and used anyway when not (two runs the user pinned to one
// session are the user's choice), the others stay random.
func reserveSessions(dir string, n int, fixed uint16) (*sessionReservation, error) {
	sdir := filepath.Join(dir, "sessions")
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	r := &sessionReservation{}
	taken := map[uint16]bool{}
	if fixed != 0 {
		taken[fixed] = true
		r.IDs = append(r.IDs, fixed)
		if f, ok := claimSession(sdir, fixed); ok {
			r.files = append(r.files, f)
		}
	}
	for tries := 0; len(r.IDs) < n; tries++ {
		if tries > 1000 {
			r.Release()
			return nil, errors.New("sessions: no free session after 1000 tries")
		}
		id := uint16(1 + rand.IntN(0xFFFF))
		if taken[id] {
			continue
		}
		taken[id] = true
		if f, ok := claimSession(sdir, id); ok {
			r.IDs = append(r.IDs, id)
			r.files = append(r.files, f)
		}
	}
	return r, nil
}

// claimSession creates dir/ID holding this process's PID, taking over a
// file whose process has exited. It reports false if a live process holds
// the session (or the file cannot be made: then nothing is reserved and
// the caller tries another).
func claimSession(dir string, id uint16) (string, bool) {
	path := filepath.Join(dir, strconv.Itoa(int(id)))
	for range 2 {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, werr := fmt.Fprintf(f, "%d\n", os.Getpid())
			if cerr := f.Close(); werr != nil || cerr != nil {
				os.Remove(path)
				return "", false
			}
			return path, true
		}
		if !errors.Is(err, os.ErrExist) {
			return "", false
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", false
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && pid > 0 && (syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM)) {
			return "", false
		}
		// Stale: its run is gone.
		os.Remove(path)
	}
	return "", false
}

// Release frees the reserved sessions.
func (r *sessionReservation) Release() {
	if r == nil {
		return
	}
	for _, f := range r.files {
		os.Remove(f)
	}
	r.files = nil
}
