package control

import (
	"slices"
	"testing"
)

// The state file's members record: anything decodes to a strictly
// ascending list or an error, and a list encodes back to the same record.
func FuzzDecodeMembers(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeMembers([]uint16{1, 2, 300}))
	f.Add([]byte{0, 3, 0})
	f.Add([]byte{0, 4, 0, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMembers(b)
		if err != nil {
			return
		}
		if !slices.IsSorted(m) || len(slices.Compact(slices.Clone(m))) != len(m) {
			t.Fatalf("%x decoded to %v", b, m)
		}
		if got := encodeMembers(m); !slices.Equal(got, b) {
			t.Fatalf("%x -> %v -> %x", b, m, got)
		}
	})
}

// etcd keys and values under the prefix: anything is one group change, one
// link change or an error, never a panic; a group's members are strictly
// ascending and a link's port fits a switch.
func FuzzEtcdDecode(f *testing.F) {
	e := &EtcdStore{prefix: DefaultEtcdPrefix}
	f.Add([]byte("/sparsecast/groups/7"), []byte("[1,2,3]"), false)
	f.Add([]byte("/sparsecast/groups/7"), []byte(""), true)
	f.Add([]byte("/sparsecast/links/leaf1/2"), []byte(`{"state":2,"loss_ppm":10}`), false)
	f.Add([]byte("/sparsecast/links/leaf1/999"), []byte(`{}`), false)
	f.Add([]byte("/sparsecast/groups/x"), []byte("[3,1]"), false)
	f.Add([]byte("/sparsecast/other"), []byte("null"), false)
	f.Fuzz(func(t *testing.T, key, value []byte, deleted bool) {
		c, err := e.decode(key, value, deleted)
		if err != nil {
			return
		}
		if c.Link != nil {
			if c.Link.Port < 0 || c.Link.Port > 255 || c.Link.Switch == "" {
				t.Fatalf("%q: link %+v", key, c.Link)
			}
			return
		}
		if !deleted && (c.Members == nil || !slices.IsSorted(c.Members) || len(slices.Compact(slices.Clone(c.Members))) != len(c.Members)) {
			t.Fatalf("%q %q: members %v", key, value, c.Members)
		}
	})
}
