package dataplane

import (
	"slices"
	"testing"

	"github.com/sparsecast/sparsecast/headers"
)

// TestABORTGoesUpstream: an aggregating switch forwards a receiver's ABORT
// towards the source as it is (it used to index its feedback counters by
// type out of range), drops one from a port the stream never went out of
// as spoofed, and forwards one for a stream it has no state for.
func TestABORTGoesUpstream(t *testing.T) {
	f := newAggFabric(t, true)
	f.send(t, 0, data(t, 0, 0, 1, 2))
	drain(f)
	f.send(t, 2, fb(t, headers.TypeABORT, 0, 2, uint16(headers.AbortReadOnly), 2))
	up := upstreamFrames(t, f)
	if len(up) != 1 {
		t.Fatalf("%d frames upstream, want the ABORT", len(up))
	}
	h := up[0]
	if h.Type() != headers.TypeABORT || headers.AbortReason(h.FeedbackCount()) != headers.AbortReadOnly ||
		h.ReporterID() != 2 || !slices.Equal(h.AppendReceivers(nil), []uint16{2}) {
		t.Fatalf("upstream %+v set %v", h.Fields(), h.AppendReceivers(nil))
	}
	if in, fwd := f.w.counters.Feedback[headers.TypeABORT][FbIn].Load(), f.w.counters.Feedback[headers.TypeABORT][FbUp].Load(); in != 1 || fwd != 1 {
		t.Errorf("ABORT counters in %d up %d, want 1 and 1", in, fwd)
	}
	// Port 3 never got the stream.
	f.send(t, 3, fb(t, headers.TypeABORT, 0, 3, uint16(headers.AbortNoSpace), 3))
	if f.w.counters.Drops[DropFeedbackSpoofed].Load() != 1 || len(upstreamFrames(t, f)) != 0 {
		t.Fatal("spoofed ABORT not dropped")
	}
	// A stream the switch has no state for (session 2).
	fr := buildFrame(t, frameOpts{fields: headers.Fields{Type: headers.TypeABORT, HopLimit: 4, SourceID: 0, SessionID: 2,
		Count: uint16(headers.AbortExists), SpeaksFor: 1, ReporterID: 1}, ids: []uint16{1}})
	f.send(t, 1, fr)
	if up := upstreamFrames(t, f); len(up) != 1 || f.w.counters.Feedback[headers.TypeABORT][FbUnknown].Load() != 1 {
		t.Fatalf("ABORT of an unknown stream: %d upstream", len(up))
	}
}
