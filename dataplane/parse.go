// Parse stage. In: a burst of raw Ethernet frames. Out: for each frame either
// the offsets of its IP, UDP, SMH and payload (frame trimmed to the IP
// length, Ethernet padding removed) or the reason it is dropped. Only SMH over
// UDP to the configured port, in IPv4 or IPv6 with at most one 802.1Q tag,
// gets through; the SMH itself is validated in full (docs/smh.md 4).
package dataplane

import (
	"encoding/binary"

	"github.com/sparsecast/sparsecast/headers"
)

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86DD
	etherTypeVLAN = 0x8100
	ipProtoUDP    = 17
	ethHdrLen     = 14
	vlanTagLen    = 4
	ipv6HdrLen    = 40
	udpHdrLen     = 8
)

// parsed holds the offsets, within Packet.Head, of one frame's headers.
type parsed struct {
	ip, udp, smh, payload int
	v6                    bool
	drop                  DropReason // NumDropReasons when the frame is good
}

// parseFrame fills m for one frame and returns NumDropReasons if it is a
// valid SMH packet with a hop limit left, else the reason to drop it.
func parseFrame(pk *Packet, m *parsed, udpPort uint16) DropReason {
	b := pk.Head
	if len(b) < ethHdrLen {
		return DropTruncated
	}
	l3 := ethHdrLen
	et := binary.BigEndian.Uint16(b[12:])
	if et == etherTypeVLAN {
		if len(b) < ethHdrLen+vlanTagLen {
			return DropTruncated
		}
		et = binary.BigEndian.Uint16(b[16:])
		l3 += vlanTagLen
	}
	m.ip = l3
	var end int
	switch et {
	case etherTypeIPv4:
		if len(b) < l3+20 {
			return DropTruncated
		}
		if b[l3]>>4 != 4 {
			return DropNotSMH
		}
		ihl := int(b[l3]&0x0F) * 4
		total := int(binary.BigEndian.Uint16(b[l3+2:]))
		if ihl < 20 || total < ihl || len(b) < l3+total {
			return DropTruncated
		}
		// Fragments: SMH is never fragmented; a fragment's UDP header, if
		// any, does not describe the datagram.
		if binary.BigEndian.Uint16(b[l3+6:])&0x3FFF != 0 || b[l3+9] != ipProtoUDP {
			return DropNotSMH
		}
		m.v6 = false
		m.udp = l3 + ihl
		end = l3 + total
	case etherTypeProbe:
		return probeFrame
	case etherTypeIPv6:
		if len(b) < l3+ipv6HdrLen {
			return DropTruncated
		}
		if b[l3]>>4 != 6 || b[l3+6] != ipProtoUDP {
			return DropNotSMH
		}
		plen := int(binary.BigEndian.Uint16(b[l3+4:]))
		if len(b) < l3+ipv6HdrLen+plen {
			return DropTruncated
		}
		m.v6 = true
		m.udp = l3 + ipv6HdrLen
		end = l3 + ipv6HdrLen + plen
	default:
		return DropNotSMH
	}
	if end < m.udp+udpHdrLen {
		return DropTruncated
	}
	if binary.BigEndian.Uint16(b[m.udp+2:]) != udpPort {
		return DropNotSMH
	}
	ulen := int(binary.BigEndian.Uint16(b[m.udp+4:]))
	if ulen < udpHdrLen || m.udp+ulen > end {
		return DropTruncated
	}
	end = m.udp + ulen
	pk.Head = b[:end]
	m.smh = m.udp + udpHdrLen
	h := headers.SMH(pk.Head[m.smh:])
	if err := h.Validate(); err != nil {
		return dropForError(err)
	}
	if h.HopLimit() == 0 {
		return DropHopLimit
	}
	m.payload = m.smh + h.HeaderLen()
	return NumDropReasons
}
