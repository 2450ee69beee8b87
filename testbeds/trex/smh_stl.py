"""TRex stateless (STL) profile: SMH DATA or feedback through a switch under test.

In TRex:

    trex-console> start -f /path/to/testbeds/trex/smh_stl.py -m 1mpps --port 0 -d 30 \
                  -t receivers=9,domain=256,encoding=auto,size=128,sessions=4,rx_variants=8

(TRex 3.x hands `-t` to get_streams twice: decoded into keyword arguments,
where true becomes True and 7 an int, and as a list of "--key value"
strings; the profile accepts both, and "key=value" strings.)

Outside TRex the module imports with plain scapy (Debian's python3-scapy):
build_sessions(opts) builds the base packet of every stream and the field
engine plan as plain data, apply_plan() runs that plan in Python (what TRex's
field engine writes into the n-th packet), and pcapgen.py writes both to a
pcap for checking against the Go decoder and the switch.

Tunables: `start -f smh_stl.py -t --help` in TRex's console (or
`python3 smh_stl.py --help` anywhere) lists every one with its default;
make_parser() below is the list.

Ports and pg_ids. TRex loads the profile once per port and passes
port_id (the port) and direction (port_id % 2 from the console, 0 from
STLProfile.load unless given: TRex's client/server side). direction only
swaps the outer IPv4 addresses, as in TRex's own profiles; everything that
must differ between ports follows port_id:

  - data session s on port p has Session ID session_base + p*sessions + s,
    so no two streams of any ports send the same (source, session);
  - its latency stream (latency_pps > 0) has the same Session ID under the
    Source ID latency_source, so no (source, session, sequence) is sent by
    a data and a latency stream;
  - flow-stats pg_id: flow_pg + p*sessions + s; latency pg_id:
    latency_pg + p*sessions + s. The two ranges are checked to be disjoint
    for every port TRex can have (32), and each port's count against TRex's
    limits (1023 flow-stats and 128 latency pg_ids; TRex counts them over
    all ports, so 4 ports x 32 sessions is the most latency it runs).

MACs: without src_mac/dst_mac the frames leave with the port's MACs from
trex_cfg.yaml (TRex fills them in); a tunable sets one explicitly.

Feedback (type=ack|nack|cnp): without reply, one feedback stream per
session as a downstream switch's aggregate would send it (its set names the
receivers it speaks for). With reply=1 the streams answer the DATA that
the same tunables send on data_port: per session and per receiver of that
DATA's set, that receiver's own ACK (Speaks For 1, no set), NACK (its ID as
the set, Count 1) or CNP (severity 1), the sequence advancing by ack_every
per packet at pps/ack_every, starting reply_delay_ms after the port starts,
so a switch that forwarded the DATA aggregates them (docs/feedback.md).
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
# TRex's limits (trex-core src/trex_defs.h): ports, flow-stats counters
# (MAX_FLOW_STATS) and latency counters (MAX_FLOW_STATS_PAYLOAD), the
# counters shared by every port.
TREX_MAX_PORTS = 32
TREX_MAX_FLOW_STATS = 1023
TREX_MAX_LATENCY = 128
PG_ID_MAX = 0xFFFFFFFF


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


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(name):
    """0/1 as the profile documents them, and what TRex's console turns
    them into (-t vary_seq=true arrives as the bool True, "True" in the
    list form)."""

    def conv(s):
        t = str(s).strip().lower()
        if t in _TRUE:
            return 1
        if t in _FALSE:
            return 0
        raise argparse.ArgumentTypeError("%s=%r: want 0 or 1 (true/false)" % (name, s))

    return conv


def _mac(name):
    def conv(s):
        parts = str(s).split(":")
        ok = len(parts) == 6 and all(len(x) == 2 for x in parts)
        try:
            ok = ok and all(0 <= int(x, 16) <= 255 for x in parts)
        except ValueError:
            ok = False
        if not ok:
            raise argparse.ArgumentTypeError("%s=%r: want aa:bb:cc:dd:ee:ff" % (name, s))
        return str(s).lower()

    return conv


def _ipv4(name):
    def conv(s):
        parts = str(s).split(".")
        ok = len(parts) == 4
        try:
            ok = ok and all(0 <= int(x) <= 255 for x in parts)
        except ValueError:
            ok = False
        if not ok:
            raise argparse.ArgumentTypeError("%s=%r: want an IPv4 address" % (name, s))
        return str(s)

    return conv


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ProfileError("smh_stl tunables: " + message)


def make_parser():
    """Every tunable with its default; --help prints them (and exits, which
    is how TRex's `-t --help` ends)."""
    p = _Parser(
        prog="smh_stl.py",
        description="SMH TRex profile tunables (-t key=value,... or -t --key value ...)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    a = p.add_argument
    a("--receivers", type=_int("receivers", 0, 65535), default=9,
      help="receivers per packet (DATA: the set; feedback: reporters / covered receivers, may be 0)")
    a("--domain", type=_int("domain", 1, 65535), default=256, help="receiver IDs are drawn from 0..domain-1")
    a("--encoding", choices=["auto", "list", "blocks", "group"], default="auto",
      help="set encoding; auto: the smaller of list and blocks, as senders must; group: DATA only")
    a("--layout", choices=["random", "clustered"], default="random",
      help="random: IDs anywhere in the domain; clustered: consecutive IDs from a 64-aligned start")
    a("--type", choices=["data", "ack", "nack", "cnp"], default="data", help="SMH type")
    a("--size", type=_int("size", 64, 9216), default=128,
      help="frame size with the 4-byte FCS; the payload is at least 16 bytes (latency)")
    a("--sessions", type=_int("sessions", 1, 4096), default=1, help="streams per port, one per Session ID")
    a("--source", type=_int("source", 0, 65535), default=65535,
      help="SMH Source ID; outside the domain (dut-switch.yaml routes 65280-65535 towards TRex port 0)")
    a("--session_base", type=_int("session_base", 0, 65535), default=1,
      help="Session ID of port 0's first stream; port p's start at session_base + p*sessions")
    a("--seq_start", type=_int("seq_start", 0, 0xFFFFFFFF), default=0, help="first sequence number")
    a("--vary_seq", type=_bool("vary_seq"), default=1, help="field engine: sequence number +1 per packet")
    a("--rx_variants", type=_int("rx_variants", 1, 65536), default=1,
      help="field engine: V receiver sets per stream, the base set shifted by v IDs (list), "
      "v blocks (blocks) or the group ID + v (group), v = 0..V-1 in turn")
    a("--group_base", type=_int("group_base", 0, 0xFFFFFFFF), default=1000,
      help="encoding=group: the group of session index s is group_base + s*rx_variants")
    a("--hop", type=_int("hop", 0, 255), default=16, help="Hop Limit")
    a("--seed", type=_int("seed", 0, 2**63), default=1, help="seed of the random receiver sets")
    a("--pps", type=_float("pps", 0.001), default=1000.0, help="rate per stream before TRex's multiplier")
    a("--latency_pps", type=_float("latency_pps", 0), default=0.0,
      help="a latency stream per session at this fixed rate (0: none)")
    a("--latency_source", type=_int("latency_source", 0, 65535), default=65534,
      help="Source ID of the latency streams (their own identity: same Session IDs, another source)")
    a("--latency_pg", type=_int("latency_pg", 0, PG_ID_MAX), default=65536,
      help="pg_id of port 0's first latency stream; port p's start at latency_pg + p*sessions")
    a("--flow_stats", type=_bool("flow_stats"), default=0, help="per-stream counters on the data streams")
    a("--flow_pg", type=_int("flow_pg", 0, PG_ID_MAX), default=1,
      help="flow-stats pg_id of port 0's first stream; port p's start at flow_pg + p*sessions")
    a("--reply", type=_bool("reply"), default=0,
      help="feedback types: answer the DATA of data_port per receiver (see the module's docstring)")
    a("--data_port", type=_int("data_port", 0, TREX_MAX_PORTS - 1), default=0,
      help="reply=1: the port whose DATA (same tunables, type=data) is answered")
    a("--ack_every", type=_int("ack_every", 1, 1 << 20), default=32,
      help="reply=1: sequence numbers per feedback packet (rate pps/ack_every per receiver)")
    a("--reply_delay_ms", type=_float("reply_delay_ms", 0), default=100.0,
      help="reply=1: the feedback starts this long after the port, behind the DATA it answers")
    a("--src_ip", type=_ipv4("src_ip"), default="16.0.0.1", help="outer IPv4 source (swapped with dst_ip in direction 1)")
    a("--dst_ip", type=_ipv4("dst_ip"), default="48.0.0.1", help="outer IPv4 destination")
    a("--src_mac", type=_mac("src_mac"), default=None,
      help="Ethernet source (default: the port's src_mac, from trex_cfg.yaml)%(default).0s")
    a("--dst_mac", type=_mac("dst_mac"), default=None,
      help="Ethernet destination (default: the port's dest_mac, from trex_cfg.yaml)%(default).0s")
    a("--udp_port", type=_int("udp_port", 1, 65535), default=smh.DEFAULT_UDP_PORT, help="SMH's UDP destination port")
    return p


# Placeholder MACs for packets built outside TRex (pcapgen.py) when no
# tunable sets them: trex_cfg.yaml's port 0 and the switch's p0.
PCAP_SRC_MAC = "02:00:00:00:00:01"
PCAP_DST_MAC = "02:00:00:00:00:02"


def _kwarg_value(v):
    if v is True:
        return "1"
    if v is False:
        return "0"
    return str(v)


def normalize_tunables(tunables):
    """Turn TRex's tunables (a list of "key=value", "--key=value" or
    "--key value" strings, a "key=value,key=value" string, or a dict) into
    argv for make_parser()."""
    if tunables is None:
        return []
    if isinstance(tunables, dict):
        return ["--%s=%s" % (k, _kwarg_value(v)) for k, v in tunables.items()]
    if isinstance(tunables, str):
        tunables = [tunables]
    argv = []
    for t in tunables:
        t = _kwarg_value(t)
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
    """Parse tunables (see normalize_tunables) plus keyword arguments (TRex's
    decoded -t: ints, floats, bools) and check the combination; raises
    ProfileError with a clear message, and SystemExit after printing the
    tunables for -h/--help."""
    argv = normalize_tunables(tunables)
    for k, v in kw.items():
        if k in ("direction", "port_id"):
            continue
        argv.append("--%s=%s" % (k, _kwarg_value(v)))
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
    if o.source < o.domain:
        raise ProfileError(
            "source=%d is a receiver ID of domain=%d (0-%d): feedback goes back by the Source ID's route, "
            "so it must not be a receiver; use a source >= domain (default 65535)" % (o.source, o.domain, o.domain - 1)
        )
    if o.latency_pps > 0:
        if o.latency_source == o.source:
            raise ProfileError("latency_source=%d is the data streams' source: latency streams need their own" % o.source)
        if o.latency_source < o.domain:
            raise ProfileError("latency_source=%d is a receiver ID of domain=%d" % (o.latency_source, o.domain))
        if o.sessions > TREX_MAX_LATENCY:
            raise ProfileError(
                "latency_pps needs sessions <= %d: one latency pg_id per session, and TRex has %d "
                "(over all ports)" % (TREX_MAX_LATENCY, TREX_MAX_LATENCY)
            )
    if o.flow_stats and o.sessions > TREX_MAX_FLOW_STATS:
        raise ProfileError(
            "flow_stats=1 needs sessions <= %d: one pg_id per session, and TRex has %d (over all ports)"
            % (TREX_MAX_FLOW_STATS, TREX_MAX_FLOW_STATS)
        )
    if o.flow_stats and o.latency_pps > 0:
        span = TREX_MAX_PORTS * o.sessions
        f0, f1 = o.flow_pg, o.flow_pg + span - 1
        l0, l1 = o.latency_pg, o.latency_pg + span - 1
        if f0 <= l1 and l0 <= f1:
            raise ProfileError(
                "flow_pg=%d and latency_pg=%d: over %d ports of %d sessions the flow-stats pg_ids %d-%d and "
                "the latency pg_ids %d-%d overlap; move latency_pg above %d" % (o.flow_pg, o.latency_pg,
                                                                             TREX_MAX_PORTS, o.sessions, f0, f1, l0, l1, f1)
            )
    for name, base in (("flow_pg", o.flow_pg), ("latency_pg", o.latency_pg)):
        if base + TREX_MAX_PORTS * o.sessions - 1 > PG_ID_MAX:
            raise ProfileError("%s=%d: pg_ids of %d ports x %d sessions pass 2^32" % (name, base, TREX_MAX_PORTS, o.sessions))
    if o.reply:
        if o.type == "data":
            raise ProfileError("reply=1 is for type=ack, nack or cnp: it answers DATA")
        if o.rx_variants != 1:
            raise ProfileError("reply=1 needs rx_variants=1: a receiver answers one fixed set")
        if o.receivers < 1:
            raise ProfileError("reply=1 needs receivers >= 1 (the DATA's set)")
        if o.latency_pps > 0 or o.flow_stats:
            raise ProfileError("reply=1 streams carry no latency or flow stats (they answer the DATA's)")
        if o.ack_every > o.pps * o.reply_delay_ms / 1000.0 + 1:
            raise ProfileError(
                "ack_every=%d is more than the %g packets a DATA stream sends in reply_delay_ms=%g at pps=%g: "
                "the first feedback would acknowledge DATA not yet sent; raise reply_delay_ms"
                % (o.ack_every, o.pps * o.reply_delay_ms / 1000.0, o.reply_delay_ms, o.pps)
            )


def session_ids(o, port_id):
    """The Session IDs of a port's streams (session_base + port_id*sessions + s)."""
    first = o.session_base + port_id * o.sessions
    if first + o.sessions - 1 > 0xFFFF:
        raise ProfileError(
            "port %d with session_base=%d and sessions=%d needs Session IDs up to %d: more than 65535; "
            "lower session_base or sessions" % (port_id, o.session_base, o.sessions, first + o.sessions - 1)
        )
    return [first + s for s in range(o.sessions)]


def pg_ids(o, port_id):
    """(flow-stats pg_ids or Nones, latency pg_ids or Nones) of a port's streams."""
    base = port_id * o.sessions
    flow = [o.flow_pg + base + s if o.flow_stats else None for s in range(o.sessions)]
    lat = [o.latency_pg + base + s if o.latency_pps > 0 else None for s in range(o.sessions)]
    return flow, lat


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


def _draw_set(o, s):
    """Session index s's base receiver set, its encoding and the unit one
    rx variant shifts IDs by. An rx variant shifts block indexes by whole
    blocks (so bitmaps stay), list IDs by one. auto resolves the encoding
    of a unit-1 draw first; if that is blocks, the set is redrawn with room
    for whole-block shifts (a list shifted by 64 stays valid too)."""
    if o.encoding == "blocks":
        unit = 64
    elif o.encoding == "auto":
        probe = _base_ids(o, random.Random(o.seed * 1000003 + s), 1)
        unit = 64 if _resolve_encoding(o, probe) == smh.ENC_BLOCKS else 1
    else:
        unit = 1
    ids = _base_ids(o, random.Random(o.seed * 1000003 + s), unit)
    return ids, _resolve_encoding(o, ids), unit


def _frame(o, s, source, sess, hdr, src_ip, dst_ip):
    """Ether/IP/UDP/hdr/payload for one stream, and the SMH's offset. MACs
    the tunables do not set are left to TRex (the port's trex_cfg.yaml
    values): scapy marks them unset, which STLStream reads as "not the
    packet's"; plain scapy builds them with the PCAP_* placeholders."""
    eth = Ether(src=o.src_mac or PCAP_SRC_MAC, dst=o.dst_mac or PCAP_DST_MAC)
    l234 = eth / IP(src=src_ip, dst=dst_ip, ttl=64, id=0) / UDP(
        sport=udp_source_port(source, sess), dport=o.udp_port, chksum=0
    )
    smh_off = len(l234)
    hlen = hdr.header_len()
    pay_len = max(MIN_PAYLOAD, o.size - FCS - smh_off - hlen)
    payload = bytes(bytearray((i * 7 + s) & 0xFF for i in range(pay_len)))
    pkt = l234 / hdr / Raw(load=payload)
    # UDP checksum 0 (allowed over IPv4, docs/smh.md 1): the field engine
    # changes SMH bytes after the checksum would be computed.
    pkt[UDP].chksum = 0
    return pkt, smh_off, hlen


def trex_packet(o, pkt):
    """pkt as TRex should get it: a copy without the MACs no tunable set,
    so TRex sends the port's own (stream flags 0 instead of 3)."""
    p = pkt.copy()
    if o.src_mac is None:
        del p[Ether].src
    if o.dst_mac is None:
        del p[Ether].dst
    return p


def build_sessions(opts, port_id=0, direction=None):
    """The streams of one port, as plain data: a list of dicts with

      role       data, latency (the data stream's latency twin), feedback
                 (an aggregate-like stream per session) or reply (one
                 receiver's own feedback, reply=1)
      source, session, sport, type, enc, base_ids (ascending: the set, or
      for reply the receiver's own [r] where the type carries one), group
      (group encoding), unit (IDs one rx variant shifts by), reporter,
      pkt (scapy Ether/IP/UDP/SMH/Raw, placeholder MACs), smh_offset,
      header_len, plan (the field engine, see apply_plan), seq0 and
      seq_step (the sequence number of packet n is seq0 + n*seq_step),
      pps (before TRex's multiplier), isg_us (start delay), pg_id (flow
      stats) and latency_pg_id (latency streams), None when off.

    direction (TRex's: 0 client side, 1 server side; default port_id % 2,
    what the console passes) swaps the outer IPv4 addresses; port_id picks
    Session IDs and pg_ids.
    """
    o = opts
    if not 0 <= port_id < TREX_MAX_PORTS:
        raise ProfileError("port_id %d: TRex has ports 0-%d" % (port_id, TREX_MAX_PORTS - 1))
    if direction is None:
        direction = port_id % 2
    src_ip, dst_ip = o.src_ip, o.dst_ip
    if direction % 2 == 1:
        src_ip, dst_ip = dst_ip, src_ip
    if o.reply:
        return _reply_streams(o, port_id, src_ip, dst_ip)
    ftype = smh.TYPE_BY_NAME[o.type.upper()]
    sessions = session_ids(o, port_id)
    flow_pgs, lat_pgs = pg_ids(o, port_id)
    out = []
    for s, sess in enumerate(sessions):
        ids, enc, unit = _draw_set(o, s)
        group = None
        if ftype != smh.TYPE_DATA:
            role = "feedback"
            k = len(ids)
            fb = dict(speaks_for=max(1, k), agg=1 if k > 0 else 0, reporter=0xFFFF,
                      fb_count={"ack": 0, "nack": 1, "cnp": 1}[o.type])
        else:
            role = "data"
            fb = {}
            if enc == smh.ENC_GROUP:
                group = (o.group_base + s * o.rx_variants) & 0xFFFFFFFF
                if group + o.rx_variants - 1 > 0xFFFFFFFF:
                    raise ProfileError("group_base + sessions*rx_variants exceeds 32 bits")
        roles = [(role, o.source, o.pps, flow_pgs[s], None)]
        if lat_pgs[s] is not None:
            roles.append(("latency", o.latency_source, o.latency_pps, None, lat_pgs[s]))
        for r, source, pps, pg, lpg in roles:
            fields = dict(hop=o.hop, src=source, sess=sess, seq=o.seq_start, **fb)
            if group is not None:
                hdr = smh.smh_header(group=group, type=ftype, **fields)
            else:
                hdr = smh.smh_header(ids, enc=enc, type=ftype, **fields)
            pkt, smh_off, hlen = _frame(o, s, source, sess, hdr, src_ip, dst_ip)
            out.append(dict(
                role=r, source=source, session=sess, sport=pkt[UDP].sport, type=ftype, enc=enc,
                base_ids=ids, group=group, unit=unit, reporter=fb.get("reporter", 0), pkt=pkt,
                smh_offset=smh_off, header_len=hlen, plan=_plan(o, enc, ids, group, smh_off, ftype),
                seq0=o.seq_start, seq_step=1 if o.vary_seq else 0, pps=pps, isg_us=0.0,
                pg_id=pg, latency_pg_id=lpg,
            ))
    return out


def _reply_streams(o, port_id, src_ip, dst_ip):
    """reply=1: per session of data_port and per receiver of its DATA's
    set, that receiver's own feedback (dataplane/endpoint/wire.go's
    putFeedback: ACK and CNP without a set, NACK with the receiver's ID)."""
    ftype = smh.TYPE_BY_NAME[o.type.upper()]
    out = []
    for s, sess in enumerate(session_ids(o, o.data_port)):
        ids, _, _ = _draw_set(o, s)
        for r in ids:
            own = [r] if ftype == smh.TYPE_NACK else []
            hdr = smh.smh_header(own, enc="list", type=ftype, hop=o.hop, src=o.source, sess=sess,
                                 seq=(o.seq_start + o.ack_every) & 0xFFFFFFFF, speaks_for=1, reporter=r,
                                 fb_count={"ack": 0, "nack": 1, "cnp": 1}[o.type])
            pkt, smh_off, hlen = _frame(o, s, o.source, sess, hdr, src_ip, dst_ip)
            plan = dict(vars=[dict(name="seq", min=0, max=0xFFFFFFFF, init=(o.seq_start + o.ack_every) & 0xFFFFFFFF,
                                   size=4, op="inc", step=o.ack_every)],
                        writes=[dict(var="seq", offset=smh_off + 10, trex_offset="SMH.seq", size=4, add=0)])
            out.append(dict(
                role="reply", source=o.source, session=sess, sport=pkt[UDP].sport, type=ftype, enc=smh.ENC_LIST,
                base_ids=own, group=None, unit=1, reporter=r, pkt=pkt, smh_offset=smh_off, header_len=hlen,
                plan=plan, seq0=(o.seq_start + o.ack_every) & 0xFFFFFFFF, seq_step=o.ack_every,
                pps=o.pps / o.ack_every, isg_us=o.reply_delay_ms * 1000.0, pg_id=None, latency_pg_id=None,
            ))
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
    seq = (sess_info["seq0"] + n * sess_info["seq_step"]) & 0xFFFFFFFF
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

    def get_streams(self, direction=0, port_id=0, tunables=(), **kw):
        # TRex passes direction and port_id separately (the console:
        # direction = port_id % 2; STLProfile.load: 0 unless given) and the
        # -t tunables twice, decoded in kw and as a list in tunables.
        opts = parse_options(tunables, **kw)  # -h/--help: prints them, SystemExit
        if not HAVE_TREX:
            raise RuntimeError(
                "smh_stl.get_streams needs TRex's Python API (trex.stl.api); "
                "outside TRex use build_sessions() or pcapgen.py"
            )
        streams = []
        for si in build_sessions(opts, port_id, direction):
            pkt = STLPktBuilder(pkt=trex_packet(opts, si["pkt"]), vm=_trex_vm(si["plan"]))
            kwargs = dict(packet=pkt, mode=STLTXCont(pps=si["pps"]),
                          name="smh-%s-s%d" % (si["role"], si["session"]))
            if si["role"] == "reply":
                kwargs["name"] += "-r%d" % si["reporter"]
            if si["isg_us"]:
                kwargs["isg"] = si["isg_us"]
            if si["pg_id"] is not None:
                kwargs["flow_stats"] = STLFlowStats(pg_id=si["pg_id"])
            if si["latency_pg_id"] is not None:
                kwargs["flow_stats"] = STLFlowLatencyStats(pg_id=si["latency_pg_id"])
            streams.append(STLStream(**kwargs))
        return streams


def register():
    return SMHProfile()


if __name__ == "__main__":
    # `python3 smh_stl.py --help`: the tunables, as `-t --help` prints them.
    try:
        o = parse_options(sys.argv[1:])
    except ProfileError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    print(vars(o))
