// Package endpoint is the host side of the dataplane: a Sender that puts SMH
// DATA packets into UDP datagrams towards a switch port, and a Receiver that
// takes them out again and accounts for every sequence number.
//
// This is the plain transport: no acknowledgements, no repair. What it does
// give a test is exactness: a Receiver records which sequence numbers of each
// (Source ID, Session ID) stream arrived in a bitmap, and a Schedule lets the
// test compute, for every receiver, the sequence numbers it should get.
//
// The datagram is SMH (docs/smh.md) followed by the payload:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         SMH: fixed part (14 bytes) and receiver set           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|              Sequence (copy of the SMH Sequence)              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Send time, Unix nanoseconds (64 bits) ...           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       ... send time                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 zero padding up to the payload size ...       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The copy of the sequence number lets a receiver catch a switch that
// rewrites the header wrongly (payload_mismatch).
package endpoint

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/sparsecast/sparsecast/headers"
)

const (
	// MinPayload is the smallest payload: sequence number and send time.
	MinPayload = 12
	// MaxDatagram is the largest UDP payload over IPv4 (65535 - 20 - 8).
	MaxDatagram = 65507
	// MaxPayload leaves room for an SMH with a one-entry set.
	MaxPayload = MaxDatagram - headers.FixedLen - headers.ListEntryLen

	// maxSetLen is the largest receiver set in the smaller encoding: block
	// bitmaps for all 1024 blocks.
	maxSetLen = (headers.MaxBlock + 1) * headers.BlockEntryLen

	offPayloadSeq  = 0
	offPayloadTime = 4

	// SourcePortMin is the bottom of the RFC 6335 dynamic range, where the
	// UDP source port of an SMH stream lives (docs/smh.md section 1).
	SourcePortMin = 49152
)

// SourcePort is the UDP source port of the stream (source, session): a hash
// (FNV-1a over the two big-endian IDs) folded into 49152-65535, so one stream
// takes one ECMP path and different streams spread.
func SourcePort(source, session uint16) uint16 {
	const offset32, prime32 = 2166136261, 16777619
	h := uint32(offset32)
	for _, b := range [4]byte{byte(source >> 8), byte(source), byte(session >> 8), byte(session)} {
		h ^= uint32(b)
		h *= prime32
	}
	// Fold the high half in: FNV's low bits alone mix poorly.
	h ^= h >> 16
	return SourcePortMin + uint16(h%(65536-SourcePortMin))
}

// ResolveAddr parses "host:port", "[v6]:port", "host" or "v6" into an address;
// a missing port becomes defPort. Host names are resolved (first address).
func ResolveAddr(s string, defPort uint16) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, fmt.Errorf("empty address")
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a bare host, IPv4 or IPv6 (possibly bracketed).
		host, portStr = s, ""
		if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
			host = host[1 : len(host)-1]
		}
	}
	port := defPort
	if portStr != "" {
		p, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("address %q: bad port %q", s, portStr)
		}
		port = uint16(p)
	}
	if host == "" {
		return netip.AddrPortFrom(netip.Addr{}, port), nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, lerr := net.LookupIP(host)
		if lerr != nil || len(ips) == 0 {
			return netip.AddrPort{}, fmt.Errorf("address %q: %q is neither an IP address nor a resolvable host name", s, host)
		}
		ip, _ = netip.AddrFromSlice(ips[0])
	}
	return netip.AddrPortFrom(ip.Unmap(), port), nil
}
