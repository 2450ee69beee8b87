package headers

import (
	"bytes"
	"testing"
)

// FuzzRingRecord feeds arbitrary bytes to Validate: it may not panic, a
// rejection has an error, and a record that validates decodes to fields that
// the constructors turn back into exactly the same bytes (so no byte of a
// valid record goes unchecked).
func FuzzRingRecord(f *testing.F) {
	for _, v := range loadRingVectors(f) {
		f.Add(v.data, uint8(vectorPorts))
	}
	f.Fuzz(func(t *testing.T, data []byte, nports uint8) {
		r := Record(data)
		code := r.Validate(int(nports))
		if code != 0 {
			if RejectError(code) == nil || RejectReason(code) == "unknown" {
				t.Fatalf("code %d has no error or name", code)
			}
			return
		}
		if len(data) != RingRecordLen {
			t.Fatalf("%d-byte record validated", len(data))
		}
		var buf [RingRecordLen]byte
		if out := reencode(r, buf[:]); !bytes.Equal(out, data) {
			t.Fatalf("re-encoded\n%x\nfrom\n%x", []byte(out), data)
		}
	})
}
