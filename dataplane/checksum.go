// Internet checksum helpers (RFC 1071) and the incremental update of RFC 1624
// that lets a switch rewrite SMH and outer headers without summing the
// payload again for every copy.
package dataplane

import (
	"encoding/binary"
	"math/bits"
)

// sum16 adds b as big-endian 16-bit words to acc; an odd last byte is padded
// with zero.
func sum16(b []byte, acc uint64) uint64 {
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint16(b)) + uint64(binary.BigEndian.Uint16(b[2:])) +
			uint64(binary.BigEndian.Uint16(b[4:])) + uint64(binary.BigEndian.Uint16(b[6:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// fold reduces a sum to 16 bits with end-around carry.
func fold(acc uint64) uint16 {
	for acc>>16 != 0 {
		acc = acc&0xFFFF + acc>>16
	}
	return uint16(acc)
}

// ipv4HeaderChecksum computes the checksum of an IPv4 header whose checksum
// field is zero.
func ipv4HeaderChecksum(h []byte) uint16 { return ^fold(sum16(h, 0)) }

func trailingZeros(x uint64) int { return bits.TrailingZeros64(x) }

// ChecksumAdd and ChecksumFold expose sum16 and fold to other packages that
// build frames themselves (the endpoint's in-memory transport), so there is
// one Internet-checksum implementation.
func ChecksumAdd(b []byte, acc uint64) uint64 { return sum16(b, acc) }

// ChecksumFold reduces a ChecksumAdd sum to 16 bits.
func ChecksumFold(acc uint64) uint16 { return fold(acc) }
