"""TRex stateless (STL) profile: SMH DATA or feedback through a switch under test.

In TRex:

    trex-console> start -f /path/to/testbeds/trex/smh_stl.py -m 1mpps --port 0 -d 30 \
                  -t receivers=9,domain=256,encoding=auto,size=128,sessions=4,rx_variants=8

(TRex 3.x hands `-t` to get_streams as a list of strings; both the
"key=value" and the "--key value" forms are accepted.)

Outside TRex the module imports with plain scapy (Debian's python3-scapy):
build_sessions(opts) builds the base packet of every stream and the field
engine plan as plain data, apply_plan() runs that plan in Python (what TRex's
field engine writes into the n-th packet), and pcapgen.py writes both to a
pcap for checking against the Go decoder and the switch.

Tunables (all optional):

  receivers=K      receivers per packet (DATA: the set; feedback: the set
                   of reporters / covered receivers, may be 0)              [9]
  domain=N         receiver IDs are drawn from 0..N-1 (1-65536)      [256]
  encoding=E       list, blocks, group (DATA only) or auto (the smaller
                   of list and blocks, as senders must)              [auto]
  layout=L         random (IDs anywhere in the domain) or clustered
                   (consecutive IDs from a 64-aligned start)         [random]
  type=T           data, ack, nack or cnp                            [data]
  size=B           Ethernet frame size including the 4-byte FCS, as TRex
                   counts it; the payload is at least 16 bytes (for
                   latency), so large sets make the frame larger     [128]
  sessions=S       streams, one per SMH Session ID                   [1]
  source=ID        SMH Source ID                                     [1]
  session_base=ID  Session ID of the first stream                    [1]
  seq_start=N      first sequence number                             [0]
  vary_seq=0|1     field engine: sequence number +1 per packet       [1]
  rx_variants=V    field engine: V receiver sets per stream, each the
                   base set shifted by v IDs (list), v blocks (blocks)
                   or the group ID + v (group), v = 0..V-1 in turn   [1]
  group_base=G     group ID of session s is G + s*V (encoding=group) [1000]
  hop=H            Hop Limit                                         [16]
  seed=N           seed of the random receiver sets                  [1]
  pps=R            rate per stream before TRex's multiplier          [1000]
  latency_pps=R    add a latency stream per session at R pps (0: off) [0]
  latency_pg=ID    pg_id of the first latency stream; stream s on port
                   p uses ID + 64*p + s                              [100]
  flow_stats=0|1   per-stream counters on the data streams, pg_id
                   1 + 64*p + s                                      [0]
  src_ip, dst_ip   outer IPv4 addresses (swapped on odd ports)  [16.0.0.1, 48.0.0.1]
  src_mac, dst_mac Ethernet addresses (TRex replaces them with the port's
                   trex_cfg.yaml values unless told otherwise)
                                              [02:00:00:00:00:01, 02:00:00:00:00:02]
  udp_port=P       SMH's UDP destination port                        [9471]
"""

import argparse
import os
import random
import struct
import sys
import zlib

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

import smh  # noqa: E402

# TRex's Python API: only inside TRex (v3 names it trex.stl.api, older
# releases trex_stl_lib.api). Without it the module still builds packets.
try:
    from trex.stl.api import (  # type: ignore
        STLFlowLatencyStats,
        STLFlowStats,
        STLPktBuilder,
        STLScVmRaw,
        STLStream,
        STLTXCont,
        STLVmFixIpv4,
        STLVmFlowVar,
        STLVmWrFlowVar,
    )

    HAVE_TREX = True
except ImportError:
    try:
        from trex_stl_lib.api import (  # type: ignore
            STLFlowLatencyStats,
            STLFlowStats,
            STLPktBuilder,
            STLScVmRaw,
            STLStream,
            STLTXCont,
            STLVmFixIpv4,
            STLVmFlowVar,
            STLVmWrFlowVar,
        )

        HAVE_TREX = True
    except ImportError:
        HAVE_TREX = False

MIN_PAYLOAD = 16  # TRex latency writes its 16-byte signature at the end
FCS = 4
MAX_LATENCY_PER_PORT = 64


class ProfileError(ValueError):
    """A tunable is out of range or the combination cannot be built."""


def _int(name, lo, hi):
    def conv(s):
        try:
            v = int(str(s), 0)
        except ValueError:
            raise argparse.ArgumentTypeError("%s=%r: not an integer" % (name, s))
        if v < lo or v > hi:
            raise argparse.ArgumentTypeError("%s=%d: want %d-%d" % (name, v, lo, hi))
        return v

    return conv


def _float(name, lo):
    def conv(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError("%s=%r: not a number" % (name, s))
        if v < lo:
            raise argparse.ArgumentTypeError("%s=%s: want at least %s" % (name, v, lo))
        return v

    return conv


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ProfileError("smh_stl tunables: " + message)


def make_parser():
    p = _Parser(prog="smh_stl.py", add_help=False, description="SMH TRex profile tunables")
    a = p.add_argument
    a("--receivers", type=_int("receivers", 0, 65535), default=9)
    a("--domain", type=_int("domain", 1, 65536), default=256)
    a("--encoding", choices=["auto", "list", "blocks", "group"], default="auto")
    a("--layout", choices=["random", "clustered"], default="random")
    a("--type", choices=["data", "ack", "nack", "cnp"], default="data")
    a("--size", type=_int("size", 64, 9216), default=128)
    a("--sessions", type=_int("sessions", 1, 4096), default=1)
    a("--source", type=_int("source", 0, 65535), default=1)
    a("--session_base", type=_int("session_base", 0, 65535), default=1)
    a("--seq_start", type=_int("seq_start", 0, 0xFFFFFFFF), default=0)
    a("--vary_seq", type=_int("vary_seq", 0, 1), default=1)
    a("--rx_variants", type=_int("rx_variants", 1, 65536), default=1)
    a("--group_base", type=_int("group_base", 0, 0xFFFFFFFF), default=1000)
    a("--hop", type=_int("hop", 0, 255), default=16)
    a("--seed", type=_int("seed", 0, 2**63), default=1)
    a("--pps", type=_float("pps", 0.001), default=1000.0)
    a("--latency_pps", type=_float("latency_pps", 0), default=0.0)
    a("--latency_pg", type=_int("latency_pg", 0, 2**31), default=100)
    a("--flow_stats", type=_int("flow_stats", 0, 1), default=0)
    a("--src_ip", default="16.0.0.1")
    a("--dst_ip", default="48.0.0.1")
    a("--src_mac", default="02:00:00:00:00:01")
    a("--dst_mac", default="02:00:00:00:00:02")
    a("--udp_port", type=_int("udp_port", 1, 65535), default=smh.DEFAULT_UDP_PORT)
    return p


def normalize_tunables(tunables):
    """Turn TRex's tunables (a list of "key=value", "--key=value" or
    "--key value" strings, a "key=value,key=value" string, or a dict) into
    argv for make_parser()."""
    if tunables is None:
        return []
    if isinstance(tunables, dict):
        return ["--%s=%s" % (k, v) for k, v in tunables.items()]
    if isinstance(tunables, str):
        tunables = [tunables]
    argv = []
    for t in tunables:
        t = str(t)
        if t.startswith("-"):
            argv.append(t)
            continue
        for part in t.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                # the value of a preceding "--key"
                argv.append(part)
                continue
            argv.append("--" + part)
    return argv


def parse_options(tunables=(), **kw):
    """Parse tunables (see normalize_tunables) plus keyword overrides and
    check the combination; raises ProfileError with a clear message."""
    argv = normalize_tunables(tunables)
    for k, v in kw.items():
        if k in ("direction", "port_id"):
            continue
        argv.append("--%s=%s" % (k, v))
    opts = make_parser().parse_args(argv)
    check_options(opts)
    return opts


def check_options(o):
    if o.type != "data" and o.encoding == "group":
        raise ProfileError("encoding=group is for DATA only (docs/smh.md 3)")
    if o.type == "data" and o.encoding != "group" and o.receivers < 1:
        raise ProfileError("DATA needs receivers >= 1")
    if o.receivers > o.domain:
        raise ProfileError("receivers=%d is more than domain=%d" % (o.receivers, o.domain))
    if o.latency_pps > 0 and o.sessions > MAX_LATENCY_PER_PORT:
        raise ProfileError(
            "latency_pps needs sessions <= %d (one latency pg_id per session and port)" % MAX_LATENCY_PER_PORT
        )
    for name in ("src_mac", "dst_mac"):
        v = getattr(o, name)
        parts = v.split(":")
        if len(parts) != 6 or any(len(x) != 2 for x in parts):
            raise ProfileError("%s=%r: want aa:bb:cc:dd:ee:ff" % (name, v))
        try:
            [int(x, 16) for x in parts]
        except ValueError:
            raise ProfileError("%s=%r: want aa:bb:cc:dd:ee:ff" % (name, v))
    for name in ("src_ip", "dst_ip"):
        v = getattr(o, name)
        parts = v.split(".")
        ok = len(parts) == 4
        try:
            ok = ok and all(0 <= int(x) <= 255 for x in parts)
        except ValueError:
            ok = False
        if not ok:
            raise ProfileError("%s=%r: want an IPv4 address" % (name, v))


def udp_source_port(source, session):
    """Flow entropy (docs/smh.md 1): a hash of (Source ID, Session ID) in
    49152-65535, so one session stays on one ECMP path."""
    return 49152 + zlib.crc32(struct.pack("!HH", source, session)) % 16384


def _base_ids(o, rng, unit):
    """A strictly ascending base set with room to shift it V-1 units up."""
    room = o.domain - unit * (o.rx_variants - 1)
    k = o.receivers
    if k == 0:
        return []
    if room < k:
        raise ProfileError(
            "rx_variants=%d leaves %d IDs of domain=%d for %d receivers: "
            "raise domain or lower rx_variants" % (o.rx_variants, max(room, 0), o.domain, k)
        )
    if o.layout == "random":
        return sorted(rng.sample(range(room), k))
    starts = (room - k) // 64 + 1
    start = rng.randrange(starts) * 64
    return list(range(start, start + k))


def _resolve_encoding(o, ids):
    if o.encoding == "group":
        return smh.ENC_GROUP
    if o.encoding == "list":
        return smh.ENC_LIST
    if o.encoding == "blocks":
        return smh.ENC_BLOCKS
    return smh.smaller_encoding(ids)


def build_sessions(opts, port_id=0):
    """The streams of one port, as plain data:

    a list of dicts with session, sport, enc, base_ids (ascending), group
    (group encoding), unit (IDs one rx variant shifts by), pkt (scapy
    Ether/IP/UDP/SMH/Raw), smh_offset (of the SMH in the frame), plan
    (the field engine, see apply_plan), pg_id and latency_pg_id (or None).
    """
    o = opts
    ftype = smh.TYPE_BY_NAME[o.type.upper()]
    src_ip, dst_ip = o.src_ip, o.dst_ip
    if port_id % 2 == 1:
        src_ip, dst_ip = dst_ip, src_ip
    out = []
    for s in range(o.sessions):
        sess = (o.session_base + s) & 0xFFFF
        rng = random.Random(o.seed * 1000003 + s)
        # An rx variant shifts block indexes by whole blocks (so bitmaps
        # stay), list IDs by one. auto resolves the encoding of a unit-1
        # draw first; if that is blocks, the set is redrawn with room for
        # whole-block shifts (a list shifted by 64 stays valid too).
        if o.encoding in ("blocks",):
            unit = 64
        elif o.encoding == "auto":
            probe = _base_ids(o, random.Random(o.seed * 1000003 + s), 1)
            unit = 64 if _resolve_encoding(o, probe) == smh.ENC_BLOCKS else 1
        else:
            unit = 1
        ids = _base_ids(o, rng, unit)
        enc = _resolve_encoding(o, ids)
        fields = dict(hop=o.hop, src=o.source, sess=sess, seq=o.seq_start)
        group = None
        if ftype != smh.TYPE_DATA:
            k = len(ids)
            fields["speaks_for"] = max(1, k)
            fields["agg"] = 1 if k > 0 else 0
            fields["reporter"] = 0xFFFF
            fields["fb_count"] = {"ack": 0, "nack": 1, "cnp": 1}[o.type]
            hdr = smh.smh_header(ids, enc=enc, type=ftype, **fields)
        elif enc == smh.ENC_GROUP:
            group = (o.group_base + s * o.rx_variants) & 0xFFFFFFFF
            if group + o.rx_variants - 1 > 0xFFFFFFFF:
                raise ProfileError("group_base + sessions*rx_variants exceeds 32 bits")
            hdr = smh.smh_header(group=group, type=ftype, **fields)
        else:
            hdr = smh.smh_header(ids, enc=enc, type=ftype, **fields)
        sport = udp_source_port(o.source, sess)
        l234 = (
            Ether(src=o.src_mac, dst=o.dst_mac)
            / IP(src=src_ip, dst=dst_ip, ttl=64, id=0)
            / UDP(sport=sport, dport=o.udp_port, chksum=0)
        )
        smh_off = len(l234)
        hlen = hdr.header_len()
        pay_len = max(MIN_PAYLOAD, o.size - FCS - smh_off - hlen)
        payload = bytes(bytearray((i * 7 + s) & 0xFF for i in range(pay_len)))
        pkt = l234 / hdr / Raw(load=payload)
        # UDP checksum 0 (allowed over IPv4, docs/smh.md 1): the field
        # engine changes SMH bytes after the checksum would be computed.
        pkt[UDP].chksum = 0
        plan = _plan(o, enc, ids, group, smh_off, ftype)
        pg = 1 + 64 * port_id + s if o.flow_stats else None
        lpg = o.latency_pg + 64 * port_id + s if o.latency_pps > 0 else None
        out.append(
            dict(
                session=sess,
                sport=sport,
                type=ftype,
                enc=enc,
                base_ids=ids,
                group=group,
                unit=unit,
                pkt=pkt,
                smh_offset=smh_off,
                header_len=hlen,
                plan=plan,
                pg_id=pg,
                latency_pg_id=lpg,
            )
        )
    return out


def _plan(o, enc, ids, group, smh_off, ftype):
    """The field engine as data: flow variables and writes with numeric
    offsets (and TRex's "Layer.field" name where there is one)."""
    vars_, writes = [], []
    if o.vary_seq:
        vars_.append(dict(name="seq", min=0, max=0xFFFFFFFF, init=o.seq_start, size=4, op="inc", step=1))
        writes.append(dict(var="seq", offset=smh_off + 10, trex_offset="SMH.seq", size=4, add=0))
    if o.rx_variants > 1:
        set_off = smh_off + (smh.FEEDBACK_LEN if smh.is_feedback(ftype) else smh.FIXED_LEN)
        if enc == smh.ENC_GROUP:
            vars_.append(dict(name="rx", min=0, max=o.rx_variants - 1, init=0, size=4, op="inc", step=1))
            writes.append(dict(var="rx", offset=set_off, trex_offset="SMH.group", size=4, add=group))
        elif enc == smh.ENC_LIST:
            vars_.append(dict(name="rx", min=0, max=o.rx_variants - 1, init=0, size=2, op="inc", step=1))
            for i, rid in enumerate(ids):
                writes.append(dict(var="rx", offset=set_off + 2 * i, trex_offset=None, size=2, add=rid))
        else:
            vars_.append(dict(name="rx", min=0, max=o.rx_variants - 1, init=0, size=2, op="inc", step=1))
            for j, b in enumerate(smh.blocks_of(ids)):
                writes.append(dict(var="rx", offset=set_off + 10 * j, trex_offset=None, size=2, add=b.block))
    for w in writes:
        if w["add"] > 0x7FFFFFFF:
            raise ProfileError("field engine add_val %d does not fit TRex's signed 32 bits" % w["add"])
    return dict(vars=vars_, writes=writes)


def var_value(var, n):
    """The value TRex's field engine gives var in the n-th packet (n = 0 is
    the first), taking the first packet to carry init and inc to wrap from
    max to min."""
    span = var["max"] - var["min"] + 1
    pos = (var["init"] - var["min"] + n * var["step"]) % span
    if var["op"] == "dec":
        pos = (var["init"] - var["min"] - n * var["step"]) % span
    elif var["op"] != "inc":
        raise ValueError("only inc and dec are reproducible, not %r" % var["op"])
    return var["min"] + pos


def apply_plan(frame, plan, n):
    """The bytes of the n-th packet of a stream whose base frame is frame."""
    b = bytearray(frame)
    values = dict((v["name"], var_value(v, n)) for v in plan["vars"])
    for w in plan["writes"]:
        size = w["size"]
        val = (values[w["var"]] + w["add"]) % (1 << (8 * size))
        b[w["offset"] : w["offset"] + size] = val.to_bytes(size, "big")
    return bytes(b)


def expected_fields(sess_info, opts, n):
    """What the n-th packet of a stream must decode to, from the model (not
    from the bytes): seq, receivers, group."""
    o = opts
    seq = (o.seq_start + n) & 0xFFFFFFFF if o.vary_seq else o.seq_start
    shift = n % o.rx_variants if o.rx_variants > 1 else 0
    ids = [i + shift * sess_info["unit"] for i in sess_info["base_ids"]]
    group = None
    if sess_info["group"] is not None:
        group = sess_info["group"] + shift
    return dict(seq=seq, receivers=ids, group=group, shift=shift)


def _trex_vm(plan):
    instr = []
    for v in plan["vars"]:
        instr.append(
            STLVmFlowVar(
                name=v["name"],
                min_value=v["min"],
                max_value=v["max"],
                init_value=v["init"],
                size=v["size"],
                op=v["op"],
                step=v["step"],
            )
        )
    for w in plan["writes"]:
        instr.append(
            STLVmWrFlowVar(fv_name=w["var"], pkt_offset=w["trex_offset"] or w["offset"], add_val=w["add"], is_big=True)
        )
    if instr:
        instr.append(STLVmFixIpv4(offset="IP"))
    return STLScVmRaw(instr)


class SMHProfile(object):
    """TRex STL profile of SMH streams; see the module docstring."""

    def get_streams(self, port_id=0, tunables=(), **kw):
        if not HAVE_TREX:
            raise RuntimeError(
                "smh_stl.get_streams needs TRex's Python API (trex.stl.api); "
                "outside TRex use build_sessions() or pcapgen.py"
            )
        port_id = kw.pop("direction", port_id)
        opts = parse_options(tunables, **kw)
        streams = []
        for si in build_sessions(opts, port_id):
            pkt = STLPktBuilder(pkt=si["pkt"], vm=_trex_vm(si["plan"]))
            kwargs = dict(packet=pkt, mode=STLTXCont(pps=opts.pps), name="smh-s%d" % si["session"])
            if si["pg_id"] is not None:
                kwargs["flow_stats"] = STLFlowStats(pg_id=si["pg_id"])
            streams.append(STLStream(**kwargs))
            if si["latency_pg_id"] is not None:
                lat = STLPktBuilder(pkt=si["pkt"], vm=_trex_vm(si["plan"]))
                streams.append(
                    STLStream(
                        packet=lat,
                        mode=STLTXCont(pps=opts.latency_pps),
                        flow_stats=STLFlowLatencyStats(pg_id=si["latency_pg_id"]),
                        name="smh-lat-s%d" % si["session"],
                    )
                )
        return streams


def register():
    return SMHProfile()
