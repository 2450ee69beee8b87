// Drop reasons: one enum for every packet the switch does not forward, counted
// per core and exported as sparsecast_switch_drops_total{reason=...}. The
// label set is bounded by this list (VPP's foreach_*_error pattern).
package dataplane

import "github.com/sparsecast/sparsecast/headers"

// DropReason says why a packet (or, for no_route and ingress_port, a part of
// its receiver set) was not forwarded.
type DropReason uint8

const (
	DropNotSMH DropReason = iota
	DropTruncated
	DropBadVersion
	DropBadType
	DropBadEncoding
	DropBadSet
	DropBadFeedback
	DropHopLimit
	DropNoRoute
	DropIngressPort
	DropNoGroup
	DropQueueFull
	DropNoBuffer
	DropTooBig
	DropFaultInjected
	DropTxError
	DropFeedbackSpoofed
	DropBadEpoch
	DropFeedbackStale
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	DropNotSMH:          "not_smh",
	DropTruncated:       "truncated",
	DropBadVersion:      "bad_version",
	DropBadType:         "bad_type",
	DropBadEncoding:     "bad_encoding",
	DropBadSet:          "bad_set",
	DropBadFeedback:     "bad_feedback",
	DropHopLimit:        "hop_limit",
	DropNoRoute:         "no_route",
	DropIngressPort:     "ingress_port",
	DropNoGroup:         "no_group",
	DropQueueFull:       "queue_full",
	DropNoBuffer:        "no_buffer",
	DropTooBig:          "too_big",
	DropFaultInjected:   "fault_injected",
	DropTxError:         "tx_error",
	DropFeedbackSpoofed: "feedback_spoofed",
	DropBadEpoch:        "bad_epoch",
	DropFeedbackStale:   "feedback_stale",
}

func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// dropForError maps an SMH decode error to its drop reason.
func dropForError(err error) DropReason {
	switch err {
	case headers.ErrTruncated:
		return DropTruncated
	case headers.ErrBadVersion:
		return DropBadVersion
	case headers.ErrBadType:
		return DropBadType
	case headers.ErrBadEncoding:
		return DropBadEncoding
	case headers.ErrBadSet:
		return DropBadSet
	case headers.ErrBadFeedback:
		return DropBadFeedback
	case headers.ErrBadEpoch:
		return DropBadEpoch
	}
	return DropNotSMH
}
