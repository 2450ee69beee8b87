package headers

// A size model of BIER (RFC 8296), the stateless multicast SMH is compared
// with. A BIER packet carries a fixed 12-byte header and a BitString of BSL
// bits; bit positions are 1-based in the RFC, here receiver ID i (0-based)
// is bit i mod BSL of set identifier SI = i / BSL. One BitString covers one
// SI, so a receiver set touching s distinct SIs needs s packet copies from
// the ingress, each 12 + BSL/8 bytes of header.

// BIERFixedLen is the BIER header without its BitString (RFC 8296 2.1.2).
const BIERFixedLen = 12

// BIERBSLs are the BitString lengths RFC 8296 defines, in bits.
var BIERBSLs = [...]int{64, 128, 256, 512, 1024, 2048, 4096}

// BIERCost is what a receiver set costs in BIER headers at one BSL.
type BIERCost struct {
	BSL            int `json:"bsl"`
	Packets        int `json:"packets"`          // distinct SIs touched
	BytesPerPacket int `json:"bytes_per_packet"` // 12 + BSL/8
	TotalBytes     int `json:"total_bytes"`      // Packets * BytesPerPacket
}

// BIERSize returns the cost of addressing ids (any order, duplicates
// allowed) at every BSL of BIERBSLs, and the best of them: the fewest total
// header bytes, on a tie the fewest packets. It does not allocate.
func BIERSize(ids []uint16) (best BIERCost, all [len(BIERBSLs)]BIERCost) {
	for i, bsl := range BIERBSLs {
		// 65536 IDs at BSL 64 are at most 1024 SIs.
		var seen [(MaxID + 1) / 64 / 64]uint64
		packets := 0
		for _, id := range ids {
			si := int(id) / bsl
			if seen[si/64]&(1<<(si%64)) == 0 {
				seen[si/64] |= 1 << (si % 64)
				packets++
			}
		}
		per := BIERFixedLen + bsl/8
		c := BIERCost{BSL: bsl, Packets: packets, BytesPerPacket: per, TotalBytes: packets * per}
		all[i] = c
		if i == 0 || c.TotalBytes < best.TotalBytes ||
			c.TotalBytes == best.TotalBytes && c.Packets < best.Packets {
			best = c
		}
	}
	return best, all
}

// BIERDomainBSL is the BSL a BIER domain of n BFRs is configured with: the
// shortest BitString that covers the domain in one set identifier, at most
// 4096 bits (RFC 8296's largest). A domain runs one BSL for all its packets,
// so this, not the per-set optimum, is what a packet of that domain carries.
func BIERDomainBSL(n int) int {
	for _, bsl := range BIERBSLs {
		if bsl >= n {
			return bsl
		}
	}
	return BIERBSLs[len(BIERBSLs)-1]
}
