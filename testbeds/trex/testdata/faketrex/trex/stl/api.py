"""A faithful fake of the part of TRex's client (trex.stl.api, v3.08) that
loads a stateless profile, for testing profiles where TRex is not installed
(CI). Where TRex is, testbeds/trex/loader_test.py runs against the real one
(--trex-dir).

What is copied from trex-core's scripts/automation/trex_control_plane/
interactive/trex, keeping its calling convention exactly:

  - STLProfile.load / load_py (stl/trex_stl_streams.py): kwargs without a
    "tunables" key become a "--key value" list beside them; the module is
    imported from the profile's directory and register().get_streams is
    called with direction, port_id and every kwarg; a SystemExit (-t --help)
    yields None; any other error becomes a TRexError with the traceback;
    get_streams must give defaults to all its positional arguments.
  - console_start_profiles: the console's `start -f FILE [--port P ...] -t ...`
    (stl/trex_stl_client.py start_line, utils/parsing_opts.py
    decode_tunables and convert_old_tunables_to_new_tunables): with "-t" and
    "=" in the line the first tunables word is decoded (true -> True,
    7 -> int, 0x10 -> int, 1.5 -> float, quotes stripped) into kwargs and
    re-listed as "--key value"; the profile is loaded per port with
    direction = port % 2; "-h"/"--help" among the tunables ends the command.
  - STLStream's flags (src MAC from the packet if its Ether layer sets src,
    dst likewise: flags 1 | 2) and the argument types STLVmFlowVar and
    STLVmWrFlowVar validate.

The server's checks are added where a profile can break them: a latency
pg_id used twice (on any ports) is refused, as TRex's server does, and
pkt_offset "Layer.field" must name a field of a layer of the packet.
"""

import argparse
import importlib
import os
import re
import sys
import traceback

from scapy.layers.l2 import Ether
from scapy.packet import Packet


class TRexError(Exception):
    def brief(self):
        return str(self)


def _validate_type(name, val, t):
    if not isinstance(val, t):
        raise TRexError("argument '%s' has invalid type '%s', expecting %s" % (name, type(val).__name__, t))


class STLFlowStatsInterface(object):
    def __init__(self, pg_id, vxlan=False, ieee_1588=False):
        _validate_type("pg_id", pg_id, int)
        self.pg_id = pg_id


class STLFlowStats(STLFlowStatsInterface):
    kind = "stats"


class STLFlowLatencyStats(STLFlowStatsInterface):
    kind = "latency"


class STLTXCont(object):
    def __init__(self, **kwargs):
        rates = [k for k in ("pps", "bps_L1", "bps_L2", "percentage") if k in kwargs]
        if len(rates) > 1:
            raise TRexError("exactly one rate")
        self.pps = kwargs.get("pps", 1)


class STLVmFlowVar(object):
    def __init__(self, name, init_value=None, min_value=0, max_value=255, size=4, step=1, op="inc",
                 value_list=None, split_to_cores=True, next_var=None):
        _validate_type("name", name, str)
        if size not in (1, 2, 4, 8):
            raise TRexError("flow var size %r: want 1, 2, 4 or 8" % size)
        if op not in ("inc", "dec", "random"):
            raise TRexError("flow var op %r" % op)
        for k, v in (("min_value", min_value), ("max_value", max_value), ("step", step)):
            _validate_type(k, v, int)
        if init_value is None:
            init_value = min_value
        if not min_value <= init_value <= max_value or max_value >= 1 << (8 * size):
            raise TRexError("flow var %s: init %d outside %d-%d or too big for %d bytes" % (name, init_value, min_value, max_value, size))
        self.name, self.init, self.min, self.max, self.size, self.step, self.op = name, init_value, min_value, max_value, size, step, op


class STLVmWrFlowVar(object):
    def __init__(self, fv_name, pkt_offset, offset_fixup=0, add_val=0, is_big=True):
        _validate_type("fv_name", fv_name, str)
        _validate_type("offset_fixup", offset_fixup, int)
        _validate_type("add_val", add_val, int)
        _validate_type("is_big", is_big, bool)
        if not -(1 << 31) <= add_val < 1 << 31:
            raise TRexError("add_val %d: the server keeps it in a signed 32-bit integer" % add_val)
        self.fv_name, self.pkt_offset, self.add_val = fv_name, pkt_offset, add_val


class STLVmFixIpv4(object):
    def __init__(self, offset):
        self.offset = offset


class STLScVmRaw(object):
    def __init__(self, list_of_commands=None, cache_size=None):
        self.commands = list(list_of_commands or [])


class STLPktBuilder(object):
    def __init__(self, pkt=None, pkt_buffer=None, vm=None, path_relative_to_profile=False, build_raw=False,
                 remove_fcs=True):
        if not isinstance(pkt, Packet):
            raise TRexError("STLPktBuilder: pkt must be a scapy packet")
        self.pkt = pkt
        self.vm = vm
        self.is_binary_source = False
        for c in (vm.commands if vm is not None else []):
            if isinstance(c, STLVmWrFlowVar) and isinstance(c.pkt_offset, str):
                layer, _, field = c.pkt_offset.partition(".")
                lyr = pkt.getlayer(layer.split(":")[0]) if layer else None
                if lyr is None or field not in [f.name for f in lyr.fields_desc]:
                    raise TRexError("pkt_offset %r: no such layer.field in the packet" % c.pkt_offset)

    def compile(self):
        # TRex's scapy never resolves an unset MAC (its DestMACField and
        # SourceMACField are patched not to ARP or route): they build as
        # zeros and the server writes the port's.
        p = self.pkt.copy()
        if isinstance(p, Ether):
            for f in ("src", "dst"):
                if f not in p.fields:
                    setattr(p, f, "00:00:00:00:00:00")
        self.bytes = bytes(p)

    def is_default_src_mac(self):
        p = self.pkt
        return not (isinstance(p, Ether) and "src" in p.fields)

    def is_default_dst_mac(self):
        p = self.pkt
        return not (isinstance(p, Ether) and "dst" in p.fields)


class STLStream(object):
    def __init__(self, name=None, packet=None, mode=STLTXCont(pps=1), enabled=True, self_start=True, isg=0.0,
                 flow_stats=None, next=None, stream_id=None, action_count=0, random_seed=0,
                 mac_src_override_by_pkt=None, mac_dst_override_mode=None, dummy_stream=False,
                 start_paused=False, core_id=-1):
        if packet is None:
            raise TRexError("the fake needs a packet")
        packet.compile()
        src = int(mac_src_override_by_pkt) if mac_src_override_by_pkt is not None else int(not packet.is_default_src_mac())
        dst = int(mac_dst_override_mode) if mac_dst_override_mode is not None else int(not packet.is_default_dst_mac())
        self.flags = (src & 1) + ((dst & 3) << 1)
        self.name, self.packet, self.mode, self.isg, self.flow_stats = name, packet, mode, float(isg), flow_stats
        self.pkt = packet.bytes

    def get_pg_id(self):
        return self.flow_stats.pg_id if self.flow_stats is not None else None


class STLProfile(object):
    def __init__(self, streams=None):
        self.streams = list(streams or [])

    def get_streams(self):
        return self.streams

    @staticmethod
    def get_module_tunables(module):
        func = module.register().get_streams
        argc = func.__code__.co_argcount
        tunables = func.__code__.co_varnames[1:argc]
        defaults = func.__defaults__
        if defaults is None:
            return {}
        if len(defaults) != (argc - 1):
            raise TRexError("Module should provide default values for all arguments on get_streams()")
        return dict(zip(tunables, defaults))

    @staticmethod
    def load_py(python_file, direction=0, port_id=0, **kwargs):
        if "tunables" not in kwargs:
            tunable_list = []
            for tunable_key in kwargs:
                tunable_list.extend(["--{}".format(tunable_key), str(kwargs[tunable_key])])
            kwargs["tunables"] = tunable_list
        if not os.path.isfile(python_file):
            raise TRexError("File '{0}' does not exist".format(python_file))
        basedir = os.path.dirname(python_file)
        sys.path.insert(0, basedir)
        dont_write_bytecode = sys.dont_write_bytecode
        try:
            sys.dont_write_bytecode = True
            file = os.path.basename(python_file).split(".")[0]
            module = __import__(file, globals(), locals(), [], 0)
            importlib.reload(module)
            t = STLProfile.get_module_tunables(module)
            try:
                streams = module.register().get_streams(direction=direction, port_id=port_id, **kwargs)
            except SystemExit:
                return None
            profile = STLProfile(streams)
            profile.meta = {"type": "python", "tunables": t}
            return profile
        except Exception:
            a, b, tb = sys.exc_info()
            x = "".join(traceback.format_list(traceback.extract_tb(tb)[1:])) + a.__name__ + ": " + str(b) + "\n"
            raise TRexError("\nPython Traceback follows:\n\n" + x)
        finally:
            sys.dont_write_bytecode = dont_write_bytecode
            sys.path.remove(basedir)

    @staticmethod
    def load(filename, direction=0, port_id=0, **kwargs):
        if not filename.endswith(".py"):
            raise TRexError("the fake loads Python profiles only")
        return STLProfile.load_py(filename, direction, port_id, **kwargs)


def decode_tunables(tunable_str):
    tunables = {}
    for token in tunable_str.split(","):
        m = re.search(r"(\S+)=(.+)", token)
        if not m:
            raise argparse.ArgumentTypeError("bad syntax for tunables: {0}".format(token))
        val = m.group(2)
        if val.startswith(("'", '"')) and val.endswith(("'", '"')) and len(val) > 1:
            val = val[1:-1]
        elif val.lower() in ("true", "on", "yes"):
            val = True
        elif val.lower() in ("false", "off", "no"):
            val = False
        elif val.startswith("0x"):
            val = int(val, 16)
        else:
            try:
                val = float(val) if "." in val else int(val)
            except ValueError:
                pass
        tunables[m.group(1)] = val
    return tunables


def convert_old_tunables_to_new_tunables(tunable_str, help=False):
    try:
        tunable_dict = decode_tunables(tunable_str)
    except argparse.ArgumentTypeError as e:
        raise TRexError(e)
    tunable_list = []
    for tunable_key in tunable_dict:
        tunable_list.extend(["--{}".format(tunable_key), str(tunable_dict[tunable_key])])
    if help:
        tunable_list.append("--help")
    return tunable_list


def console_start_profiles(line):
    """The console's `start` (profile loading part) for a line such as
    "-f smh_stl.py --port 0 1 -m 1mpps -t receivers=9,vary_seq=true": a dict
    port -> streams, or True when the tunables asked for --help."""
    words = line.split()
    if "-t" in words:
        i = words.index("-t")
        tunables, words = words[i + 1:], words[:i]
    else:
        tunables = []
    p = argparse.ArgumentParser(prog="start", add_help=False)
    p.add_argument("-f", dest="file", nargs=1, required=True)
    p.add_argument("--port", "-p", dest="ports", nargs="+", type=int, default=[0, 1])
    p.add_argument("-m", default="1")
    p.add_argument("-d", default=None)
    opts = p.parse_args(words)
    help_flags = ("-h", "--help")
    tunable_dict = {}
    if "-t" in line and "=" in line:
        tunable_dict = decode_tunables(tunables[0])
        new = convert_old_tunables_to_new_tunables(tunables[0])
        new.extend(tunables[1:])
        tunables = new
    tunable_dict["tunables"] = tunables
    out = {}
    for port_id in opts.ports:
        profile = STLProfile.load(opts.file[0], direction=port_id % 2, port_id=port_id, **tunable_dict)
        if any(h in tunables for h in help_flags):
            return True
        if profile is None:
            raise TRexError("Failed to convert STL profile")
        out[port_id] = profile.get_streams()
    latency = {}
    for port_id, streams in out.items():
        for s in streams:
            pg = latency_pg_id(s)
            if pg is not None:
                if pg in latency:
                    raise TRexError("latency pg_id %d is used on port %d and port %d" % (pg, latency[pg], port_id))
                latency[pg] = port_id
    return out


def latency_pg_id(s):
    """A stream's latency pg_id or None: this fake's STLStream, or TRex's
    (whose flow stats are its JSON fields)."""
    fs = getattr(s, "flow_stats", None)
    if isinstance(fs, STLFlowLatencyStats):
        return fs.pg_id
    f = getattr(s, "fields", {}).get("flow_stats") or {}
    if f.get("enabled") and f.get("rule_type") == "latency":
        return f["stream_id"]
    return None
