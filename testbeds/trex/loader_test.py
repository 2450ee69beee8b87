#!/usr/bin/python3
"""Load smh_stl.py the way TRex does, on ports 0-3, for every tunable set.

    loader_test.py [--trex-dir DIR]

Without --trex-dir it runs against testdata/faketrex (a copy of TRex's
loader calling convention, see its docstring): what `go test
./testbeds/trex` runs (TestProfileLoader). With --trex-dir (a TRex install
or source tree's scripts/) it runs against TRex's own client library,
console_start_profiles excepted (that one is the fake's copy of the
console's start command; the real console is run by the TRex lab).

Checks, each printed as "ok NAME" or "FAIL NAME: why" (exit 1 on a failure):
every tunable set loads on ports 0-3 through the console's path (direction
= port % 2, tunables decoded and listed) and through STLProfile.load;
no pg_id is used twice across ports, flow-stats and latency pg_ids are
disjoint; no (Source ID, Session ID) is sent by two DATA or latency
streams on any ports; frames leave with trex_cfg.yaml's MACs unless a
tunable sets them; `-t --help` lists every tunable with its default;
booleans as TRex passes them; pg_id limits fail with a clear error; the
pg_ids ndr.py reads are the ones it loaded; reply=1 answers exactly the
DATA's sessions and receivers.
"""

import argparse
import contextlib
import io
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import ndr  # noqa: E402  (no scapy import at module level)

ap = argparse.ArgumentParser()
ap.add_argument("--trex-dir", default="")
args = ap.parse_args()
if args.trex_dir:
    ndr.use_trex_dir(args.trex_dir)
    REAL = True
else:
    sys.path.insert(0, os.path.join(here, "testdata", "faketrex"))
    REAL = False

import trex.stl.api as api  # noqa: E402

sys.path.insert(0, os.path.join(here, "testdata", "faketrex"))
import importlib  # noqa: E402

fake = importlib.import_module("trex.stl.api") if not REAL else None
if REAL:
    # the console path is the fake's copy; load it under another name
    import importlib.util  # noqa: E402

    spec = importlib.util.spec_from_file_location("faketrex_api", os.path.join(here, "testdata", "faketrex", "trex", "stl", "api.py"))
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)

import smh_stl  # noqa: E402

PROFILE = os.path.join(here, "smh_stl.py")
PORTS = [0, 1, 2, 3]

# Every tunable, each in at least one set (checked below against
# make_parser()).
TUNABLE_SETS = [
    "receivers=9",
    "receivers=9,domain=256,encoding=list,sessions=3,rx_variants=4,seq_start=4294967294",
    "receivers=70,domain=1024,encoding=blocks,layout=clustered,rx_variants=3,sessions=2,size=256",
    "receivers=9,domain=4096,layout=clustered,rx_variants=2,hop=8",
    "encoding=group,receivers=12,domain=64,rx_variants=3,sessions=2,group_base=42",
    "receivers=200,domain=65535,encoding=list,size=64,vary_seq=true",
    "type=ack,receivers=3,domain=512,sessions=2",
    "type=ack,receivers=0",
    "type=nack,receivers=2,rx_variants=2",
    "type=cnp,receivers=64,layout=clustered,encoding=blocks,domain=128",
    "latency_pps=1000,flow_stats=1,sessions=40",
    "latency_pps=100,flow_stats=True,sessions=8,latency_source=60000,latency_pg=5000,flow_pg=100",
    "sessions=4,session_base=1000,seed=7,pps=2000,vary_seq=false,udp_port=9500",
    "src_ip=10.0.0.1,dst_ip=10.0.0.2,src_mac=02:aa:00:00:00:01,dst_mac=02:aa:00:00:00:02",
    "src_mac=02:aa:00:00:00:01,source=40000",
    "type=ack,reply=1,receivers=9,sessions=2",
    "type=nack,reply=yes,receivers=4,ack_every=8,reply_delay_ms=50,data_port=2",
    "type=cnp,reply=1,receivers=3,pps=10000,ack_every=64",
]

failures = []


def _covered():
    used = set(kv.split("=")[0] for ts in TUNABLE_SETS for kv in ts.split(","))
    return [a.dest for a in smh_stl.make_parser()._actions if a.dest != "help" and a.dest not in used]


def check(name, cond, why=""):
    if cond:
        print("ok", name)
    else:
        print("FAIL %s: %s" % (name, why))
        failures.append(name)


def quiet(f, *a, **kw):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        r = f(*a, **kw)
    return r, out.getvalue()


def pg(s):
    fs = getattr(s, "flow_stats", None) if not REAL else s.fields.get("flow_stats", {})
    if not REAL:
        return (fs.kind, fs.pg_id) if fs is not None else None
    if not fs or not fs.get("enabled"):
        return None
    return ("latency" if fs.get("rule_type") == "latency" else "stats", fs["stream_id"])


def flags(s):
    return s.flags if not REAL else s.fields["flags"] & 3


def smh_of(s):
    """(type, source, session, reporter) from the stream's packet bytes."""
    b = s.pkt  # the bytes the stream sends (TRex's STLStream.pkt)
    import struct

    smh_off = 14 + 20 + 8
    t = b[smh_off] & 0x0F
    src, sess = struct.unpack("!HH", b[smh_off + 6:smh_off + 10])
    rep = struct.unpack("!H", b[smh_off + 18:smh_off + 20])[0] if t != 0 else None
    return t, src, sess, rep


def console(line):
    if not REAL:
        return fake.console_start_profiles(line)
    # The console path with TRex's own STLProfile.load: the fake's copy of
    # the start command's tunable handling, the real loader.
    saved = fake.STLProfile
    fake.STLProfile = api.STLProfile
    try:
        return fake.console_start_profiles(line)
    finally:
        fake.STLProfile = saved


uncovered = _covered()
if uncovered:
    print("FAIL tunable sets cover every tunable: missing %s" % ", ".join(uncovered))
    failures.append("coverage")
else:
    print("ok tunable sets cover every tunable")

for ts in TUNABLE_SETS:
    line = "-f %s --port %s -m 1mpps -t %s" % (PROFILE, " ".join(str(p) for p in PORTS), ts)
    try:
        per_port, _ = quiet(console, line)
    except Exception as e:
        check("load %s" % ts, False, "%s" % e)
        continue
    check("load %s" % ts, isinstance(per_port, dict) and sorted(per_port) == PORTS and all(per_port.values()),
          "ports %r" % (per_port,))
    ids = {}
    idents = {}
    opts = smh_stl.parse_options([ts])
    for port, streams in per_port.items():
        for s in streams:
            p = pg(s)
            if p is not None:
                ids.setdefault(p[1], []).append((port, p[0]))
            t, src, sess, rep = smh_of(s)
            if t == 0 or not opts.reply:
                key = (t == 0, src, sess, rep if t != 0 else None)
                idents.setdefault(key, []).append(port)
            want = (1 if opts.src_mac else 0) | (2 if opts.dst_mac else 0)
            if flags(s) != want:
                check("macs %s" % ts, False, "port %d stream %s flags %d, want %d" % (port, s, flags(s), want))
                break
    dup = dict((k, v) for k, v in ids.items() if len(v) > 1)
    check("pg_ids unique %s" % ts, not dup, "pg_id used twice: %r" % dup)
    twice = dict((k, v) for k, v in idents.items() if len(v) > 1)
    check("identities unique %s" % ts, not twice, "(data?, source, session, reporter) sent by two streams: %r" % twice)

# The done-when of issue 16: ports 0-3, latency_pps=1000,flow_stats=1,sessions=40.
per_port, _ = quiet(console, "-f %s --port 0 1 2 3 -t latency_pps=1000,flow_stats=1,sessions=40" % PROFILE)
all_ids = [pg(s) for streams in per_port.values() for s in streams if pg(s) is not None]
check("ports 0-3 sessions=40: %d pg_ids, none twice" % len(all_ids),
      len(all_ids) == 4 * 80 and len(set(i for _, i in all_ids)) == len(all_ids), "%d ids" % len(all_ids))
lat = sorted(i for k, i in all_ids if k == "latency")
flow = sorted(i for k, i in all_ids if k == "stats")
check("latency pg_ids %d-%d above flow pg_ids %d-%d" % (lat[0], lat[-1], flow[0], flow[-1]), flow[-1] < lat[0])

# -t --help: every tunable and its default, and the console stops there.
r, out = quiet(console, "-f %s --port 0 -t --help" % PROFILE)
names = [a.dest for a in smh_stl.make_parser()._actions if a.dest != "help"]
missing = [n for n in names if "--" + n not in out]
check("-t --help lists every tunable", r is True and not missing, "returned %r, missing %r" % (r, missing))
flat = " ".join(out.split())
check("-t --help shows defaults", "(default: 9)" in flat and "(default: 65535)" in flat and "from trex_cfg.yaml)" in flat
      and "None" not in flat, out[-400:])

# Booleans as TRex passes them: bools from the decoded -t, "True" in the list.
for ts, want in (("vary_seq=true", 1), ("vary_seq=False", 0), ("vary_seq=1", 1), ("flow_stats=on", 1)):
    try:
        per_port, _ = quiet(console, "-f %s --port 0 -t %s" % (PROFILE, ts))
        key = ts.split("=")[0]
        o = smh_stl.parse_options([ts])
        check("bool %s" % ts, getattr(o, key) == want and per_port[0], "%s=%r" % (key, getattr(o, key)))
    except Exception as e:
        check("bool %s" % ts, False, str(e))

# Bad values and TRex's limits: clear errors.
for ts, want in (
    ("vary_seq=maybe", "vary_seq='maybe': want 0 or 1"),
    ("latency_pps=10,sessions=129", "latency_pps needs sessions <= 128"),
    ("flow_stats=1,sessions=1024", "flow_stats=1 needs sessions <= 1023"),
    ("flow_stats=1,latency_pps=10,sessions=4,flow_pg=100,latency_pg=150", "overlap"),
    ("source=5", "source=5 is a receiver ID of domain=256"),
    ("latency_pps=10,latency_source=65535", "latency streams need their own"),
    ("sessions=4000,session_base=50000", "more than 65535"),
    ("type=data,reply=1", "reply=1 is for type=ack"),
    ("type=ack,reply=1,ack_every=500", "raise reply_delay_ms"),
):
    try:
        quiet(console, "-f %s --port 0 1 2 3 -t %s" % (PROFILE, ts))
        check("rejects %s" % ts, False, "loaded")
    except Exception as e:
        check("rejects %s" % ts, want in str(e), "error %r lacks %r" % (str(e)[-300:], want))

# What ndr.py reads is what it loaded: STLProfile.load(port_id=P) as ndr
# calls it, against build_sessions for that port.
for port in (0, 1, 3):
    o = smh_stl.parse_options(["latency_pps=100,flow_stats=1,sessions=3"])
    prof = api.STLProfile.load(PROFILE, port_id=port, direction=port % 2, tunables=smh_stl.normalize_tunables(["latency_pps=100,flow_stats=1,sessions=3"]))
    loaded = sorted(pg(s)[1] for s in prof.get_streams() if pg(s) and pg(s)[0] == "latency")
    model = sorted(s["latency_pg_id"] for s in smh_stl.build_sessions(o, port, port % 2) if s["latency_pg_id"] is not None)
    check("ndr port %d latency pg_ids %s" % (port, model), loaded == model, "loaded %r" % loaded)

# reply=1 answers exactly the DATA's sessions and receivers.
o = smh_stl.parse_options(["type=ack,reply=1,receivers=9,sessions=2"])
data = smh_stl.build_sessions(smh_stl.parse_options(["receivers=9,sessions=2"]), 0, 0)
prof = api.STLProfile.load(PROFILE, port_id=1, direction=1, tunables=["--type", "ack", "--reply", "1", "--receivers", "9", "--sessions", "2"])
got = sorted((smh_of(s)[2], smh_of(s)[3]) for s in prof.get_streams())
want = sorted((d["session"], r) for d in data for r in d["base_ids"])
check("reply=1 answers (session, receiver) %d pairs" % len(want), got == want, "got %r want %r" % (got[:5], want[:5]))

if failures:
    print("%d FAILED: %s" % (len(failures), ", ".join(failures)))
    sys.exit(1)
print("all ok (%s client)" % ("TRex's" if REAL else "fake"))
