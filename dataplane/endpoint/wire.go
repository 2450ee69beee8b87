package endpoint

// The reliable sessions' DATA payload header, carried after the SMH:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Ver  | Mode  |   Reserved    |         Chain Count N         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                             Base                              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Receiver ID          |      Previous (high 16)       |  N chain
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  entries,
//	|      Previous (low 16)        |  next entry ... | app data ...   6 bytes
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                                  each
//
// Ver is 1. Mode 0 (fixed): every sequence number from Base on is addressed
// to every receiver of the stream, so a receiver's previous packet is seq-1
// and Base is where its subsequence starts; N is 0. Mode 1 (chain): the set
// changes per packet (MoE dispatch); for each receiver of the packet's
// original set, in ascending ID order, Previous is the sequence number of
// the last earlier packet addressed to it, or the packet's own sequence
// number if there was none (the receiver's subsequence starts here). Base
// is 0. A receiver finds its own entry by binary search; a gap in its chain
// is a loss (docs/feedback.md). The header is 8 bytes, plus 6 per receiver
// in chain mode (62 bytes for a top-9 token).
//
// The SMH F flag marks the last packet of a message; a message's data is
// the concatenation of its packets' app data in sequence order.

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/sparsecast/sparsecast/headers"
)

const (
	payloadVersion = 1
	// ModeFixed and ModeChain are the payload header's modes.
	ModeFixed = 0
	ModeChain = 1
	// PayloadHeaderLen is the payload header without chain entries.
	PayloadHeaderLen = 8
	// ChainEntryLen is the size of one chain entry.
	ChainEntryLen = 6
)

// putPayloadHeader writes the fixed part of the payload header.
func putPayloadHeader(b []byte, mode int, n int, base uint32) {
	b[0] = payloadVersion<<4 | byte(mode)
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	binary.BigEndian.PutUint32(b[4:], base)
}

func putChainEntry(b []byte, i int, id uint16, prev uint32) {
	e := b[PayloadHeaderLen+i*ChainEntryLen:]
	binary.BigEndian.PutUint16(e, id)
	binary.BigEndian.PutUint32(e[2:], prev)
}

// Payload errors, as receiver counters.
const (
	payloadOK = iota
	payloadShort
	payloadBadVersion
	payloadNotInChain
)

// parsePayload finds, in a reliable DATA payload, the previous sequence
// number addressed to receiver id, whether seq starts its subsequence, and
// the app data.
// In fixed mode it also returns the stream's Base.
func parsePayload(p []byte, id uint16, seq uint32) (prev uint32, head bool, data []byte, fixed bool, base uint32, status int) {
	if len(p) < PayloadHeaderLen {
		return 0, false, nil, false, 0, payloadShort
	}
	if p[0]>>4 != payloadVersion {
		return 0, false, nil, false, 0, payloadBadVersion
	}
	n := int(binary.BigEndian.Uint16(p[2:]))
	end := PayloadHeaderLen + n*ChainEntryLen
	if len(p) < end {
		return 0, false, nil, false, 0, payloadShort
	}
	switch p[0] & 0x0F {
	case ModeFixed:
		base = binary.BigEndian.Uint32(p[4:])
		if seq == base {
			return seq, true, p[end:], true, base, payloadOK
		}
		return seq - 1, false, p[end:], true, base, payloadOK
	case ModeChain:
		lo, hi := 0, n
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if binary.BigEndian.Uint16(p[PayloadHeaderLen+m*ChainEntryLen:]) < id {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if lo == n {
			return 0, false, nil, false, 0, payloadNotInChain
		}
		e := p[PayloadHeaderLen+lo*ChainEntryLen:]
		if binary.BigEndian.Uint16(e) != id {
			return 0, false, nil, false, 0, payloadNotInChain
		}
		prev = binary.BigEndian.Uint32(e[2:])
		return prev, prev == seq, p[end:], false, 0, payloadOK
	}
	return 0, false, nil, false, 0, payloadBadVersion
}

// randomEpoch draws a Transfer Epoch: random, nonzero (docs/smh.md 2.2).
func randomEpoch() (uint32, error) {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("transfer epoch: %w", err)
		}
		if e := binary.BigEndian.Uint32(b[:]); e != 0 {
			return e, nil
		}
	}
}

// seqLess is serial-number order (RFC 1982) on 32-bit sequence numbers.
func seqLess(a, b uint32) bool { return int32(a-b) < 0 }

// putFeedback writes a feedback SMH from a receiver about the stream
// (source, session, epoch), echoing the DATA's Transfer Epoch (0: none):
// Speaks For 1, Reporter ID and, for a NACK or an ABORT, the set, the
// reporter itself.
func putFeedback(b []byte, t headers.Type, source, session uint16, epoch uint32, me uint16, seq uint32, count uint16, hop uint8) int {
	var one [1]uint16
	ids := one[:0]
	if t == headers.TypeNACK || t == headers.TypeABORT {
		one[0] = me
		ids = one[:]
	}
	return headers.PutHeader(b, headers.Fields{
		Type: t, HopLimit: hop, SourceID: source, SessionID: session, Epoch: epoch,
		Sequence: seq, Count: count, SpeaksFor: 1, ReporterID: me,
	}, ids)
}
