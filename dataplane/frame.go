// Frame building for tools that inject SMH at layer 2 (benchmarks, the
// generator port, tests): Ethernet, IPv4 or IPv6, UDP with a valid checksum,
// SMH, payload. Hosts send through UDP sockets instead (dataplane/endpoint).
package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/sparsecast/sparsecast/headers"
)

// FrameSpec describes one SMH frame.
type FrameSpec struct {
	SrcMAC, DstMAC net.HardwareAddr
	SrcIP, DstIP   net.IP // both IPv4 or both IPv6
	SrcPort        uint16
	DstPort        uint16 // default headers.DefaultUDPPort
	Fields         headers.Fields
	Receivers      []uint16 // strictly ascending
	Payload        []byte
}

// BuildFrame serializes spec; the UDP checksum is always filled in.
func BuildFrame(spec FrameSpec) ([]byte, error) {
	if spec.DstPort == 0 {
		spec.DstPort = headers.DefaultUDPPort
	}
	src4, dst4 := spec.SrcIP.To4(), spec.DstIP.To4()
	v6 := src4 == nil
	if v6 != (dst4 == nil) || (v6 && (spec.SrcIP.To16() == nil || spec.DstIP.To16() == nil)) {
		return nil, fmt.Errorf("source %v and destination %v are not of one IP family", spec.SrcIP, spec.DstIP)
	}
	if len(spec.SrcMAC) != 6 || len(spec.DstMAC) != 6 {
		return nil, fmt.Errorf("MAC addresses must be 6 bytes")
	}
	hl := spec.Fields.HeaderLen(spec.Receivers)
	ipLen := 20
	if v6 {
		ipLen = ipv6HdrLen
	}
	ulen := udpHdrLen + hl + len(spec.Payload)
	if ulen > 0xFFFF-ipLen {
		return nil, fmt.Errorf("datagram of %d bytes is too big", ulen)
	}
	b := make([]byte, ethHdrLen+ipLen+ulen)
	copy(b[0:6], spec.DstMAC)
	copy(b[6:12], spec.SrcMAC)
	ip := b[ethHdrLen:]
	var pseudo uint64
	if v6 {
		binary.BigEndian.PutUint16(b[12:], etherTypeIPv6)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(ulen))
		ip[6], ip[7] = ipProtoUDP, 64
		copy(ip[8:24], spec.SrcIP.To16())
		copy(ip[24:40], spec.DstIP.To16())
		pseudo = sum16(ip[8:40], 0)
	} else {
		binary.BigEndian.PutUint16(b[12:], etherTypeIPv4)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(ipLen+ulen))
		ip[8], ip[9] = 64, ipProtoUDP
		copy(ip[12:16], src4)
		copy(ip[16:20], dst4)
		binary.BigEndian.PutUint16(ip[10:], ipv4HeaderChecksum(ip[:20]))
		pseudo = sum16(ip[12:20], 0)
	}
	u := ip[ipLen:]
	binary.BigEndian.PutUint16(u[0:], spec.SrcPort)
	binary.BigEndian.PutUint16(u[2:], spec.DstPort)
	binary.BigEndian.PutUint16(u[4:], uint16(ulen))
	if headers.PutHeader(u[udpHdrLen:], spec.Fields, spec.Receivers) != hl {
		return nil, fmt.Errorf("receiver set must be strictly ascending IDs")
	}
	copy(u[udpHdrLen+hl:], spec.Payload)
	c := ^fold(sum16(u, pseudo+ipProtoUDP+uint64(ulen)))
	if c == 0 {
		c = 0xFFFF
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return b, nil
}
