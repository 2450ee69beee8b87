#!/usr/bin/python3
"""Non-drop-rate (NDR) search for a switch under test, through TRex's Python API.

    ndr.py --server TREX_HOST [--trex-dir /opt/trex/v3.08] \
           [--tx-port 0 --rx-port 1] [--rate-lo 100kpps --rate-hi 20mpps] \
           [--precision 0.01] [--loss 0] [--duration 10] [--copies 1] \
           [--switch-metrics http://SWITCH:9470/metrics --switch-in p0 --switch-out p1] \
           [--csv ndr.csv] [-t receivers=9,domain=256,...] [--rate R] [--dry-run]

Binary search over the offered rate: each trial loads smh_stl.py (with the
tunables) on the tx port, sends for --duration seconds at the trial rate,
waits for the tail to drain, and compares the rx port's ipackets with the tx
port's opackets times --copies (the copies the switch sends towards the rx
port per packet: 1 when every receiver is routed to the port cabled to
TRex's rx port, as in dut-switch.yaml). A trial passes if the loss ratio is
at most --loss. The search stops when (hi - lo) / hi <= --precision; the
NDR is the highest passing rate. Every trial is a CSV row; the last row is
the result. --rate R runs one trial at R instead of a search.

Where the loss is. With --switch-metrics, each trial reads the switch's
counters before and after (port receive/transmit packets, drops by reason,
AF_PACKET ring drops) and prints them beside TRex's per-port counters
(opackets, ipackets, oerrors, ierrors). A failed trial is then put on the
side that lost the packets:

  switch     the switch dropped some (a drops_total or kernel_drops
             increase) or sent fewer copies than it received times --copies;
  generator  the switch received every packet TRex sent and sent every
             copy on, and TRex's rx port did not count them all (in
             software mode TRex's receive side is the first to give up);
  wire       TRex counted more sent than the switch received, and the
             switch's ring saw no drop (the veth or cable, or TRex's tx).

The final line names the side that limited the search. Without
--switch-metrics every loss is end to end and the line says so.

It runs only where TRex runs (its server up, its Python API reachable
through --trex-dir or PYTHONPATH). --trex-dir (the directory with t-rex-64
and automation/, e.g. /opt/trex/v3.08, or a source tree's scripts/) puts
TRex's client and the scapy it ships (external_libs/scapy-2.4.3) on
sys.path before anything imports scapy, so no PYTHONPATH or system scapy is
needed. --dry-run needs neither: it checks the arguments, builds the
profile's packets with plain scapy, prints the plan and the worst-case
trial count, and writes nothing.
"""

import argparse
import csv
import os
import re
import sys
import time
import urllib.request

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

# smh_stl (and so scapy) is imported only after --trex-dir is on sys.path:
# see load_profile_module.

CSV_FIELDS = [
    "trial", "rate_pps", "duration_s", "tx_pkts", "rx_pkts", "expected_rx", "loss_ratio", "pass",
    "tx_pps", "rx_pps", "tx_bps_l1", "tx_oerrors", "rx_ierrors",
    "sw_rx", "sw_tx", "sw_drops", "sw_kernel_drops", "lost_before_switch", "lost_in_switch", "lost_after_switch",
    "limit", "lat_avg_us", "lat_max_us", "lat_jitter_us", "lat_dropped", "lat_out_of_order", "lat_dup", "tunables",
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


# ---- TRex's client and its scapy ---------------------------------------------

def trex_paths(trex_dir):
    """The directories TRex's client needs on sys.path: its interactive API
    and the scapy it ships. trex_dir is an install (t-rex-64 beside
    automation/ and external_libs/) or a source tree (the same under
    scripts/)."""
    if not trex_dir:
        return []
    root = trex_dir
    if not os.path.isdir(os.path.join(root, "automation")) and os.path.isdir(os.path.join(root, "scripts", "automation")):
        root = os.path.join(root, "scripts")
    api = os.path.join(root, "automation", "trex_control_plane", "interactive")
    scapy = os.path.join(root, "external_libs", "scapy-2.4.3")
    missing = [p for p in (api, scapy) if not os.path.isdir(p)]
    if missing:
        raise SystemExit("ndr: --trex-dir %s is not a TRex directory: %s not found" % (trex_dir, ", ".join(missing)))
    return [api, scapy]


def use_trex_dir(trex_dir):
    """Put TRex's client and scapy first on sys.path. Call it before any
    import of scapy (smh, smh_stl): TRex's package swaps scapy modules that
    are already loaded for its own, and a profile built on the other scapy
    then fails inside TRex."""
    for p in reversed(trex_paths(trex_dir)):
        if p not in sys.path:
            sys.path.insert(0, p)


def import_trex():
    try:
        import trex.stl.api as api  # type: ignore
    except ImportError as e:
        try:
            import trex_stl_lib.api as api  # type: ignore
        except ImportError:
            raise SystemExit(
                "ndr: TRex's Python API is not importable (%s): pass --trex-dir (the TRex "
                "install, e.g. /opt/trex/v3.08) or put its automation/trex_control_plane/"
                "interactive on PYTHONPATH; --dry-run works without it" % e
            )
    return api


def load_profile_module():
    import smh_stl  # noqa: E402  (scapy: after use_trex_dir)

    return smh_stl


# ---- the switch's counters -----------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text exposition -> {(name, ((label, value), ...)): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            continue
    return out


def scrape(url, timeout=5.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return parse_metrics(r.read().decode("utf-8", "replace"))
    except OSError as e:
        raise SystemExit("ndr: --switch-metrics %s: %s" % (url, e))


def metric_sum(m, name, **want):
    """Sum of name's samples whose labels include want (over workers etc.)."""
    total = 0.0
    for (n, labels), v in m.items():
        if n != name:
            continue
        d = dict(labels)
        if all(d.get(k) == w for k, w in want.items()):
            total += v
    return total


def metric_by(m, name, label):
    """{label value: sum} of name's samples."""
    out = {}
    for (n, labels), v in m.items():
        if n == name:
            k = dict(labels).get(label, "")
            out[k] = out.get(k, 0.0) + v
    return out


def switch_delta(before, after, in_port, out_port):
    """What the switch did between two scrapes."""
    def d(name, **lab):
        return int(metric_sum(after, name, **lab) - metric_sum(before, name, **lab))

    drops = {}
    b = metric_by(before, "sparsecast_switch_drops_total", "reason")
    for reason, v in metric_by(after, "sparsecast_switch_drops_total", "reason").items():
        if v - b.get(reason, 0.0) > 0:
            drops[reason] = int(v - b.get(reason, 0.0))
    kb = metric_by(before, "sparsecast_switch_port_kernel_drops_total", "port")
    kernel = {}
    for port, v in metric_by(after, "sparsecast_switch_port_kernel_drops_total", "port").items():
        if v - kb.get(port, 0.0) > 0:
            kernel[port] = int(v - kb.get(port, 0.0))
    fb = {}
    fbb = {}
    for (n, labels), v in before.items():
        if n == "sparsecast_switch_feedback_total":
            fbb[labels] = fbb.get(labels, 0.0) + v
    for (n, labels), v in after.items():
        if n == "sparsecast_switch_feedback_total":
            dl = dict(labels)
            key = (dl.get("type", ""), dl.get("action", ""))
            fb[key] = fb.get(key, 0) + int(v - fbb.get(labels, 0.0))
    return dict(
        rx_in=d("sparsecast_switch_port_receive_packets_total", port=in_port),
        tx_in=d("sparsecast_switch_port_transmit_packets_total", port=in_port),
        rx_out=d("sparsecast_switch_port_receive_packets_total", port=out_port),
        tx_out=d("sparsecast_switch_port_transmit_packets_total", port=out_port),
        drops=drops, kernel=kernel, feedback=dict((k, v) for k, v in fb.items() if v),
    )


def classify(txp, rxp, copies, sw):
    """Where a trial's packets went: (lost before the switch, lost in the
    switch, lost after it, the side that lost most: switch, generator,
    wire or none). sw is switch_delta's result or None (end to end only)."""
    expected = txp * copies
    if sw is None:
        return None, None, None, ("end-to-end" if rxp < expected else "none")
    before = max(txp - sw["rx_in"], 0)
    in_switch = max(sw["rx_in"] * copies - sw["tx_out"], 0)
    dropped = sum(sw["drops"].values()) + sum(sw["kernel"].values())
    after = max(sw["tx_out"] - rxp, 0)
    if rxp >= expected and not dropped:
        return before, in_switch, after, "none"
    if dropped or in_switch:
        return before, in_switch, after, "switch"
    if after >= before:
        return before, in_switch, after, "generator"
    return before, in_switch, after, "wire"


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
        avg = max(avg, float(l.get("average", 0) or 0))
        mx = max(mx, float(l.get("total_max", 0) or 0))
        jit = max(jit, float(l.get("jitter", 0) or 0))
        e = s.get("err_cntrs", {})
        dropped += int(e.get("dropped", 0))
        ooo += int(e.get("out_of_order", 0))
        dup += int(e.get("dup", 0))
    return avg, mx, jit, dropped, ooo, dup


def side_by_side(a, st, sw):
    """TRex's counters beside the switch's, one line per hop."""
    tx, rx = st[a.tx_port], st[a.rx_port]
    lines = ["    TRex port %d  tx %10d  oerrors %d" % (a.tx_port, int(tx.get("opackets", 0)), int(tx.get("oerrors", 0)))]
    if sw is not None:
        lines.append("    switch %-6s rx %10d" % (a.switch_in, sw["rx_in"]))
        lines.append("    switch %-6s tx %10d   drops %s   ring drops %s" % (
            a.switch_out, sw["tx_out"],
            ",".join("%s=%d" % kv for kv in sorted(sw["drops"].items())) or "none",
            ",".join("%s=%d" % kv for kv in sorted(sw["kernel"].items())) or "none"))
    lines.append("    TRex port %d  rx %10d  ierrors %d" % (a.rx_port, int(rx.get("ipackets", 0)), int(rx.get("ierrors", 0))))
    return "\n".join(lines)


def run_trial(api, c, a, rate, trial):
    ports = [a.tx_port, a.rx_port]
    c.reset(ports=ports)
    prof = api.STLProfile.load(a.profile, port_id=a.tx_port, direction=a.tx_port % 2, tunables=a.tunable_argv)
    c.add_streams(prof.get_streams(), ports=[a.tx_port])
    c.clear_stats()
    before = scrape(a.switch_metrics) if a.switch_metrics else None
    c.start(ports=[a.tx_port], mult="%dpps" % int(rate), duration=a.duration)
    c.wait_on_traffic(ports=[a.tx_port])
    time.sleep(a.drain)  # let the switch's queues empty
    st = c.get_stats()
    sw = switch_delta(before, scrape(a.switch_metrics), a.switch_in, a.switch_out) if a.switch_metrics else None
    txp = int(st[a.tx_port]["opackets"])
    rxp = int(st[a.rx_port]["ipackets"])
    exp = txp * a.copies
    loss = 1.0 - float(rxp) / exp if exp else 1.0
    lat = (0.0, 0.0, 0.0, 0, 0, 0)
    if a.latency_pg_ids:
        lat = latency_of(c.get_pgid_stats(), a.latency_pg_ids)
    ok = txp > 0 and loss <= a.loss
    if a.latency_strict:
        ok = ok and lat[3] == 0
    before_l, in_l, after_l, limit = classify(txp, rxp, a.copies, sw)
    if ok:
        limit = "none"
    row = dict(
        trial=trial, rate_pps=int(rate), duration_s=a.duration, tx_pkts=txp, rx_pkts=rxp,
        expected_rx=exp, loss_ratio="%.9f" % max(loss, 0.0), **{"pass": int(bool(ok))},
        tx_pps="%.0f" % (txp / float(a.duration)), rx_pps="%.0f" % (rxp / float(a.duration)),
        tx_bps_l1="%.0f" % (txp / float(a.duration) * (a.frame_len + 4 + 20) * 8),
        tx_oerrors=int(st[a.tx_port].get("oerrors", 0)), rx_ierrors=int(st[a.rx_port].get("ierrors", 0)),
        sw_rx="" if sw is None else sw["rx_in"], sw_tx="" if sw is None else sw["tx_out"],
        sw_drops="" if sw is None else sum(sw["drops"].values()),
        sw_kernel_drops="" if sw is None else sum(sw["kernel"].values()),
        lost_before_switch="" if before_l is None else before_l,
        lost_in_switch="" if in_l is None else in_l,
        lost_after_switch="" if after_l is None else after_l,
        limit=limit,
        lat_avg_us="%.1f" % lat[0], lat_max_us="%.1f" % lat[1], lat_jitter_us="%.1f" % lat[2],
        lat_dropped=lat[3], lat_out_of_order=lat[4], lat_dup=lat[5], tunables=",".join(a.tunable_argv),
    )
    return row, side_by_side(a, st, sw)


def console_run(c, a):
    """README's console line through TRex's own console (batch mode), with
    both sides' counters of that run."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(trex_paths(a.trex_dir)[0])))
    try:
        c.acquire(ports=[a.tx_port, a.rx_port], force=True)
        c.reset(ports=[a.tx_port, a.rx_port])
        c.clear_stats()
        c.release(ports=[a.tx_port, a.rx_port])
        before = scrape(a.switch_metrics) if a.switch_metrics else None
        # After the batch the console turns interactive: "quit" ends it
        # (the traffic goes on: it disconnects with stop_traffic=False).
        r = subprocess.run(["./trex-console", "-s", a.server, "-f", "--batch", a.console], cwd=root,
                           input=b"quit\n", timeout=120)
        if r.returncode != 0:
            print("ndr: trex-console --batch %s exited with %d" % (a.console, r.returncode), file=sys.stderr)
            return 1
        time.sleep(a.console_wait)
        st = c.get_stats(ports=[a.tx_port, a.rx_port])  # the console holds them: name them
        sw = switch_delta(before, scrape(a.switch_metrics), a.switch_in, a.switch_out) if a.switch_metrics else None
    finally:
        c.disconnect()
    txp, rxp = int(st[a.tx_port]["opackets"]), int(st[a.rx_port]["ipackets"])
    _, _, _, limit = classify(txp, rxp, a.copies, sw)
    print("console run: TRex port %d sent %d, port %d received %d (%s)"
          % (a.tx_port, txp, a.rx_port, rxp, "no loss" if limit == "none" else "lost: " + limit))
    print(side_by_side(a, st, sw))
    return 0 if txp > 0 and limit != "switch" else 1


def verdict(rows, have_switch):
    """The final line's reason: which side limited the search."""
    failed = [r for r in rows if not r["pass"]]
    if not failed:
        return "no trial failed: the NDR is at least the highest rate tried"
    if not have_switch:
        return "limited end to end (no --switch-metrics: cannot tell the switch's loss from TRex's)"
    lowest = min(failed, key=lambda r: r["rate_pps"])
    sides = sorted(set(r["limit"] for r in failed))
    clean = [r["rate_pps"] for r in rows if r["limit"] in ("none", "generator", "wire") and r["sw_drops"] == 0
             and r["lost_in_switch"] == 0 and not r["sw_kernel_drops"]]
    msg = "limited by the %s: the lowest failed trial (%d pps) lost %s" % (
        lowest["limit"], lowest["rate_pps"],
        {"switch": "%s packets in the switch (drops %s, its ports' receive rings %s)" % (
            lowest["lost_in_switch"], lowest["sw_drops"], lowest["sw_kernel_drops"]),
         "generator": "%s packets after the switch sent them (TRex port rx, ierrors %s)" % (
             lowest["lost_after_switch"], lowest["rx_ierrors"]),
         "wire": "%s packets between TRex's tx and the switch" % lowest["lost_before_switch"]}.get(lowest["limit"], "?"))
    if len(sides) > 1:
        msg += "; failed trials by side: " + ", ".join(
            "%s %d" % (s, sum(1 for r in failed if r["limit"] == s)) for s in sides)
    if clean:
        msg += "; the switch forwarded every packet up to %d pps" % max(clean)
    return msg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", default="127.0.0.1", help="TRex server (default %(default)s)")
    ap.add_argument("--trex-dir", default=os.environ.get("TREX_DIR", ""),
                    help="TRex directory (t-rex-64, automation/, external_libs/); default $TREX_DIR")
    ap.add_argument("--profile", default=os.path.join(_here, "smh_stl.py"))
    ap.add_argument("--tx-port", type=int, default=0)
    ap.add_argument("--rx-port", type=int, default=1)
    ap.add_argument("--rate-lo", type=parse_rate, default=parse_rate("100kpps"))
    ap.add_argument("--rate-hi", type=parse_rate, default=parse_rate("20mpps"))
    ap.add_argument("--rate", type=parse_rate, default=None, help="one trial at this rate instead of a search")
    ap.add_argument("--precision", type=float, default=0.01, help="stop when (hi-lo)/hi is at most this")
    ap.add_argument("--loss", type=float, default=0.0, help="loss ratio a trial may have and pass (NDR: 0)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per trial")
    ap.add_argument("--drain", type=float, default=1.0, help="seconds to wait after a trial")
    ap.add_argument("--copies", type=int, default=1, help="copies the switch sends to the rx port per packet")
    ap.add_argument("--latency-strict", action="store_true", help="a trial with latency drops fails")
    ap.add_argument("--switch-metrics", default="", help="the switch's /metrics URL, read before and after each trial")
    ap.add_argument("--switch-in", default="p0", help="the switch port cabled to the tx port (default %(default)s)")
    ap.add_argument("--switch-out", default="p1", help="the switch port cabled to the rx port (default %(default)s)")
    ap.add_argument("--csv", default="", help="CSV to write (default ndr-YYYYmmdd-HHMMSS.csv)")
    ap.add_argument("-t", "--tunables", action="append", default=[], help="profile tunables key=value[,...]")
    ap.add_argument("--dry-run", action="store_true", help="print the plan; contact nothing, write nothing")
    ap.add_argument("--console", default="", metavar="BATCH",
                    help="instead of trials: run trex-console --batch BATCH (e.g. README's start line), wait "
                    "--console-wait s, and print TRex's and the switch's counters of that run")
    ap.add_argument("--console-wait", type=float, default=12.0)
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
    if not a.dry_run:
        use_trex_dir(a.trex_dir)  # before smh_stl imports scapy
        api = import_trex()
    smh_stl = load_profile_module()
    a.tunable_argv = smh_stl.normalize_tunables(a.tunables)
    try:
        opts = smh_stl.parse_options(a.tunable_argv)
        streams = smh_stl.build_sessions(opts, a.tx_port, a.tx_port % 2)
    except smh_stl.ProfileError as e:
        return die(str(e))
    a.frame_len = len(streams[0]["pkt"])
    # The pg_ids the profile gives the tx port's latency streams: the
    # same function get_streams uses, for the same port.
    a.latency_pg_ids = [s["latency_pg_id"] for s in streams if s["latency_pg_id"] is not None]
    if not a.csv:
        a.csv = time.strftime("ndr-%Y%m%d-%H%M%S.csv")

    nlat = len(a.latency_pg_ids)
    ndata = len(streams) - nlat
    print("ndr plan: server %s, tx port %d, rx port %d" % (a.server, a.tx_port, a.rx_port))
    print("  profile %s, tunables %s" % (a.profile, " ".join(a.tunable_argv) or "(defaults)"))
    print("  streams on port %d: %d data + %d latency (pg_ids %s), frame %d B + FCS, SMH %d B, %s"
          % (a.tx_port, ndata, nlat, ",".join(str(p) for p in a.latency_pg_ids) or "-", a.frame_len,
             streams[0]["header_len"], "encoding " + {0: "list", 1: "blocks", 2: "group"}[streams[0]["enc"]]))
    if a.console:
        print("  trex-console --batch %s, then %g s for the traffic to end" % (a.console, a.console_wait))
    elif a.rate:
        print("  one trial at %d pps, %d s (+%g s drain), %d copies per packet" % (a.rate, a.duration, a.drain, a.copies))
    else:
        print("  search %d-%d pps, precision %g, allowed loss %g, %d s per trial (+%g s drain), %d copies per packet"
              % (a.rate_lo, a.rate_hi, a.precision, a.loss, a.duration, a.drain, a.copies))
        print("  trial 1: %d pps; pass -> search [rate, hi], fail -> [lo, rate]; at most %d trials"
              % ((a.rate_lo + a.rate_hi) / 2, worst_case_trials(a.rate_lo, a.rate_hi, a.precision)))
    print("  switch counters: %s" % (a.switch_metrics or "none (loss is end to end; --switch-metrics URL tells sides apart)"))
    if not a.console:
        print("  csv %s (%s)" % (a.csv, ",".join(CSV_FIELDS)))
    if a.dry_run:
        return 0

    c = api.STLClient(server=a.server)
    try:
        c.connect()
    except Exception as e:  # TRexError: no server there
        print("ndr: TRex server %s: %s (is `t-rex-64 -i` running there?)" % (a.server, str(e).strip()), file=sys.stderr)
        return 1
    if a.console:
        return console_run(c, a)
    lo, hi, best, trial = a.rate_lo, a.rate_hi, None, 0
    rows = []
    try:
        c.acquire(ports=[a.tx_port, a.rx_port], force=True)
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            while (a.rate and trial == 0) or (not a.rate and (hi - lo) / hi > a.precision):
                trial += 1
                rate = a.rate or (lo + hi) / 2
                row, table = run_trial(api, c, a, rate, trial)
                rows.append(row)
                w.writerow(row)
                f.flush()
                print("trial %d: %d pps: tx %d rx %d loss %s %s%s"
                      % (trial, rate, row["tx_pkts"], row["rx_pkts"], row["loss_ratio"],
                         "PASS" if row["pass"] else "fail",
                         "" if row["pass"] else " (lost: %s)" % row["limit"]))
                print(table)
                sys.stdout.flush()
                if row["pass"]:
                    lo, best = rate, row
                else:
                    hi = rate
            if a.rate:
                # One trial (the API run): it fails only on the switch's
                # loss; TRex's own is reported as such.
                print("ndr: one trial at %d pps: %s" % (a.rate, "no loss" if rows[0]["pass"] else verdict(rows, bool(a.switch_metrics))))
                return 1 if rows[0]["limit"] in ("switch", "end-to-end") or not rows[0]["tx_pkts"] else 0
            if best is None:
                print("ndr: no trial passed (%s); lower --rate-lo (%d pps)" % (verdict(rows, bool(a.switch_metrics)), a.rate_lo))
                return 1
            final = dict(best)
            final["trial"] = "ndr"
            final["limit"] = verdict(rows, bool(a.switch_metrics)).split(":")[0]
            w.writerow(final)
    finally:
        c.stop(ports=[a.tx_port])
        c.release(ports=[a.tx_port, a.rx_port])
        c.disconnect()
    print("NDR %s pps (%.3f Mpps, %s bit/s on the wire) with loss %s; %s; rows in %s"
          % (best["rate_pps"], best["rate_pps"] / 1e6, best["tx_bps_l1"], best["loss_ratio"],
             verdict(rows, bool(a.switch_metrics)), a.csv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
