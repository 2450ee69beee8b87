package headers

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/google/gopacket"
)

// FuzzCodecs feeds arbitrary bytes to both codecs: neither may panic, both
// must accept or reject alike with the same sentinel error, and an accepted
// header must decode to the same fields and receivers and re-encode, through
// the layer in its own encoding, to exactly the bytes it came from.
func FuzzCodecs(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h := SMH(data)
		verr := h.Validate()
		var l SMHLayer
		lerr := l.DecodeFromBytes(data, gopacket.NilDecodeFeedback)
		if verr != lerr {
			t.Fatalf("Validate = %v, layer = %v for %x", verr, lerr, data)
		}
		if verr != nil {
			return
		}
		f := h.Fields()
		lf := Fields{Type: l.Type, Flags: l.Flags, HopLimit: l.HopLimit, SourceID: l.SourceID,
			SessionID: l.SessionID, Sequence: l.Sequence, Epoch: l.Epoch, Count: l.Count, SpeaksFor: l.SpeaksFor, ReporterID: l.ReporterID}
		if f != lf || h.Version() != l.Version || h.Encoding() != l.Encoding || h[3]&0x0F != l.Reserved {
			t.Fatalf("fields differ: view %+v enc %v, layer %+v", f, h.Encoding(), l)
		}
		rx := h.AppendReceivers(nil)
		if !slices.Equal(rx, l.Receivers) {
			t.Fatalf("receivers differ: view %v, layer %v", rx, l.Receivers)
		}
		var each []uint16
		h.ForEachReceiver(func(id uint16) { each = append(each, id) })
		if !slices.Equal(each, rx) {
			t.Fatalf("ForEachReceiver %v, AppendReceivers %v", each, rx)
		}
		if h.Encoding() == EncGroup && h.GroupID() != l.Group {
			t.Fatalf("group: view %#x, layer %#x", h.GroupID(), l.Group)
		}
		hl := h.HeaderLen()
		if !bytes.Equal(l.LayerContents(), data[:hl]) || !bytes.Equal(l.LayerPayload(), h.Payload()) {
			t.Fatalf("header/payload split differs: view %d, layer %d", hl, len(l.LayerContents()))
		}

		buf := gopacket.NewSerializeBuffer()
		if err := l.SerializeTo(buf, gopacket.SerializeOptions{}); err != nil {
			t.Fatalf("SerializeTo: %v", err)
		}
		if !bytes.Equal(buf.Bytes(), data[:hl]) {
			t.Fatalf("re-encoding\n got  %x\n want %x", buf.Bytes(), data[:hl])
		}
	})
}

// idsFromBytes turns fuzz bytes into a strictly ascending ID list: byte b <
// 0x80 steps by b+1 (neighbours, so block bitmaps get exercised), 0x80-0xfe
// jumps by whole blocks, 0xff takes the next two bytes as a big-endian step.
func idsFromBytes(raw []byte) []uint16 {
	var ids []uint16
	next := 0
	for i := 0; i < len(raw); i++ {
		step := 0
		switch b := raw[i]; {
		case b < 0x80:
			step = int(b)
		case b < 0xff:
			step = int(b-0x7f) * 64
		case i+2 < len(raw):
			step = int(binary.BigEndian.Uint16(raw[i+1:]))
			i += 2
		}
		next += step
		if next > MaxID {
			break
		}
		ids = append(ids, uint16(next))
		next++
	}
	return ids
}

// bytesFromIDs is idsFromBytes' inverse, for seeding the corpus.
func bytesFromIDs(ids []uint16) []byte {
	var raw []byte
	next := 0
	for _, id := range ids {
		step := int(id) - next
		if step < 0x80 {
			raw = append(raw, byte(step))
		} else {
			raw = append(raw, 0xff, byte(step>>8), byte(step))
		}
		next = int(id) + 1
	}
	return raw
}

// FuzzRoundTrip encodes random ascending ID lists with PutHeader and checks
// that the view validates and returns them, that the layer writes the very
// same bytes in ChooseEncoding's encoding, and that the other encoding
// carries the same set.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(0), uint32(0), []byte{1, 3, 3})
	f.Add(uint8(1), uint32(7), []byte{})
	f.Add(uint8(0x42), uint32(1<<31), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0x90, 0, 0, 0})
	f.Add(uint8(0x73), uint32(99), []byte{0xff, 0xff, 0xbf})
	f.Add(uint8(0x08), uint32(5), []byte{64, 0, 0})
	f.Add(uint8(0x8e), uint32(77), []byte{65})
	for _, v := range loadVectors(f) {
		if v.err == nil && len(v.rx) > 0 {
			f.Add(uint8(v.typ)&3|uint8(v.flags)&0x78, v.seq, bytesFromIDs(v.rx))
		}
	}
	f.Fuzz(func(t *testing.T, sel uint8, seq uint32, raw []byte) {
		ids := idsFromBytes(raw)
		if !slices.Equal(idsFromBytes(bytesFromIDs(ids)), ids) {
			t.Fatalf("id generator does not round-trip %v", ids)
		}
		fl := Fields{Type: Type(sel & 3), Flags: Flags(sel) & (FlagRetransmit | FlagCongestion | FlagFinal),
			HopLimit: sel, SourceID: uint16(seq >> 16), SessionID: uint16(seq), Sequence: seq}
		if sel&0x84 == 0x84 {
			fl.Type = TypeABORT
		}
		if fl.Type.IsFeedback() {
			fl.Flags = FlagAggregated | fl.Flags&FlagCongestion
			fl.Count, fl.SpeaksFor, fl.ReporterID = uint16(seq)|1, uint16(len(ids))+1, uint16(seq>>8)
		}
		wantLen := HeaderLenFor(fl.Type, ids)
		if sel&0x08 != 0 {
			fl.Epoch, fl.Flags = (seq^0x5a5a5a5a)|1, fl.Flags|FlagEpoch
			wantLen = HeaderLenForEpoch(fl.Type, ids)
		}
		buf := make([]byte, FeedbackLen+EpochLen+BlockEntryLen*1024+2*len(ids))
		n := PutHeader(buf, fl, ids)
		if n == 0 || n != wantLen {
			t.Fatalf("PutHeader = %d, want %d", n, wantLen)
		}
		h := SMH(buf[:n])
		err := h.Validate()
		if fl.Type == TypeData && len(ids) == 0 {
			if err != ErrBadSet {
				t.Fatalf("DATA with no receivers: Validate = %v, want ErrBadSet", err)
			}
			return
		}
		if fl.Type == TypeABORT && len(ids) == 0 {
			if err != ErrBadFeedback {
				t.Fatalf("ABORT naming nobody: Validate = %v, want ErrBadFeedback", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Validate: %v for %x", err, buf[:n])
		}
		if got := h.AppendReceivers(nil); !slices.Equal(got, ids) {
			t.Fatalf("receivers %v, want %v", got, ids)
		}
		if h.Fields() != fl {
			t.Fatalf("fields %+v, want %+v", h.Fields(), fl)
		}

		enc, _ := ChooseEncoding(ids)
		l := SMHLayer{Type: fl.Type, Flags: fl.Flags, HopLimit: fl.HopLimit, SourceID: fl.SourceID,
			SessionID: fl.SessionID, Sequence: fl.Sequence, Epoch: fl.Epoch, Count: fl.Count, SpeaksFor: fl.SpeaksFor,
			ReporterID: fl.ReporterID, Receivers: ids}
		l.UseSmallerEncoding()
		if l.Encoding != enc {
			t.Fatalf("layer picks %v, ChooseEncoding %v for %v", l.Encoding, enc, ids)
		}
		sb := gopacket.NewSerializeBuffer()
		if err := l.SerializeTo(sb, gopacket.SerializeOptions{}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sb.Bytes(), buf[:n]) {
			t.Fatalf("layer\n got  %x\n want %x", sb.Bytes(), buf[:n])
		}

		// The other encoding is longer (or equal) but names the same set.
		l.Encoding = EncList + EncBlocks - enc
		if len(ids) > 0xFFFF {
			return
		}
		if err := sb.Clear(); err != nil {
			t.Fatal(err)
		}
		if err := l.SerializeTo(sb, gopacket.SerializeOptions{}); err != nil {
			t.Fatal(err)
		}
		other := SMH(sb.Bytes())
		if err := other.Validate(); err != nil {
			t.Fatalf("%v encoding: Validate %v", l.Encoding, err)
		}
		if len(other) < n {
			t.Fatalf("%v encoding is %d bytes, shorter than the chosen %d", l.Encoding, len(other), n)
		}
		var back SMHLayer
		if err := back.DecodeFromBytes(other, nil); err != nil || !slices.Equal(back.Receivers, ids) {
			t.Fatalf("%v encoding decodes to %v, %v", l.Encoding, back.Receivers, err)
		}
	})
}
