package endpoint

// Parity repairs (forward error correction over blocks of packets, as NORM,
// RFC 5740, does): in fixed mode with FEC on, the stream's sequence numbers
// from Base on are split into blocks of K packets (block b holds
// Base+b*K ... Base+b*K+K-1). A receiver that misses m packets of a block
// asks for m repair symbols of it (a block NACK: SMH NACK with P, Sequence
// the block's first sequence number, Count m), and the sender answers with
// parity packets: any K of the block's K source symbols and its parity
// symbols rebuild the block, so one parity packet repairs different losses
// at different receivers.
//
// A source symbol (shard) is a packet's app data with its length and flags
// in front, zero-padded to the stream's largest app data S:
//
//	 0                   1                   2
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        App Length             |     Flags     |  app data, padding ...
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Flags bit 0x01 is F (the packet ended a message); the rest are zero. A
// parity packet is SMH DATA with R and P, Sequence the block's first
// sequence number, and the payload
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Ver  | Mode=2|       K       |       P       |     Index     |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                             Base                              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  parity shard (3 + S bytes) ...
//
// K is the block's source symbols (1-255), P the parity symbols of its code
// (1-255, K+P <= 256) and Index which of them this is (below P); the code
// is github.com/klauspost/reedsolomon's Reed-Solomon over GF(2^8) with K
// data and P parity shards. Base is the stream's Base; Sequence - Base is a
// multiple of K. Fixed-mode DATA of a stream with FEC carries K in the
// payload header's second byte (0: no FEC; receivers that do not know FEC
// ignore it and the parity packets, whose mode they do not know).

import (
	"encoding/binary"
	"errors"

	"github.com/klauspost/reedsolomon"
)

const (
	// ModeParity is the payload header's mode of a parity packet.
	ModeParity = 2
	// ShardHeaderLen is the length and flags in front of a symbol's data.
	ShardHeaderLen = 3
	shardFinal     = 0x01
	// maxShards bounds K+P (GF(2^8)).
	maxShards = 256
)

// Parity payload errors (beyond the payload ones).
const (
	parityOK = iota
	parityShort
	parityBadVersion
	parityBadCode // K, P or Index out of range
)

// parityHeader is a parity packet's payload header.
type parityHeader struct {
	k, p, index int
	base        uint32
	shard       []byte
}

// putParityHeader writes a parity packet's payload header.
func putParityHeader(b []byte, k, p, index int, base uint32) {
	b[0] = payloadVersion<<4 | ModeParity
	b[1], b[2], b[3] = byte(k), byte(p), byte(index)
	binary.BigEndian.PutUint32(b[4:], base)
}

// parseParity decodes a parity packet's payload (SMH payload, mode 2).
func parseParity(p []byte) (ph parityHeader, status int) {
	if len(p) < PayloadHeaderLen+ShardHeaderLen {
		return ph, parityShort
	}
	if p[0]>>4 != payloadVersion || p[0]&0x0F != ModeParity {
		return ph, parityBadVersion
	}
	ph.k, ph.p, ph.index = int(p[1]), int(p[2]), int(p[3])
	ph.base = binary.BigEndian.Uint32(p[4:])
	if ph.k < 1 || ph.p < 1 || ph.k+ph.p > maxShards || ph.index >= ph.p {
		return ph, parityBadCode
	}
	ph.shard = p[PayloadHeaderLen:]
	return ph, parityOK
}

// isParityPayload says whether a DATA payload is a parity packet's.
func isParityPayload(p []byte) bool {
	return len(p) > 0 && p[0]>>4 == payloadVersion && p[0]&0x0F == ModeParity
}

// putShard writes a symbol: data's length and flags, the data, zero padding
// to len(dst).
func putShard(dst, data []byte, final bool) {
	binary.BigEndian.PutUint16(dst, uint16(len(data)))
	dst[2] = 0
	if final {
		dst[2] = shardFinal
	}
	n := copy(dst[ShardHeaderLen:], data)
	clear(dst[ShardHeaderLen+n:])
}

var errBadShard = errors.New("parity shard: length above the shard")

// shardData reads a rebuilt symbol back: its app data and F.
func shardData(shard []byte) (data []byte, final bool, err error) {
	n := int(binary.BigEndian.Uint16(shard))
	if n > len(shard)-ShardHeaderLen || shard[2]&^shardFinal != 0 {
		return nil, false, errBadShard
	}
	return shard[ShardHeaderLen : ShardHeaderLen+n], shard[2]&shardFinal != 0, nil
}

// codecs caches Reed-Solomon codes by (K, P): each is built once (its
// matrix), then encodes and decodes without building again. A sender uses a
// few sizes of the same K (it computes parity in growing chunks), a receiver
// one per stream.
type codecs struct {
	list []codec
}

type codec struct {
	k, p int
	enc  reedsolomon.Encoder
}

// maxCodecs bounds the codes kept; past it the oldest is rebuilt on use.
const maxCodecs = 8

// get returns the code for k data and p parity shards.
func (c *codecs) get(k, p int) (reedsolomon.Encoder, error) {
	for _, e := range c.list {
		if e.k == k && e.p == p {
			return e.enc, nil
		}
	}
	// One goroutine (shards are a datagram each), and no inversion cache:
	// it would keep a matrix for every loss pattern a long stream meets.
	enc, err := reedsolomon.New(k, p, reedsolomon.WithMaxGoroutines(1), reedsolomon.WithInversionCache(false))
	if err != nil {
		return nil, err
	}
	if len(c.list) == maxCodecs {
		copy(c.list, c.list[1:])
		c.list = c.list[:maxCodecs-1]
	}
	c.list = append(c.list, codec{k: k, p: p, enc: enc})
	return enc, nil
}
