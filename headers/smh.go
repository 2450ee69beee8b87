// Package headers holds sparsecast's wire formats: the Sparse Multicast Header
// (SMH, specified in docs/smh.md) and, later, the control ring records. The
// fast path reads and writes them through typed []byte views with named
// offsets (the model is gVisor's header.UDP); tools use the gopacket layer in
// layer.go. Both codecs follow one spec and are fuzzed against each other.
package headers

import (
	"encoding/binary"
	"errors"
	"math/bits"
)

// SMH fixed part, 14 bytes; feedback types add a 4-byte word.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Ver  |  Type |A|R|C|F|0|0|0|0|   Hop Limit   |  Enc  |  Rsv  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Set Count           |           Source ID           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Session ID           |       Sequence (high)         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|       Sequence (low)          | Count (feedback only)         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Speaks For (feedback only)   | Reporter ID (feedback only)   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| receiver set ...
//
// Source ID and Session ID always name the stream (the DATA source and its
// session), so feedback is routed upstream by Source ID; who reports a piece
// of feedback is in Reporter ID.
const (
	offVerType   = 0
	offFlags     = 1
	offHopLimit  = 2
	offEnc       = 3
	offSetCount  = 4
	offSourceID  = 6
	offSessionID = 8
	offSequence  = 10
	offFbCount   = 14
	offSpeaksFor = 16
	offReporter  = 18

	// FixedLen is the length of the fixed part of every SMH.
	FixedLen = 14
	// FeedbackLen is the length of the fixed part plus the 6-byte feedback
	// word (Count, Speaks For, Reporter ID).
	FeedbackLen = 20

	// Version is the only SMH version this implementation speaks.
	Version = 1

	// DefaultUDPPort is SMH's default UDP destination port (docs/smh.md 1).
	DefaultUDPPort = 9471

	// MaxID is the largest receiver or source ID in version 1.
	MaxID = 0xFFFF
	// MaxBlock is the largest block index for 16-bit IDs.
	MaxBlock = MaxID >> 6

	// ListEntryLen, BlockEntryLen and GroupEntryLen are the set entry sizes.
	ListEntryLen  = 2
	BlockEntryLen = 10
	GroupEntryLen = 4
)

// Type is the SMH packet type.
type Type uint8

const (
	TypeData Type = 0
	TypeACK  Type = 1
	TypeNACK Type = 2
	TypeCNP  Type = 3
)

func (t Type) String() string {
	switch t {
	case TypeData:
		return "DATA"
	case TypeACK:
		return "ACK"
	case TypeNACK:
		return "NACK"
	case TypeCNP:
		return "CNP"
	}
	return "UNKNOWN"
}

// IsFeedback tells whether packets of this type carry the feedback word.
func (t Type) IsFeedback() bool { return t == TypeACK || t == TypeNACK || t == TypeCNP }

// Flags are SMH's flag bits (byte 1).
type Flags uint8

const (
	FlagAggregated Flags = 0x80
	FlagRetransmit Flags = 0x40
	FlagCongestion Flags = 0x20
	FlagFinal      Flags = 0x10
)

// Encoding is the receiver-set encoding (Enc).
type Encoding uint8

const (
	EncList   Encoding = 0
	EncBlocks Encoding = 1
	EncGroup  Encoding = 2
)

func (e Encoding) String() string {
	switch e {
	case EncList:
		return "list"
	case EncBlocks:
		return "blocks"
	case EncGroup:
		return "group"
	}
	return "reserved"
}

// EntryLen is the size of one set entry of encoding e, or 0 for a reserved one.
func (e Encoding) EntryLen() int {
	switch e {
	case EncList:
		return ListEntryLen
	case EncBlocks:
		return BlockEntryLen
	case EncGroup:
		return GroupEntryLen
	}
	return 0
}

// Sentinel errors: decoders never allocate an error per packet. Each maps to
// one drop reason in the dataplane.
var (
	ErrTruncated   = errors.New("smh: truncated")
	ErrBadVersion  = errors.New("smh: unsupported version")
	ErrBadType     = errors.New("smh: reserved packet type")
	ErrBadEncoding = errors.New("smh: reserved set encoding")
	ErrBadSet      = errors.New("smh: receiver set not strictly ascending, empty block, or out of range")
	ErrBadFeedback = errors.New("smh: invalid feedback word")
)

// SMH is a zero-copy view of an SMH header at the start of the slice (the
// payload may follow). Accessors do not check bounds beyond what Validate
// established; call Validate first on untrusted bytes.
type SMH []byte

func (h SMH) Version() uint8        { return h[offVerType] >> 4 }
func (h SMH) Type() Type            { return Type(h[offVerType] & 0x0F) }
func (h SMH) Flags() Flags          { return Flags(h[offFlags]) }
func (h SMH) HopLimit() uint8       { return h[offHopLimit] }
func (h SMH) Encoding() Encoding    { return Encoding(h[offEnc] >> 4) }
func (h SMH) SetCount() uint16      { return binary.BigEndian.Uint16(h[offSetCount:]) }
func (h SMH) SourceID() uint16      { return binary.BigEndian.Uint16(h[offSourceID:]) }
func (h SMH) SessionID() uint16     { return binary.BigEndian.Uint16(h[offSessionID:]) }
func (h SMH) Sequence() uint32      { return binary.BigEndian.Uint32(h[offSequence:]) }
func (h SMH) FeedbackCount() uint16 { return binary.BigEndian.Uint16(h[offFbCount:]) }
func (h SMH) SpeaksFor() uint16     { return binary.BigEndian.Uint16(h[offSpeaksFor:]) }
func (h SMH) ReporterID() uint16    { return binary.BigEndian.Uint16(h[offReporter:]) }

func (h SMH) SetVersionType(v uint8, t Type) { h[offVerType] = v<<4 | uint8(t)&0x0F }
func (h SMH) SetFlags(f Flags)               { h[offFlags] = uint8(f) }
func (h SMH) SetHopLimit(v uint8)            { h[offHopLimit] = v }
func (h SMH) SetEncoding(e Encoding)         { h[offEnc] = uint8(e) << 4 }
func (h SMH) SetSetCount(n uint16)           { binary.BigEndian.PutUint16(h[offSetCount:], n) }
func (h SMH) SetSourceID(v uint16)           { binary.BigEndian.PutUint16(h[offSourceID:], v) }
func (h SMH) SetSessionID(v uint16)          { binary.BigEndian.PutUint16(h[offSessionID:], v) }
func (h SMH) SetSequence(v uint32)           { binary.BigEndian.PutUint32(h[offSequence:], v) }
func (h SMH) SetFeedbackCount(v uint16)      { binary.BigEndian.PutUint16(h[offFbCount:], v) }
func (h SMH) SetSpeaksFor(v uint16)          { binary.BigEndian.PutUint16(h[offSpeaksFor:], v) }
func (h SMH) SetReporterID(v uint16)         { binary.BigEndian.PutUint16(h[offReporter:], v) }

// SetOffset is where the receiver set starts: after the fixed part, and after
// the feedback word for feedback types.
func (h SMH) SetOffset() int {
	if h.Type().IsFeedback() {
		return FeedbackLen
	}
	return FixedLen
}

// HeaderLen is the whole header's length: fixed part, feedback word and set.
func (h SMH) HeaderLen() int {
	return h.SetOffset() + int(h.SetCount())*h.Encoding().EntryLen()
}

// Set returns the raw bytes of the receiver set.
func (h SMH) Set() []byte { return h[h.SetOffset():h.HeaderLen()] }

// Payload returns the bytes after the header.
func (h SMH) Payload() []byte { return h[h.HeaderLen():] }

// ListID returns the i-th ID of an ID-list set.
func (h SMH) ListID(i int) uint16 {
	return binary.BigEndian.Uint16(h[h.SetOffset()+i*ListEntryLen:])
}

// Block returns the i-th (block index, bitmap) of a block-bitmap set.
func (h SMH) Block(i int) (uint16, uint64) {
	o := h.SetOffset() + i*BlockEntryLen
	return binary.BigEndian.Uint16(h[o:]), binary.BigEndian.Uint64(h[o+2:])
}

// GroupID returns the group of a group-encoded set.
func (h SMH) GroupID() uint32 { return binary.BigEndian.Uint32(h[h.SetOffset():]) }

// Validate checks everything docs/smh.md sections 2 and 3 require, except the
// hop limit (a forwarding rule, not a format rule). It never allocates.
func (h SMH) Validate() error {
	if len(h) < FixedLen {
		return ErrTruncated
	}
	if h.Version() != Version {
		return ErrBadVersion
	}
	t := h.Type()
	if t > TypeCNP {
		return ErrBadType
	}
	enc := h.Encoding()
	el := enc.EntryLen()
	if el == 0 {
		return ErrBadEncoding
	}
	if t.IsFeedback() && len(h) < FeedbackLen {
		return ErrTruncated
	}
	n := int(h.SetCount())
	if len(h) < h.SetOffset()+n*el {
		return ErrTruncated
	}
	set := h[h.SetOffset():]
	switch enc {
	case EncList:
		prev := -1
		for i := 0; i < n; i++ {
			id := int(binary.BigEndian.Uint16(set[i*ListEntryLen:]))
			if id <= prev {
				return ErrBadSet
			}
			prev = id
		}
	case EncBlocks:
		prev := -1
		for i := 0; i < n; i++ {
			e := set[i*BlockEntryLen:]
			b, m := binary.BigEndian.Uint16(e), binary.BigEndian.Uint64(e[2:])
			if int(b) <= prev || b > MaxBlock || m == 0 {
				return ErrBadSet
			}
			prev = int(b)
		}
	case EncGroup:
		if n != 1 || t != TypeData {
			return ErrBadSet
		}
	}
	if t == TypeData {
		if n == 0 {
			return ErrBadSet
		}
		if h.Flags()&FlagAggregated != 0 {
			return ErrBadFeedback
		}
		return nil
	}
	if h.SpeaksFor() == 0 {
		return ErrBadFeedback
	}
	if (t == TypeNACK || t == TypeCNP) && h.FeedbackCount() == 0 {
		return ErrBadFeedback
	}
	return nil
}

// ForEachReceiver calls fn for every receiver ID of a validated list or block
// set, in ascending order. It does not allocate (fn should not either).
func (h SMH) ForEachReceiver(fn func(id uint16)) {
	n := int(h.SetCount())
	switch h.Encoding() {
	case EncList:
		for i := 0; i < n; i++ {
			fn(h.ListID(i))
		}
	case EncBlocks:
		for i := 0; i < n; i++ {
			b, m := h.Block(i)
			forEachBit(b, m, fn)
		}
	}
}

func forEachBit(block uint16, m uint64, fn func(id uint16)) {
	base := block << 6
	for m != 0 {
		i := bits.TrailingZeros64(m)
		fn(base + uint16(i))
		m &= m - 1
	}
}
