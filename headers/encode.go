package headers

import (
	"encoding/binary"
	"math/bits"
)

// Fields are the fixed-part fields a sender or switch writes; the set is
// passed separately so the fast path can encode from its scratch arrays.
type Fields struct {
	Type      Type
	Flags     Flags
	HopLimit  uint8
	SourceID  uint16
	SessionID uint16
	Sequence  uint32
	// Epoch is the Transfer Epoch: nonzero sets E and writes it; zero
	// clears E (whatever Flags says).
	Epoch uint32
	// Count, SpeaksFor and ReporterID form the feedback word (ACK, NACK,
	// CNP, ABORT only).
	Count      uint16
	SpeaksFor  uint16
	ReporterID uint16
}

// DefaultHopLimit is what senders put in Hop Limit unless told otherwise:
// enough for a 5-stage Clos with room for a reroute detour.
const DefaultHopLimit = 16

// ListLen and BlocksLen are the set sizes, in bytes, of the two receiver
// encodings for a strictly ascending ID list.
func ListLen(ids []uint16) int { return len(ids) * ListEntryLen }

// BlockCount counts the distinct 64-ID blocks of a strictly ascending list.
func BlockCount(ids []uint16) int {
	n, prev := 0, -1
	for _, id := range ids {
		if b := int(id >> 6); b != prev {
			n++
			prev = b
		}
	}
	return n
}

// ChooseEncoding picks the smaller encoding for a strictly ascending ID list
// (the ID list on a tie) and returns it with its set count.
func ChooseEncoding(ids []uint16) (Encoding, int) {
	nb := BlockCount(ids)
	if nb*BlockEntryLen < len(ids)*ListEntryLen {
		return EncBlocks, nb
	}
	return EncList, len(ids)
}

// HeaderLenFor is the SMH length, without an epoch, for a type and a
// receiver list encoded in the smaller encoding (HeaderLenForEpoch adds it).
func HeaderLenFor(t Type, ids []uint16) int {
	enc, n := ChooseEncoding(ids)
	return fixedPartFor(t, false) + n*enc.EntryLen()
}

// HeaderLenForEpoch is HeaderLenFor with a Transfer Epoch (E set).
func HeaderLenForEpoch(t Type, ids []uint16) int {
	return HeaderLenFor(t, ids) + EpochLen
}

// HeaderLen is the length PutHeader writes for f and ids: HeaderLenFor,
// with the epoch when f has one.
func (f *Fields) HeaderLen(ids []uint16) int {
	if f.Epoch != 0 {
		return HeaderLenForEpoch(f.Type, ids)
	}
	return HeaderLenFor(f.Type, ids)
}

// fixedPartFor is the fixed part, epoch and feedback word of a header.
func fixedPartFor(t Type, epoch bool) int {
	n := FixedLen
	if epoch {
		n += EpochLen
	}
	if t.IsFeedback() {
		n += FeedbackWordLen
	}
	return n
}

// PutHeader writes an SMH with the given fields and receiver list (strictly
// ascending, possibly empty for feedback) into b, in the smaller encoding, and
// returns its length. b must have room for HeaderLenFor(f.Type, ids) bytes
// (HeaderLenForEpoch with an epoch);
// it returns 0 if it does not, or if ids is not strictly ascending.
// PutHeader does not allocate.
func PutHeader(b []byte, f Fields, ids []uint16) int {
	enc, n := ChooseEncoding(ids)
	h := SMH(b)
	off := f.putFixed(h, enc, n)
	if off == 0 || len(b) < off+n*enc.EntryLen() {
		return 0
	}
	prev := -1
	if enc == EncList {
		for _, id := range ids {
			if int(id) <= prev {
				return 0
			}
			prev = int(id)
			binary.BigEndian.PutUint16(b[off:], id)
			off += ListEntryLen
		}
		return off
	}
	var m uint64
	cur := -1
	for _, id := range ids {
		if int(id) <= prev {
			return 0
		}
		prev = int(id)
		blk := int(id >> 6)
		if blk != cur {
			if cur >= 0 {
				off = putBlock(b, off, uint16(cur), m)
			}
			cur, m = blk, 0
		}
		m |= 1 << (id & 63)
	}
	if cur >= 0 {
		off = putBlock(b, off, uint16(cur), m)
	}
	return off
}

// PutGroupHeader writes a DATA SMH addressed to a group and returns its length,
// or 0 if b is too short.
func PutGroupHeader(b []byte, f Fields, group uint32) int {
	f.Type = TypeData
	h := SMH(b)
	off := f.putFixed(h, EncGroup, 1)
	if off == 0 || len(b) < off+GroupEntryLen {
		return 0
	}
	binary.BigEndian.PutUint32(b[off:], group)
	return off + GroupEntryLen
}

func (f Fields) putFixed(h SMH, enc Encoding, n int) int {
	off := fixedPartFor(f.Type, f.Epoch != 0)
	if len(h) < off || n > 0xFFFF {
		return 0
	}
	h.SetVersionType(Version, f.Type)
	flags := f.Flags &^ FlagEpoch
	if f.Epoch != 0 {
		flags |= FlagEpoch
	}
	h.SetFlags(flags)
	h.SetHopLimit(f.HopLimit)
	h.SetEncoding(enc)
	h.SetSetCount(uint16(n))
	h.SetSourceID(f.SourceID)
	h.SetSessionID(f.SessionID)
	h.SetSequence(f.Sequence)
	if f.Epoch != 0 {
		h.SetEpoch(f.Epoch)
	}
	if f.Type.IsFeedback() {
		h.SetFeedbackCount(f.Count)
		h.SetSpeaksFor(f.SpeaksFor)
		h.SetReporterID(f.ReporterID)
	}
	return off
}

func putBlock(b []byte, off int, blk uint16, m uint64) int {
	binary.BigEndian.PutUint16(b[off:], blk)
	binary.BigEndian.PutUint64(b[off+2:], m)
	return off + BlockEntryLen
}

// AppendReceivers appends the receiver IDs of a validated list or block set
// to dst (for tools and tests; the fast path uses ForEachReceiver).
func (h SMH) AppendReceivers(dst []uint16) []uint16 {
	n := int(h.SetCount())
	switch h.Encoding() {
	case EncList:
		for i := 0; i < n; i++ {
			dst = append(dst, h.ListID(i))
		}
	case EncBlocks:
		for i := 0; i < n; i++ {
			blk, m := h.Block(i)
			base := blk << 6
			for m != 0 {
				dst = append(dst, base+uint16(bits.TrailingZeros64(m)))
				m &= m - 1
			}
		}
	}
	return dst
}

// Fields returns the fixed-part fields of a validated header.
func (h SMH) Fields() Fields {
	f := Fields{
		Type: h.Type(), Flags: h.Flags(), HopLimit: h.HopLimit(),
		SourceID: h.SourceID(), SessionID: h.SessionID(), Sequence: h.Sequence(),
		Epoch: h.Epoch(),
	}
	if f.Type.IsFeedback() {
		f.Count = h.FeedbackCount()
		f.SpeaksFor = h.SpeaksFor()
		f.ReporterID = h.ReporterID()
	}
	return f
}
