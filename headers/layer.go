package headers

import (
	"encoding/binary"
	"math/bits"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// SMHLayer is SMH as a gopacket layer, for tools, pcaps and tests. It is a
// second codec, written from docs/smh.md independently of the fast-path view
// SMH: it parses and writes the bytes itself and shares only the public types
// and sentinel errors, so fuzzing the two against each other
// (FuzzCodecs) checks the spec, not one implementation against itself.
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
//	|       Sequence (low)          | [Transfer Epoch, 4 bytes, E]  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Count (ACK/NACK/CNP/ABORT) | Speaks For | Reporter ID (6 bytes) |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| receiver set ...
//
// The epoch is there only with E; the feedback word only in feedback types.
// The set is Set Count entries of Enc: 16-bit IDs (list), 16-bit block index
// plus 64-bit bitmap (blocks), or one 32-bit group ID (group).
type SMHLayer struct {
	layers.BaseLayer

	Version  uint8 // 4 bits; SerializeTo writes headers.Version if zero
	Type     Type  // 4 bits
	Flags    Flags // the whole byte: reserved low bits are kept as they came
	HopLimit uint8
	Encoding Encoding // 4 bits
	Reserved uint8    // the 4 reserved bits after Enc, kept as they came

	SourceID  uint16
	SessionID uint16
	Sequence  uint32
	// Epoch is the Transfer Epoch, present on the wire when Flags has E
	// (0x08); SerializeTo writes it exactly when E is set.
	Epoch uint32

	// Count, SpeaksFor and ReporterID are the feedback word (ACK, NACK,
	// CNP, ABORT only); SourceID, SessionID and Epoch name the stream in
	// every type.
	Count      uint16
	SpeaksFor  uint16
	ReporterID uint16

	// Receivers is the receiver set of a list or block encoding, ascending.
	// DecodeFromBytes reuses its capacity.
	Receivers []uint16
	// Group is the group ID of a group-encoded set.
	Group uint32
}

// LayerTypeSMH is SMH's gopacket layer type (1000-1999 is for applications).
var LayerTypeSMH = gopacket.RegisterLayerType(1471, gopacket.LayerTypeMetadata{
	Name:    "SMH",
	Decoder: gopacket.DecodeFunc(decodeSMH),
})

func init() { RegisterUDPPort(DefaultUDPPort) }

// RegisterUDPPort makes gopacket decode UDP packets to or from port as SMH.
// DefaultUDPPort is registered at init. Like gopacket's own port table, it is
// not safe to call concurrently with decoding.
func RegisterUDPPort(port uint16) {
	layers.RegisterUDPPortLayerType(layers.UDPPort(port), LayerTypeSMH)
}

// Offsets and sizes of docs/smh.md sections 2 and 3, kept apart from the view's
// constants so that the layer is an independent reading of the spec.
const (
	lyrFixed    = 14 // fixed part
	lyrEpoch    = 4  // Transfer Epoch, with E
	lyrEFlag    = 0x08
	lyrWord     = 6 // feedback word
	lyrListLen  = 2
	lyrBlockLen = 10
	lyrGroupLen = 4
	lyrMaxBlock = 1023 // 65536 IDs / 64
)

// LayerType and CanDecode are LayerTypeSMH.
func (l *SMHLayer) LayerType() gopacket.LayerType  { return LayerTypeSMH }
func (l *SMHLayer) CanDecode() gopacket.LayerClass { return LayerTypeSMH }

// NextLayerType is the payload: SMH carries application data.
func (l *SMHLayer) NextLayerType() gopacket.LayerType { return gopacket.LayerTypePayload }

// HeaderLen is the encoded length of the header (not the payload) that
// SerializeTo writes, or 0 if the encoding is reserved.
func (l *SMHLayer) HeaderLen() int {
	n := l.wordAt()
	if isFeedbackType(l.Type) {
		n += lyrWord
	}
	switch l.Encoding {
	case EncList:
		return n + lyrListLen*len(l.Receivers)
	case EncBlocks:
		return n + lyrBlockLen*countBlocks(l.Receivers)
	case EncGroup:
		return n + lyrGroupLen
	}
	return 0
}

// UseSmallerEncoding sets Encoding to the smaller of ID list and block
// bitmaps for Receivers (the ID list on a tie), as docs/smh.md 3 requires of
// senders and switches.
func (l *SMHLayer) UseSmallerEncoding() {
	l.Encoding = EncList
	if lyrBlockLen*countBlocks(l.Receivers) < lyrListLen*len(l.Receivers) {
		l.Encoding = EncBlocks
	}
}

func isFeedbackType(t Type) bool { return t >= 1 && t <= 4 }

// wordAt is where the feedback word (or a DATA set) starts: after the fixed
// part and, with E, the epoch.
func (l *SMHLayer) wordAt() int {
	if l.Flags&lyrEFlag != 0 {
		return lyrFixed + lyrEpoch
	}
	return lyrFixed
}

// countBlocks counts the distinct 64-ID blocks of an ascending list.
func countBlocks(ids []uint16) int {
	n := 0
	for i, id := range ids {
		if i == 0 || id>>6 != ids[i-1]>>6 {
			n++
		}
	}
	return n
}

// DecodeFromBytes decodes an SMH at the start of data. It accepts and
// rejects exactly what SMH.Validate does, with the same sentinel errors, and
// does not allocate once Receivers has grown to the largest set seen.
func (l *SMHLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	l.Contents, l.Payload = nil, nil
	l.Receivers = l.Receivers[:0]
	l.Group = 0
	l.Count, l.SpeaksFor, l.ReporterID, l.Epoch = 0, 0, 0, 0
	if len(data) < lyrFixed {
		return truncated(df)
	}
	l.Version = data[0] >> 4
	l.Type = Type(data[0] & 0x0F)
	l.Flags = Flags(data[1])
	l.HopLimit = data[2]
	l.Encoding = Encoding(data[3] >> 4)
	l.Reserved = data[3] & 0x0F
	setCount := int(data[4])<<8 | int(data[5])
	l.SourceID = uint16(data[6])<<8 | uint16(data[7])
	l.SessionID = uint16(data[8])<<8 | uint16(data[9])
	l.Sequence = binary.BigEndian.Uint32(data[10:14])

	if l.Version != 1 {
		return ErrBadVersion
	}
	if l.Type > 4 {
		return ErrBadType
	}
	var entry int
	switch l.Encoding {
	case EncList:
		entry = lyrListLen
	case EncBlocks:
		entry = lyrBlockLen
	case EncGroup:
		entry = lyrGroupLen
	default:
		return ErrBadEncoding
	}
	feedback := isFeedbackType(l.Type)
	start := l.wordAt()
	if feedback {
		start += lyrWord
	}
	if len(data) < start {
		return truncated(df)
	}
	if w := l.wordAt(); w > lyrFixed {
		l.Epoch = binary.BigEndian.Uint32(data[lyrFixed:w])
		if l.Epoch == 0 {
			return ErrBadEpoch
		}
	}
	if feedback {
		w := data[l.wordAt():]
		l.Count = uint16(w[0])<<8 | uint16(w[1])
		l.SpeaksFor = uint16(w[2])<<8 | uint16(w[3])
		l.ReporterID = uint16(w[4])<<8 | uint16(w[5])
	}
	end := start + setCount*entry
	if len(data) < end {
		return truncated(df)
	}
	set := data[start:end]

	switch l.Encoding {
	case EncList:
		for i := 0; i < len(set); i += lyrListLen {
			id := uint16(set[i])<<8 | uint16(set[i+1])
			if n := len(l.Receivers); n > 0 && id <= l.Receivers[n-1] {
				return ErrBadSet
			}
			l.Receivers = append(l.Receivers, id)
		}
	case EncBlocks:
		last := -1
		for i := 0; i < len(set); i += lyrBlockLen {
			blk := int(set[i])<<8 | int(set[i+1])
			m := binary.BigEndian.Uint64(set[i+2 : i+10])
			if blk <= last || blk > lyrMaxBlock || m == 0 {
				return ErrBadSet
			}
			last = blk
			for ; m != 0; m &= m - 1 {
				l.Receivers = append(l.Receivers, uint16(blk<<6|bits.TrailingZeros64(m)))
			}
		}
	case EncGroup:
		if setCount != 1 || feedback {
			return ErrBadSet
		}
		l.Group = binary.BigEndian.Uint32(set)
	}

	if !feedback {
		if setCount == 0 {
			return ErrBadSet
		}
		if l.Flags&FlagAggregated != 0 {
			return ErrBadFeedback
		}
	} else {
		if l.SpeaksFor == 0 {
			return ErrBadFeedback
		}
		if l.Count == 0 && l.Type != TypeACK {
			return ErrBadFeedback
		}
		if l.Type == TypeABORT && setCount == 0 {
			return ErrBadFeedback
		}
	}
	l.Contents = data[:end]
	l.Payload = data[end:]
	return nil
}

func truncated(df gopacket.DecodeFeedback) error {
	if df != nil {
		df.SetTruncated()
	}
	return ErrTruncated
}

// SerializeTo writes the header in l.Encoding, with Set Count derived from
// Receivers (list, blocks) or 1 (group). It writes what it is given, invalid
// field values included, so tests can build malformed packets; it only
// refuses what the encoding cannot express: a reserved encoding
// (ErrBadEncoding), a list longer than 65535, or block bitmaps for receivers
// that are not strictly ascending (ErrBadSet).
func (l *SMHLayer) SerializeTo(b gopacket.SerializeBuffer, opts gopacket.SerializeOptions) error {
	var count int
	switch l.Encoding {
	case EncList:
		count = len(l.Receivers)
	case EncBlocks:
		for i := 1; i < len(l.Receivers); i++ {
			if l.Receivers[i] <= l.Receivers[i-1] {
				return ErrBadSet
			}
		}
		count = countBlocks(l.Receivers)
	case EncGroup:
		count = 1
	default:
		return ErrBadEncoding
	}
	if count > 0xFFFF {
		return ErrBadSet
	}
	buf, err := b.PrependBytes(l.HeaderLen())
	if err != nil {
		return err
	}
	v := l.Version
	if v == 0 {
		v = Version
	}
	buf[0] = v<<4 | uint8(l.Type)&0x0F
	buf[1] = uint8(l.Flags)
	buf[2] = l.HopLimit
	buf[3] = uint8(l.Encoding)<<4 | l.Reserved&0x0F
	binary.BigEndian.PutUint16(buf[4:], uint16(count))
	binary.BigEndian.PutUint16(buf[6:], l.SourceID)
	binary.BigEndian.PutUint16(buf[8:], l.SessionID)
	binary.BigEndian.PutUint32(buf[10:], l.Sequence)
	off := l.wordAt()
	if off > lyrFixed {
		binary.BigEndian.PutUint32(buf[lyrFixed:], l.Epoch)
	}
	if isFeedbackType(l.Type) {
		binary.BigEndian.PutUint16(buf[off:], l.Count)
		binary.BigEndian.PutUint16(buf[off+2:], l.SpeaksFor)
		binary.BigEndian.PutUint16(buf[off+4:], l.ReporterID)
		off += lyrWord
	}
	switch l.Encoding {
	case EncList:
		for _, id := range l.Receivers {
			binary.BigEndian.PutUint16(buf[off:], id)
			off += lyrListLen
		}
	case EncBlocks:
		for i := 0; i < len(l.Receivers); {
			blk := l.Receivers[i] >> 6
			var m uint64
			for ; i < len(l.Receivers) && l.Receivers[i]>>6 == blk; i++ {
				m |= 1 << (l.Receivers[i] & 63)
			}
			binary.BigEndian.PutUint16(buf[off:], blk)
			binary.BigEndian.PutUint64(buf[off+2:], m)
			off += lyrBlockLen
		}
	case EncGroup:
		binary.BigEndian.PutUint32(buf[off:], l.Group)
	}
	return nil
}

func decodeSMH(data []byte, p gopacket.PacketBuilder) error {
	l := &SMHLayer{}
	if err := l.DecodeFromBytes(data, p); err != nil {
		return err
	}
	p.AddLayer(l)
	return p.NextDecoder(l.NextLayerType())
}
