#!/usr/bin/python3
"""Write the SMH TRex profile's packets to a pcap, with plain scapy.

    pcapgen.py --out smh.pcap [--json smh.json] [--per-stream N] [--port-id P] \
               [-t receivers=9,domain=256,...] [key=value ...]

For every stream of smh_stl.py (same tunables, same defaults) it writes the
first N packets TRex would send: the base packet with the field engine
(sequence numbers, receiver-set variants) applied in Python by
smh_stl.apply_plan. Next to the pcap it writes a JSON sidecar (default: the
pcap's name with .json) with what every packet must decode to, computed from
the profile's model rather than from the bytes, plus the groups a switch
needs for encoding=group. testbeds/trex/trex_test.go decodes the pcap with
the Go codec and checks it against the sidecar, then replays it through a
switch.
"""

import argparse
import json
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from scapy.utils import PcapWriter  # noqa: E402
from scapy.layers.inet import IP, UDP  # noqa: E402

import smh  # noqa: E402
import smh_stl  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="pcap to write")
    ap.add_argument("--json", help="sidecar to write (default: OUT with .json)")
    ap.add_argument("--per-stream", type=int, default=0,
                    help="packets per stream (default: 2*rx_variants+1, at least 3)")
    ap.add_argument("--port-id", type=int, default=0, help="TRex port the streams are for")
    ap.add_argument("--direction", type=int, choices=[0, 1], default=None,
                    help="TRex's direction (default: port-id %% 2, as the console passes it)")
    ap.add_argument("-t", "--tunables", action="append", default=[],
                    help="profile tunables, key=value[,key=value...] (repeatable)")
    ap.add_argument("kv", nargs="*", help="more tunables as key=value")
    a = ap.parse_args(argv)
    try:
        opts = smh_stl.parse_options(a.tunables + a.kv)
        per = a.per_stream or max(3, 2 * opts.rx_variants + 1)
        if per < 1 or per > 100000:
            raise smh_stl.ProfileError("--per-stream %d: want 1-100000" % per)
        sessions = smh_stl.build_sessions(opts, a.port_id, a.direction)
    except smh_stl.ProfileError as e:
        print("pcapgen: %s" % e, file=sys.stderr)
        return 2

    side = a.json or os.path.splitext(a.out)[0] + ".json"
    records, groups = [], {}
    w = PcapWriter(a.out, linktype=1, sync=True)
    try:
        index = 0
        for n in range(per):
            # Interleave streams as TRex does with several streams on a port.
            for si in sessions:
                base = bytes(si["pkt"])
                frame = smh_stl.apply_plan(base, si["plan"], n)
                w.write(frame)
                exp = smh_stl.expected_fields(si, opts, n)
                hdr = si["pkt"][smh.SMH]
                setcount = {
                    smh.ENC_LIST: len(exp["receivers"]),
                    smh.ENC_BLOCKS: len(set(i >> 6 for i in exp["receivers"])),
                    smh.ENC_GROUP: 1,
                }[si["enc"]]
                rec = dict(
                    index=index,
                    session_index=sessions.index(si),
                    variant=n,
                    frame_len=len(frame),
                    smh_offset=si["smh_offset"],
                    header_len=si["header_len"],
                    payload_len=len(frame) - si["smh_offset"] - si["header_len"],
                    src_ip=si["pkt"][IP].src,
                    dst_ip=si["pkt"][IP].dst,
                    sport=si["pkt"][UDP].sport,
                    dport=si["pkt"][UDP].dport,
                    version=1,
                    type=smh.TYPES[si["type"]],
                    flags=(hdr.agg << 7) | (hdr.retx << 6) | (hdr.cong << 5) | (hdr.final << 4),
                    hop=opts.hop,
                    enc=smh.ENCODINGS[si["enc"]],
                    setcount=setcount,
                    src=si["source"],
                    role=si["role"],
                    sess=si["session"],
                    seq=exp["seq"],
                    receivers=exp["receivers"] if si["enc"] != smh.ENC_GROUP else [],
                    group=exp["group"] if exp["group"] is not None else 0,
                )
                if smh.is_feedback(si["type"]):
                    rec.update(count=hdr.fb_count, speaks_for=hdr.speaks_for, reporter=hdr.reporter)
                else:
                    rec.update(count=0, speaks_for=0, reporter=0)
                if si["enc"] == smh.ENC_GROUP:
                    groups[exp["group"]] = exp["receivers"]
                    rec["members"] = exp["receivers"]
                records.append(rec)
                index += 1
    finally:
        w.close()
    opt_dict = dict(vars(opts))
    doc = dict(
        options=opt_dict,
        per_stream=per,
        streams=len(sessions),
        groups=[dict(id=g, members=m) for g, m in sorted(groups.items())],
        packets=records,
    )
    with open(side, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    print("pcapgen: wrote %d packets (%d streams x %d) to %s, expectations to %s"
          % (len(records), len(sessions), per, a.out, side))
    return 0


if __name__ == "__main__":
    sys.exit(main())
