// Package headers holds sparsecast's wire formats: the Sparse Multicast Header
// (SMH, specified in docs/smh.md) and the control ring records (ring.go), the
// one format control/ and dataplane/ share. The
// fast path reads and writes them through typed []byte views with named
// offsets (the model is gVisor's header.UDP); tools use the gopacket layer in
// layer.go. Both codecs follow one spec and are fuzzed against each other.
package headers

import (
	"encoding/binary"
	"errors"
	"math/bits"
)

// SMH fixed part, 14 bytes; with E a 4-byte Transfer Epoch follows it;
// feedback types then add a 6-byte word.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Ver  |  Type |A|R|C|F|E|0|0|0|   Hop Limit   |  Enc  |  Rsv  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Set Count           |           Source ID           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Session ID           |       Sequence (high)         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|       Sequence (low)          |  Transfer Epoch (E only) ...  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  ... Transfer Epoch (low)     | Count (feedback only)         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Speaks For (feedback only)   | Reporter ID (feedback only)   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| receiver set ...
//
// (The diagram shows E set; without E the feedback word starts at offset 14.)
// Source ID, Session ID and the epoch always name the stream (the DATA
// source, its session and the transfer), so feedback is routed upstream by
// Source ID; who reports a piece of feedback is in Reporter ID.
const (
	offVerType   = 0
	offFlags     = 1
	offHopLimit  = 2
	offEnc       = 3
	offSetCount  = 4
	offSourceID  = 6
	offSessionID = 8
	offSequence  = 10
	offEpoch     = 14
	// Feedback word offsets, relative to the end of the fixed part
	// (FixedPartLen: 14, or 18 with E).
	relFbCount   = 0
	relSpeaksFor = 2
	relReporter  = 4

	// FixedLen is the length of the fixed part of every SMH without E.
	FixedLen = 14
	// EpochLen is the length of the Transfer Epoch that E adds.
	EpochLen = 4
	// FeedbackWordLen is the feedback word (Count, Speaks For, Reporter ID).
	FeedbackWordLen = 6
	// FeedbackLen is the length of the fixed part plus the 6-byte feedback
	// word, without E.
	FeedbackLen = FixedLen + FeedbackWordLen

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
	// TypeABORT: the receivers named cannot store the stream (its Count is
	// an AbortReason).
	TypeABORT Type = 4
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
	case TypeABORT:
		return "ABORT"
	}
	return "UNKNOWN"
}

// IsFeedback tells whether packets of this type carry the feedback word.
func (t Type) IsFeedback() bool { return t >= TypeACK && t <= TypeABORT }

// AbortReason is an ABORT's Count: why its receivers cannot store the
// stream (docs/smh.md 2.2).
type AbortReason uint16

const (
	AbortIO          AbortReason = 1 // any other storage error
	AbortNoSpace     AbortReason = 2
	AbortReadOnly    AbortReason = 3
	AbortPermission  AbortReason = 4
	AbortExists      AbortReason = 5 // the file exists and overwriting was not allowed
	AbortChecksum    AbortReason = 6 // size or SHA-256 differ from the manifest
	AbortBadManifest AbortReason = 7
)

// String is the reason's name, as counters and JSON spell it.
func (r AbortReason) String() string {
	switch r {
	case AbortIO:
		return "io"
	case AbortNoSpace:
		return "no_space"
	case AbortReadOnly:
		return "read_only"
	case AbortPermission:
		return "permission"
	case AbortExists:
		return "exists"
	case AbortChecksum:
		return "checksum"
	case AbortBadManifest:
		return "bad_manifest"
	}
	return "unknown"
}

// Message says the reason in words, for a sender's summary.
func (r AbortReason) Message() string {
	switch r {
	case AbortIO:
		return "storage error at the receiver"
	case AbortNoSpace:
		return "no space left on the receiver's device"
	case AbortReadOnly:
		return "the receiver's output directory is on a read-only file system"
	case AbortPermission:
		return "the receiver may not write its output directory (permission denied)"
	case AbortExists:
		return "the file exists at the receiver (recv --overwrite replaces it)"
	case AbortChecksum:
		return "the data the receiver stored does not match the manifest's size or SHA-256"
	case AbortBadManifest:
		return "the receiver rejected the file's manifest"
	}
	return "the receiver gave up (unknown reason)"
}

// Flags are SMH's flag bits (byte 1).
type Flags uint8

const (
	FlagAggregated Flags = 0x80
	FlagRetransmit Flags = 0x40
	FlagCongestion Flags = 0x20
	FlagFinal      Flags = 0x10
	// FlagEpoch: a 32-bit Transfer Epoch follows the fixed part.
	FlagEpoch Flags = 0x08
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
	ErrBadEpoch    = errors.New("smh: E flag with a zero transfer epoch")
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
func (h SMH) FeedbackCount() uint16 { return binary.BigEndian.Uint16(h[h.FixedPartLen()+relFbCount:]) }
func (h SMH) SpeaksFor() uint16     { return binary.BigEndian.Uint16(h[h.FixedPartLen()+relSpeaksFor:]) }
func (h SMH) ReporterID() uint16    { return binary.BigEndian.Uint16(h[h.FixedPartLen()+relReporter:]) }

// HasEpoch tells whether E is set (a Transfer Epoch follows the fixed part).
func (h SMH) HasEpoch() bool { return h[offFlags]&uint8(FlagEpoch) != 0 }

// Epoch is the Transfer Epoch, or 0 when E is clear (a sender without
// epochs: docs/smh.md 2.2).
func (h SMH) Epoch() uint32 {
	if !h.HasEpoch() {
		return 0
	}
	return binary.BigEndian.Uint32(h[offEpoch:])
}

// FixedPartLen is the fixed part with the epoch, if any: where the feedback
// word, or a DATA packet's set, starts.
func (h SMH) FixedPartLen() int {
	if h.HasEpoch() {
		return FixedLen + EpochLen
	}
	return FixedLen
}

func (h SMH) SetVersionType(v uint8, t Type) { h[offVerType] = v<<4 | uint8(t)&0x0F }
func (h SMH) SetFlags(f Flags)               { h[offFlags] = uint8(f) }
func (h SMH) SetHopLimit(v uint8)            { h[offHopLimit] = v }
func (h SMH) SetEncoding(e Encoding)         { h[offEnc] = uint8(e) << 4 }
func (h SMH) SetSetCount(n uint16)           { binary.BigEndian.PutUint16(h[offSetCount:], n) }
func (h SMH) SetSourceID(v uint16)           { binary.BigEndian.PutUint16(h[offSourceID:], v) }
func (h SMH) SetSessionID(v uint16)          { binary.BigEndian.PutUint16(h[offSessionID:], v) }
func (h SMH) SetSequence(v uint32)           { binary.BigEndian.PutUint32(h[offSequence:], v) }
func (h SMH) SetFeedbackCount(v uint16) {
	binary.BigEndian.PutUint16(h[h.FixedPartLen()+relFbCount:], v)
}
func (h SMH) SetSpeaksFor(v uint16)  { binary.BigEndian.PutUint16(h[h.FixedPartLen()+relSpeaksFor:], v) }
func (h SMH) SetReporterID(v uint16) { binary.BigEndian.PutUint16(h[h.FixedPartLen()+relReporter:], v) }

// SetEpoch writes the Transfer Epoch of a header whose E is already set
// (the encoder sets E from Fields.Epoch).
func (h SMH) SetEpoch(v uint32) { binary.BigEndian.PutUint32(h[offEpoch:], v) }

// SetOffset is where the receiver set starts: after the fixed part (and the
// epoch), and after the feedback word for feedback types.
func (h SMH) SetOffset() int {
	if h.Type().IsFeedback() {
		return h.FixedPartLen() + FeedbackWordLen
	}
	return h.FixedPartLen()
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
	if t > TypeABORT {
		return ErrBadType
	}
	enc := h.Encoding()
	el := enc.EntryLen()
	if el == 0 {
		return ErrBadEncoding
	}
	if len(h) < h.FixedPartLen() || (t.IsFeedback() && len(h) < h.FixedPartLen()+FeedbackWordLen) {
		return ErrTruncated
	}
	if h.HasEpoch() && h.Epoch() == 0 {
		return ErrBadEpoch
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
	if (t == TypeNACK || t == TypeCNP || t == TypeABORT) && h.FeedbackCount() == 0 {
		return ErrBadFeedback
	}
	if t == TypeABORT && n == 0 {
		// An ABORT names the receivers it is about, a receiver's own too.
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
