package dataplane

import (
	"net"
	"slices"
	"testing"

	"github.com/sparsecast/sparsecast/headers"
)

func TestBuildFrameIsValid(t *testing.T) {
	for _, ips := range [][2]net.IP{
		{net.IPv4(10, 0, 0, 1), net.IPv4(10, 0, 0, 2)},
		{net.ParseIP("fd00::1"), net.ParseIP("fd00::2")},
	} {
		ids := []uint16{3, 64, 65, 900}
		fr, err := BuildFrame(FrameSpec{
			SrcMAC: localMAC("a"), DstMAC: localMAC("b"), SrcIP: ips[0], DstIP: ips[1], SrcPort: 50001,
			Fields: headers.Fields{HopLimit: 4, Sequence: 5}, Receivers: ids, Payload: []byte("odd"),
		})
		if err != nil {
			t.Fatal(err)
		}
		h, _ := checkFrame(t, fr)
		if !slices.Equal(h.AppendReceivers(nil), ids) || string(h.Payload()) != "odd" {
			t.Fatalf("frame carries %v %q", h.AppendReceivers(nil), h.Payload())
		}
	}
	if _, err := BuildFrame(FrameSpec{SrcMAC: localMAC("a"), DstMAC: localMAC("b"), SrcIP: net.IPv4(1, 2, 3, 4), DstIP: net.ParseIP("fd00::1"), Receivers: []uint16{1}}); err == nil {
		t.Fatal("mixed IP families accepted")
	}
	if _, err := BuildFrame(FrameSpec{SrcMAC: localMAC("a"), DstMAC: localMAC("b"), SrcIP: net.IPv4(1, 2, 3, 4), DstIP: net.IPv4(1, 2, 3, 5), Receivers: []uint16{2, 1}}); err == nil {
		t.Fatal("unsorted set accepted")
	}
}
