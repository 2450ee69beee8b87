package headers

// FlagParity (P, byte 1 mask 0x04): in DATA, the payload is a parity
// (forward error correction) repair of the block of packets starting at
// Sequence, not the packet with that sequence number; it is sent with R. In
// a NACK, a block NACK: Sequence is a block's first sequence number and
// Count the number of parity symbols the reporters still need for it
// (docs/smh.md 2, docs/feedback.md). Switches aggregate block NACKs per block
// and widen parity repairs to the reporters they suppressed.
const FlagParity Flags = 0x04

// FlagSparse (S, byte 1 mask 0x02): in DATA, the stream's receiver set
// changes per packet (chain mode: MoE dispatch), so a receiver a packet
// does not name was not sent it. Switches then credit a receiver that has
// everything they sent it with the stream's later packets; in a stream
// without S every packet is for every receiver, and they credit only a
// receiver's own ACK (docs/feedback.md).
const FlagSparse Flags = 0x02
