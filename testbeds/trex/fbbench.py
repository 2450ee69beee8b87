#!/usr/bin/python3
"""Feedback aggregation through a switch under test, with TRex on both sides.

    fbbench.py --server TREX_HOST --switch-metrics http://SWITCH:9470/metrics \
               [--trex-dir DIR] [--types ack,nack,cnp] [--spoofed] [--duration 10] \
               [-t receivers=9,sessions=4,pps=10000] [--json]

Aggregation (one run per --types entry): TRex port 0 (--data-port) sends
smh_stl.py's DATA with the tunables; the switch forwards it out of p1 to
TRex port 1 (--fb-port), which answers it with smh_stl.py type=T reply=1
and the same tunables: per session and per receiver of the set the DATA
carried, that receiver's own ACK, NACK or CNP for the sequence numbers the
DATA carried, every ack_every packets, starting reply_delay_ms after the
DATA. The switch holds state for those streams (it forwarded their DATA out
of the port the feedback comes in on), so it aggregates: ACKs into one
aggregate per rise of the lowest ACK, NACKs of a range into the first, CNPs
into the most severe per interval. It reports feedback in (TRex port 1's
opackets, the switch's feedback_total{action="in"}), feedback out towards
the source (TRex port 0's ipackets, the switch's action="up"), their ratio,
and the switch's drops; a run passes when feedback came out, less of it
than went in, every DATA copy arrived, and nothing was dropped as
feedback_spoofed, feedback_stale, no_route or ingress_port.

Spoofed feedback (--spoofed, a test of its own): TRex port 0 sends DATA of a
source routed towards p1 (spoof_source, default 60000; dut-switch.yaml
routes 0-65279 there) and, from the same port, ACKs for those streams
claiming to be their receivers. The switch never sent that DATA out of p0,
so every such ACK must be dropped as feedback_spoofed and none may reach
TRex port 1.

The switch's config: dut-switch.yaml (Source IDs 65280-65535 routed to p0,
the port cabled to TRex port 0, so feedback goes back there). TRex's
client: --trex-dir as for ndr.py.
"""

import argparse
import json
import os
import sys
import time

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

import ndr  # noqa: E402  (no scapy at import)

TYPE_NAMES = {"ack": "ACK", "nack": "NACK", "cnp": "CNP"}
BAD_DROPS = ("feedback_spoofed", "feedback_stale", "no_route", "ingress_port")


def load(api, a, port, direction, tunables):
    return api.STLProfile.load(a.profile, port_id=port, direction=direction, tunables=tunables).get_streams()


def run(api, c, a, data_streams, data_port, fb_streams, fb_port):
    """Load, send for --duration, return TRex's port counters and the
    switch's delta."""
    ports = sorted(set([a.data_port, a.fb_port]))
    c.reset(ports=ports)
    c.add_streams(data_streams, ports=[data_port])
    active = [data_port]
    if fb_streams:
        c.add_streams(fb_streams, ports=[fb_port])
        active = sorted(set([data_port, fb_port]))
    c.clear_stats()
    before = ndr.scrape(a.switch_metrics)
    # mult 1: every stream at the pps its profile gives it (the reply
    # streams' rate follows from the DATA's: pps/ack_every).
    c.start(ports=active, mult="1", duration=a.duration)
    c.wait_on_traffic(ports=active)
    time.sleep(a.drain)
    st = c.get_stats()
    sw = ndr.switch_delta(before, ndr.scrape(a.switch_metrics), a.switch_in, a.switch_out)
    return st, sw


def port_counts(st, p):
    s = st[p]
    return dict(opackets=int(s.get("opackets", 0)), ipackets=int(s.get("ipackets", 0)),
                ierrors=int(s.get("ierrors", 0)), oerrors=int(s.get("oerrors", 0)))


def aggregation(api, c, a, smh_stl, ftype):
    T = TYPE_NAMES[ftype]
    data_t = a.tunable_argv
    fb_t = data_t + ["--type", ftype, "--reply", "1", "--data_port", str(a.data_port)]
    try:
        opts = smh_stl.parse_options(fb_t)
        data_opts = smh_stl.parse_options(data_t)
    except smh_stl.ProfileError as e:
        raise SystemExit("fbbench: %s" % e)
    data = load(api, a, a.data_port, 0, data_t)
    fb = load(api, a, a.fb_port, 1, fb_t)
    st, sw = run(api, c, a, data, a.data_port, fb, a.fb_port)
    d, f = port_counts(st, a.data_port), port_counts(st, a.fb_port)
    fb_in_trex, fb_out_trex = f["opackets"], d["ipackets"]
    fbc = sw["feedback"]
    sw_in = fbc.get((T, "in"), 0)
    sw_up = fbc.get((T, "up"), 0)
    res = dict(
        test="aggregation", type=T, sessions=data_opts.sessions, receivers=data_opts.receivers,
        data_pps_per_session=data_opts.pps, ack_every=opts.ack_every, duration_s=a.duration,
        trex=dict(data_tx=d["opackets"], data_rx=f["ipackets"], feedback_tx=fb_in_trex, feedback_rx=fb_out_trex,
                  ierrors=d["ierrors"] + f["ierrors"], oerrors=d["oerrors"] + f["oerrors"]),
        switch=dict(data_in=sw["rx_in"], data_out=sw["tx_out"], feedback_in_port=sw["rx_out"],
                    feedback_out_port=sw["tx_in"], drops=sw["drops"], ring_drops=sw["kernel"],
                    feedback=dict(("%s_%s" % k, n) for k, n in sorted(fbc.items()))),
    )
    res["ratio_trex"] = round(fb_in_trex / float(fb_out_trex), 3) if fb_out_trex else None
    res["ratio_switch"] = round(sw_in / float(sw_up), 3) if sw_up else None
    bad = dict((r, n) for r, n in sw["drops"].items() if r in BAD_DROPS)
    problems = []
    if fb_out_trex == 0:
        problems.append("no feedback reached TRex port %d" % a.data_port)
    if fb_out_trex >= fb_in_trex:
        problems.append("no aggregation: %d out for %d in" % (fb_out_trex, fb_in_trex))
    if bad:
        problems.append("dropped: %s" % ",".join("%s=%d" % kv for kv in sorted(bad.items())))
    if fbc.get((T, "unknown"), 0):
        problems.append("%d %s for streams without state (feedback_unknown)" % (fbc[(T, "unknown")], T))
    res["pass"] = not problems
    res["problems"] = problems
    return res


def spoofed(api, c, a, smh_stl):
    src = str(a.spoof_source)
    data_t = a.tunable_argv + ["--source", src]
    fb_t = data_t + ["--type", "ack", "--reply", "1", "--data_port", str(a.data_port)]
    try:
        smh_stl.parse_options(fb_t)
    except smh_stl.ProfileError as e:
        raise SystemExit("fbbench: %s" % e)
    data = load(api, a, a.data_port, 0, data_t)
    forged = load(api, a, a.data_port, 0, fb_t)
    st, sw = run(api, c, a, data + forged, a.data_port, [], a.fb_port)
    d, f = port_counts(st, a.data_port), port_counts(st, a.fb_port)
    # TRex port 0 sent DATA and forged ACKs; its DATA share is what the
    # switch forwarded to p1.
    fbc = sw["feedback"]
    spoof = sw["drops"].get("feedback_spoofed", 0)
    acks_in = fbc.get(("ACK", "in"), 0)
    res = dict(
        test="spoofed", type="ACK", source=a.spoof_source, duration_s=a.duration,
        trex=dict(tx=d["opackets"], rx_port1=f["ipackets"], rx_port0=d["ipackets"]),
        switch=dict(data_in=sw["rx_in"], data_out=sw["tx_out"], ack_in=acks_in, feedback_spoofed=spoof,
                    drops=sw["drops"], feedback=dict(("%s_%s" % k, n) for k, n in sorted(fbc.items()))),
    )
    problems = []
    if acks_in == 0:
        problems.append("the switch saw no ACK")
    if spoof != acks_in:
        problems.append("%d ACKs in, %d dropped as feedback_spoofed" % (acks_in, spoof))
    if fbc.get(("ACK", "up"), 0) or fbc.get(("ACK", "absorbed"), 0):
        problems.append("forged ACKs were forwarded or aggregated")
    if sw["tx_out"] != sw["rx_in"] - acks_in:
        problems.append("p1 sent %d, want the %d DATA packets" % (sw["tx_out"], sw["rx_in"] - acks_in))
    res["pass"] = not problems
    res["problems"] = problems
    return res


def show(r):
    if r["test"] == "aggregation":
        t, s = r["trex"], r["switch"]
        print("feedback %s: %d sessions x %d receivers, DATA %g pps per session, feedback every %d, %d s"
              % (r["type"], r["sessions"], r["receivers"], r["data_pps_per_session"], r["ack_every"], r["duration_s"]))
        print("                            TRex               switch")
        print("  DATA      port 0 tx %10d     p0 rx %10d" % (t["data_tx"], s["data_in"]))
        print("            port 1 rx %10d     p1 tx %10d" % (t["data_rx"], s["data_out"]))
        print("  feedback  port 1 tx %10d     p1 rx %10d" % (t["feedback_tx"], s["feedback_in_port"]))
        print("            port 0 rx %10d     p0 tx %10d" % (t["feedback_rx"], s["feedback_out_port"]))
        print("  switch feedback_total: %s" % (", ".join("%s=%d" % kv for kv in sorted(s["feedback"].items())) or "none"))
        print("  switch drops: %s; ring drops: %s; TRex ierrors+oerrors %d"
              % (", ".join("%s=%d" % kv for kv in sorted(s["drops"].items())) or "none",
                 ", ".join("%s=%d" % kv for kv in sorted(s["ring_drops"].items())) or "none", t["ierrors"] + t["oerrors"]))
        print("  aggregation %s : 1 at TRex (%d in, %d out), %s : 1 in the switch's counters"
              % (r["ratio_trex"], t["feedback_tx"], t["feedback_rx"], r["ratio_switch"]))
    else:
        t, s = r["trex"], r["switch"]
        print("spoofed feedback: DATA of source %d and forged ACKs for it, both from TRex port 0, %d s"
              % (r["source"], r["duration_s"]))
        print("  TRex port 0 tx %d; switch p0 rx %d: ACK in %d, dropped as feedback_spoofed %d"
              % (t["tx"], s["data_in"], s["ack_in"], s["feedback_spoofed"]))
        print("  switch p1 tx %d, TRex port 1 rx %d (DATA only); TRex port 0 rx %d"
              % (s["data_out"], t["rx_port1"], t["rx_port0"]))
    print("  %s%s" % ("PASS" if r["pass"] else "FAIL", "" if r["pass"] else ": " + "; ".join(r["problems"])))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", default="127.0.0.1")
    ap.add_argument("--trex-dir", default=os.environ.get("TREX_DIR", ""))
    ap.add_argument("--profile", default=os.path.join(_here, "smh_stl.py"))
    ap.add_argument("--data-port", type=int, default=0, help="TRex port cabled to the switch's ingress")
    ap.add_argument("--fb-port", type=int, default=1, help="TRex port the DATA arrives at and answers from")
    ap.add_argument("--switch-metrics", required=True, help="the switch's /metrics URL")
    ap.add_argument("--switch-in", default="p0")
    ap.add_argument("--switch-out", default="p1")
    ap.add_argument("--types", default="ack,nack,cnp", help="feedback types to run, comma-separated")
    ap.add_argument("--spoofed", action="store_true", help="also run the spoofed-feedback test")
    ap.add_argument("--spoof-source", type=int, default=60000, help="Source ID of the spoofed test's DATA (routed to p1)")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--drain", type=float, default=1.0)
    ap.add_argument("-t", "--tunables", action="append", default=[],
                    help="smh_stl.py tunables for the DATA (and, with type/reply added, the feedback)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON document")
    a = ap.parse_args(argv)
    types = [t.strip() for t in a.types.split(",") if t.strip()]
    for t in types:
        if t not in TYPE_NAMES:
            print("fbbench: --types %s: want ack, nack or cnp" % t, file=sys.stderr)
            return 2
    if a.data_port == a.fb_port or a.duration < 1:
        print("fbbench: --data-port and --fb-port must differ, --duration >= 1", file=sys.stderr)
        return 2
    ndr.use_trex_dir(a.trex_dir)  # before smh_stl imports scapy
    api = ndr.import_trex()
    smh_stl = ndr.load_profile_module()
    a.tunable_argv = smh_stl.normalize_tunables(a.tunables or ["receivers=9,sessions=4,pps=10000"])
    c = api.STLClient(server=a.server)
    try:
        c.connect()
    except Exception as e:  # TRexError: no server there
        print("fbbench: TRex server %s: %s (is `t-rex-64 -i` running there?)" % (a.server, str(e).strip()), file=sys.stderr)
        return 1
    results = []
    try:
        c.acquire(ports=sorted(set([a.data_port, a.fb_port])), force=True)
        for t in types:
            r = aggregation(api, c, a, smh_stl, t)
            results.append(r)
            if not a.json:
                show(r)
                sys.stdout.flush()
        if a.spoofed:
            r = spoofed(api, c, a, smh_stl)
            results.append(r)
            if not a.json:
                show(r)
    finally:
        c.stop()
        c.release()
        c.disconnect()
    if a.json:
        print(json.dumps(results, indent=1, sort_keys=True))
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
