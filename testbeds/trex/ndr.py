#!/usr/bin/python3
"""Non-drop-rate (NDR) search for a switch under test, through TRex's Python API.

    ndr.py --server TREX_HOST [--trex-dir /opt/trex/v3.08] \
           [--tx-port 0 --rx-port 1] [--rate-lo 100kpps --rate-hi 20mpps] \
           [--precision 0.01] [--loss 0] [--duration 10] [--copies 1] \
           [--csv ndr.csv] [-t receivers=9,domain=256,...] [--dry-run]

Binary search over the offered rate: each trial loads smh_stl.py (with the
tunables) on the tx port, sends for --duration seconds at the trial rate,
waits for the tail to drain, and compares the rx port's ipackets with the tx
port's opackets times --copies (the copies the switch sends towards the rx
port per packet: 1 when every receiver is routed to the port cabled to
TRex's rx port, as in dut-switch.yaml). A trial passes if the loss ratio is
at most --loss. The search stops when (hi - lo) / hi <= --precision; the
NDR is the highest passing rate. Every trial is a CSV row; the last row is
the result.

It runs only where TRex runs (its server up, its Python API reachable
through --trex-dir or PYTHONPATH). --dry-run needs neither: it checks the
arguments, builds the profile's packets with plain scapy, prints the plan
and the worst-case trial count, and writes nothing.
"""

import argparse
import csv
import os
import sys
import time

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

import smh_stl  # noqa: E402

CSV_FIELDS = [
    "trial", "rate_pps", "duration_s", "tx_pkts", "rx_pkts", "expected_rx", "loss_ratio", "pass",
    "tx_pps", "rx_pps", "tx_bps_l1", "lat_avg_us", "lat_max_us", "lat_jitter_us",
    "lat_dropped", "lat_out_of_order", "lat_dup", "tunables",
]


def parse_rate(s):
    """'300kpps', '10mpps', '1.5gpps' or a plain number of pps."""
    t = s.strip().lower()
    mult = 1.0
    for suffix, m in (("gpps", 1e9), ("mpps", 1e6), ("kpps", 1e3), ("pps", 1.0)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    try:
        v = float(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError("rate %r: want a number of pps, e.g. 300kpps or 10mpps" % s)
    if v <= 0:
        raise argparse.ArgumentTypeError("rate %r: want more than 0 pps" % s)
    return v


def worst_case_trials(lo, hi, precision):
    n = 0
    while (hi - lo) / hi > precision and n < 64:
        hi = (lo + hi) / 2  # the slowest shrink: every trial fails
        n += 1
    return n


def import_trex(trex_dir):
    if trex_dir:
        for sub in ("automation/trex_control_plane/interactive", "automation/trex_control_plane/stl"):
            p = os.path.join(trex_dir, sub)
            if os.path.isdir(p) and p not in sys.path:
                sys.path.insert(0, p)
    try:
        import trex.stl.api as api  # type: ignore
    except ImportError:
        try:
            import trex_stl_lib.api as api  # type: ignore
        except ImportError:
            raise SystemExit(
                "ndr: TRex's Python API is not importable: pass --trex-dir (the TRex "
                "install, e.g. /opt/trex/v3.08) or put its automation/trex_control_plane/"
                "interactive on PYTHONPATH; --dry-run works without it"
            )
    return api


def latency_of(pg_stats, pg_ids):
    """Worst average, max and jitter over the latency streams, in us, and
    their summed error counters."""
    avg = mx = jit = 0.0
    dropped = ooo = dup = 0
    lat = pg_stats.get("latency", {})
    for pg in pg_ids:
        s = lat.get(pg)
        if not s:
            continue
        l = s.get("latency", {})
        avg = max(avg, float(l.get("average", 0)))
        mx = max(mx, float(l.get("total_max", 0)))
        jit = max(jit, float(l.get("jitter", 0)))
        e = s.get("err_cntrs", {})
        dropped += int(e.get("dropped", 0))
        ooo += int(e.get("out_of_order", 0))
        dup += int(e.get("dup", 0))
    return avg, mx, jit, dropped, ooo, dup


def run_trial(api, c, a, tunables, rate, trial):
    ports = [a.tx_port, a.rx_port]
    c.reset(ports=ports)
    prof = api.STLProfile.load(a.profile, port_id=a.tx_port, tunables=tunables)
    c.add_streams(prof.get_streams(), ports=[a.tx_port])
    c.clear_stats()
    c.start(ports=[a.tx_port], mult="%dpps" % int(rate), duration=a.duration)
    c.wait_on_traffic(ports=[a.tx_port])
    time.sleep(a.drain)  # let the switch's queues empty
    st = c.get_stats()
    txp = int(st[a.tx_port]["opackets"])
    rxp = int(st[a.rx_port]["ipackets"])
    exp = txp * a.copies
    loss = 1.0 - float(rxp) / exp if exp else 1.0
    lat = (0.0, 0.0, 0.0, 0, 0, 0)
    if a.latency_pg_ids:
        lat = latency_of(c.get_pgid_stats(), a.latency_pg_ids)
    ok = txp > 0 and loss <= a.loss and lat[3] == 0 if a.latency_strict else (txp > 0 and loss <= a.loss)
    return dict(
        trial=trial, rate_pps=int(rate), duration_s=a.duration, tx_pkts=txp, rx_pkts=rxp,
        expected_rx=exp, loss_ratio="%.9f" % max(loss, 0.0), **{"pass": int(bool(ok))},
        tx_pps="%.0f" % (txp / float(a.duration)), rx_pps="%.0f" % (rxp / float(a.duration)),
        tx_bps_l1="%.0f" % (txp / float(a.duration) * (a.frame_len + 4 + 20) * 8),
        lat_avg_us="%.1f" % lat[0], lat_max_us="%.1f" % lat[1], lat_jitter_us="%.1f" % lat[2],
        lat_dropped=lat[3], lat_out_of_order=lat[4], lat_dup=lat[5], tunables=",".join(tunables),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", default="127.0.0.1", help="TRex server (default %(default)s)")
    ap.add_argument("--trex-dir", default=os.environ.get("TREX_DIR", ""), help="TRex install directory")
    ap.add_argument("--profile", default=os.path.join(_here, "smh_stl.py"))
    ap.add_argument("--tx-port", type=int, default=0)
    ap.add_argument("--rx-port", type=int, default=1)
    ap.add_argument("--rate-lo", type=parse_rate, default=parse_rate("100kpps"))
    ap.add_argument("--rate-hi", type=parse_rate, default=parse_rate("20mpps"))
    ap.add_argument("--precision", type=float, default=0.01, help="stop when (hi-lo)/hi is at most this")
    ap.add_argument("--loss", type=float, default=0.0, help="loss ratio a trial may have and pass (NDR: 0)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per trial")
    ap.add_argument("--drain", type=float, default=1.0, help="seconds to wait after a trial")
    ap.add_argument("--copies", type=int, default=1, help="copies the switch sends to the rx port per packet")
    ap.add_argument("--latency-strict", action="store_true", help="a trial with latency drops fails")
    ap.add_argument("--csv", default="", help="CSV to write (default ndr-YYYYmmdd-HHMMSS.csv)")
    ap.add_argument("-t", "--tunables", action="append", default=[], help="profile tunables key=value[,...]")
    ap.add_argument("--dry-run", action="store_true", help="print the plan; contact nothing, write nothing")
    a = ap.parse_args(argv)

    def die(msg):
        print("ndr: " + msg, file=sys.stderr)
        return 2

    if a.rate_lo >= a.rate_hi:
        return die("--rate-lo must be below --rate-hi (%g >= %g pps)" % (a.rate_lo, a.rate_hi))
    if not 0 < a.precision < 1:
        return die("--precision %g: want 0-1 (exclusive)" % a.precision)
    if not 0 <= a.loss < 1:
        return die("--loss %g: want 0 <= loss < 1" % a.loss)
    if a.duration < 1 or a.copies < 1 or a.drain < 0:
        return die("--duration and --copies must be at least 1, --drain at least 0")
    if a.tx_port == a.rx_port or a.tx_port < 0 or a.rx_port < 0:
        return die("--tx-port and --rx-port must be two different ports")
    if not os.path.isfile(a.profile):
        return die("profile %s not found" % a.profile)
    tunables = smh_stl.normalize_tunables(a.tunables)
    try:
        opts = smh_stl.parse_options(a.tunables)
        sessions = smh_stl.build_sessions(opts, a.tx_port)
    except smh_stl.ProfileError as e:
        return die(str(e))
    a.frame_len = len(sessions[0]["pkt"])
    a.latency_pg_ids = [s["latency_pg_id"] for s in sessions if s["latency_pg_id"] is not None]
    if not a.csv:
        a.csv = time.strftime("ndr-%Y%m%d-%H%M%S.csv")

    nlat = len(a.latency_pg_ids)
    print("ndr plan: server %s, tx port %d, rx port %d" % (a.server, a.tx_port, a.rx_port))
    print("  profile %s, tunables %s" % (a.profile, " ".join(tunables) or "(defaults)"))
    print("  streams on port %d: %d data + %d latency, frame %d B + FCS, SMH %d B, %s"
          % (a.tx_port, len(sessions), nlat, a.frame_len, sessions[0]["header_len"],
             "encoding " + {0: "list", 1: "blocks", 2: "group"}[sessions[0]["enc"]]))
    print("  search %d-%d pps, precision %g, allowed loss %g, %d s per trial (+%g s drain), %d copies per packet"
          % (a.rate_lo, a.rate_hi, a.precision, a.loss, a.duration, a.drain, a.copies))
    print("  trial 1: %d pps; pass -> search [rate, hi], fail -> [lo, rate]; at most %d trials"
          % ((a.rate_lo + a.rate_hi) / 2, worst_case_trials(a.rate_lo, a.rate_hi, a.precision)))
    print("  csv %s (%s)" % (a.csv, ",".join(CSV_FIELDS)))
    if a.dry_run:
        return 0

    api = import_trex(a.trex_dir)
    c = api.STLClient(server=a.server)
    c.connect()
    lo, hi, best, trial = a.rate_lo, a.rate_hi, None, 0
    try:
        c.acquire(ports=[a.tx_port, a.rx_port], force=True)
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            while (hi - lo) / hi > a.precision:
                trial += 1
                rate = (lo + hi) / 2
                row = run_trial(api, c, a, tunables, rate, trial)
                w.writerow(row)
                f.flush()
                print("trial %d: %d pps: tx %d rx %d loss %s %s"
                      % (trial, rate, row["tx_pkts"], row["rx_pkts"], row["loss_ratio"],
                         "PASS" if row["pass"] else "fail"))
                if row["pass"]:
                    lo, best = rate, row
                else:
                    hi = rate
            if best is None:
                print("ndr: no trial passed; lower --rate-lo (%d pps)" % a.rate_lo)
                return 1
            final = dict(best)
            final["trial"] = "ndr"
            w.writerow(final)
    finally:
        c.stop(ports=[a.tx_port])
        c.release(ports=[a.tx_port, a.rx_port])
        c.disconnect()
    print("NDR %s pps (%.3f Mpps, %s bit/s on the wire) with loss %s; rows in %s"
          % (best["rate_pps"], best["rate_pps"] / 1e6, best["tx_bps_l1"], best["loss_ratio"], a.csv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
