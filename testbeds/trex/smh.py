"""SMH (the Sparse Multicast Header, docs/smh.md) as a scapy layer.

Works with Debian's python3-scapy (2.5) and with the scapy 2.4.3 that TRex
ships: it uses only plain field types (BitField, ByteField, ShortField,
IntField, XLongField, FieldListField, PacketListField, ConditionalField), no
newer helpers, and no f-strings in field definitions.

    from smh import SMH, SMHBlock, smh_header
    pkt = Ether()/IP()/UDP(sport=49200, dport=9471)/smh_header([1, 5, 9], seq=7)

The layer is bound to UDP destination port 9471 (SMH's default); call
bind_port(PORT) for another.

Field names (TRex's field engine finds offsets by "SMH.<name>"):
  version, type, agg, retx, cong, final, e (flag E), flag_rsv, hop, enc, rsv,
  setcount, src, sess, seq, epoch (the Transfer Epoch, only with e=1:
  docs/smh.md 2.2), fb_count, speaks_for, reporter (feedback only), ids
  (list), blocks (block bitmaps), group (group). An ABORT's fb_count is its
  reason (ABORT_REASONS; SMH.abort_reason() names it).

    smh_header([2], type="ABORT", epoch=0x1234, fb_count=3, reporter=2)
"""

from scapy.fields import (
    BitEnumField,
    BitField,
    ByteField,
    ConditionalField,
    FieldListField,
    IntField,
    PacketListField,
    ShortField,
    XLongField,
)
from scapy.layers.inet import UDP
from scapy.packet import Packet, bind_layers

DEFAULT_UDP_PORT = 9471

TYPE_DATA, TYPE_ACK, TYPE_NACK, TYPE_CNP, TYPE_ABORT = 0, 1, 2, 3, 4
TYPES = {TYPE_DATA: "DATA", TYPE_ACK: "ACK", TYPE_NACK: "NACK", TYPE_CNP: "CNP", TYPE_ABORT: "ABORT"}
TYPE_BY_NAME = dict((v, k) for k, v in TYPES.items())

# An ABORT's Count (docs/smh.md 2.3; headers.AbortReason).
ABORT_REASONS = {1: "io", 2: "no_space", 3: "read_only", 4: "permission",
                 5: "exists", 6: "checksum", 7: "bad_manifest"}

ENC_LIST, ENC_BLOCKS, ENC_GROUP = 0, 1, 2
ENCODINGS = {ENC_LIST: "list", ENC_BLOCKS: "blocks", ENC_GROUP: "group"}
ENC_BY_NAME = dict((v, k) for k, v in ENCODINGS.items())

FIXED_LEN = 14
EPOCH_LEN = 4
FEEDBACK_LEN = 20  # without an epoch
LIST_ENTRY = 2
BLOCK_ENTRY = 10
GROUP_ENTRY = 4
MAX_BLOCK = 1023


def is_feedback(t):
    return t in (TYPE_ACK, TYPE_NACK, TYPE_CNP, TYPE_ABORT)


class SMHBlock(Packet):
    """One block-bitmap entry: block index B and the 64-bit bitmap M;
    bit i (least significant first) names receiver B*64 + i."""

    name = "SMH block"
    fields_desc = [
        ShortField("block", 0),
        XLongField("bitmap", 0),
    ]

    def extract_padding(self, s):
        return b"", s


class SMH(Packet):
    name = "SMH"
    fields_desc = [
        BitField("version", 1, 4),
        BitEnumField("type", TYPE_DATA, 4, TYPES),
        BitField("agg", 0, 1),
        BitField("retx", 0, 1),
        BitField("cong", 0, 1),
        BitField("final", 0, 1),
        BitField("e", 0, 1),
        BitField("flag_rsv", 0, 3),
        ByteField("hop", 16),
        BitEnumField("enc", ENC_LIST, 4, ENCODINGS),
        BitField("rsv", 0, 4),
        # None: computed on build from ids, blocks or group.
        ShortField("setcount", None),
        ShortField("src", 0),
        ShortField("sess", 0),
        IntField("seq", 0),
        ConditionalField(IntField("epoch", 0), lambda p: p.e == 1),
        ConditionalField(ShortField("fb_count", 0), lambda p: is_feedback(p.type)),
        ConditionalField(ShortField("speaks_for", 1), lambda p: is_feedback(p.type)),
        ConditionalField(ShortField("reporter", 0), lambda p: is_feedback(p.type)),
        ConditionalField(
            FieldListField("ids", [], ShortField("id", 0), count_from=lambda p: p.setcount),
            lambda p: p.enc == ENC_LIST,
        ),
        ConditionalField(
            PacketListField("blocks", [], SMHBlock, count_from=lambda p: p.setcount),
            lambda p: p.enc == ENC_BLOCKS,
        ),
        ConditionalField(IntField("group", 0), lambda p: p.enc == ENC_GROUP),
    ]

    def post_build(self, p, pay):
        if self.setcount is None:
            if self.enc == ENC_LIST:
                n = len(self.ids or [])
            elif self.enc == ENC_BLOCKS:
                n = len(self.blocks or [])
            elif self.enc == ENC_GROUP:
                n = 1
            else:
                n = 0
            p = p[:4] + bytes(bytearray([(n >> 8) & 0xFF, n & 0xFF])) + p[6:]
        return p + pay

    def header_len(self):
        """Length of the SMH header (fixed part, feedback word, set)."""
        n = FEEDBACK_LEN if is_feedback(self.type) else FIXED_LEN
        if self.e:
            n += EPOCH_LEN
        if self.enc == ENC_LIST:
            return n + LIST_ENTRY * len(self.ids or [])
        if self.enc == ENC_BLOCKS:
            return n + BLOCK_ENTRY * len(self.blocks or [])
        if self.enc == ENC_GROUP:
            return n + GROUP_ENTRY
        raise ValueError("reserved encoding %d" % self.enc)

    def receivers(self):
        """The receiver IDs of a list or block set, ascending."""
        if self.enc == ENC_LIST:
            return list(self.ids or [])
        if self.enc == ENC_BLOCKS:
            out = []
            for b in self.blocks or []:
                for i in range(64):
                    if b.bitmap >> i & 1:
                        out.append(b.block * 64 + i)
            return out
        return []

    def abort_reason(self):
        """An ABORT's reason name ("unknown" for a reserved code), else None."""
        if self.type != TYPE_ABORT:
            return None
        return ABORT_REASONS.get(self.fb_count, "unknown")

    def mysummary(self):
        t = TYPES.get(self.type, str(self.type))
        enc = ENCODINGS.get(self.enc, "enc%d" % self.enc)
        s = "SMH %s src=%d sess=%d seq=%d %s" % (t, self.src, self.sess, self.seq, enc)
        if self.e:
            s += " epoch=0x%08x" % self.epoch
        if self.type == TYPE_ABORT:
            s += " reason=%s" % self.abort_reason()
        return s


def check_ids(ids):
    """Raise ValueError unless ids are strictly ascending 16-bit IDs."""
    prev = -1
    for i in ids:
        if not isinstance(i, int) or i < 0 or i > 0xFFFF:
            raise ValueError("receiver ID %r: want 0-65535" % (i,))
        if i <= prev:
            raise ValueError("receiver IDs must be strictly ascending, got %d after %d" % (i, prev))
        prev = i


def blocks_of(ids):
    """The block-bitmap entries of a strictly ascending ID list."""
    check_ids(ids)
    out = []
    for i in ids:
        b = i >> 6
        if out and out[-1].block == b:
            out[-1].bitmap |= 1 << (i & 63)
        else:
            out.append(SMHBlock(block=b, bitmap=1 << (i & 63)))
    return out


def smaller_encoding(ids):
    """docs/smh.md 3: block bitmaps if strictly smaller, else the ID list."""
    nblocks = len(set(i >> 6 for i in ids))
    return ENC_BLOCKS if nblocks * BLOCK_ENTRY < len(ids) * LIST_ENTRY else ENC_LIST


def smh_header(ids=(), enc=None, group=None, type=TYPE_DATA, **fields):
    """An SMH with the receiver set ids in enc ("list", "blocks", None for the
    smaller) or, with group, a group-encoded DATA header. Other keyword
    arguments set fields (hop, src, sess, seq, agg, retx, cong, final,
    fb_count, speaks_for, reporter, ...); a nonzero epoch also sets E."""
    if isinstance(type, str):
        type = TYPE_BY_NAME[type.upper()]
    if fields.get("epoch"):
        if not 0 < fields["epoch"] <= 0xFFFFFFFF:
            raise ValueError("epoch %r: want 1-4294967295" % (fields["epoch"],))
        fields.setdefault("e", 1)
    if group is not None:
        if type != TYPE_DATA:
            raise ValueError("only DATA may use the group encoding")
        return SMH(type=type, enc=ENC_GROUP, group=group, **fields)
    ids = list(ids)
    check_ids(ids)
    if not ids and type in (TYPE_DATA, TYPE_ABORT):
        raise ValueError("%s needs at least one receiver" % TYPES[type])
    if isinstance(enc, str):
        enc = ENC_BY_NAME[enc]
    if enc is None:
        enc = smaller_encoding(ids)
    if enc == ENC_LIST:
        return SMH(type=type, enc=ENC_LIST, ids=ids, **fields)
    if enc == ENC_BLOCKS:
        return SMH(type=type, enc=ENC_BLOCKS, blocks=blocks_of(ids), **fields)
    raise ValueError("encoding %r: want list, blocks or group" % (enc,))


def bind_port(port):
    """Decode UDP packets to port as SMH (9471 is bound at import)."""
    bind_layers(UDP, SMH, dport=port)


bind_port(DEFAULT_UDP_PORT)
