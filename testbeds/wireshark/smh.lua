-- Wireshark / tshark dissector for SMH, the Sparse Multicast Header
-- (docs/smh.md, version 1), on UDP port 9471 (a preference changes it).
--
--   wireshark -X lua_script:testbeds/wireshark/smh.lua capture.pcap
--   tshark -X lua_script:testbeds/wireshark/smh.lua -r capture.pcap -V -Y smh
--   or copy it to ~/.local/lib/wireshark/plugins/ (4.x) to load it always.
--
-- Every field of the fixed part, the Transfer Epoch (flag E, docs/smh.md
-- 2.2) and the feedback word (an ABORT's Count with its reason name, 2.3);
-- the receiver set as
-- written (ID list entries, block index + bitmap, group ID) and decoded to
-- receiver IDs (smh.receiver, one per ID, and smh.receivers, "1,5,9-12"). A
-- malformed header gets an expert error and smh.error, named after the
-- switch's drop reasons: truncated, bad_version, bad_type, bad_encoding,
-- bad_set, bad_feedback, bad_epoch.

local smh = Proto("smh", "Sparse Multicast Header")

local types = { [0] = "DATA", [1] = "ACK", [2] = "NACK", [3] = "CNP", [4] = "ABORT" }
local TYPE_ABORT = 4
-- ABORT reasons (headers.AbortReason's names).
local abort_reasons = { [1] = "io", [2] = "no_space", [3] = "read_only", [4] = "permission",
    [5] = "exists", [6] = "checksum", [7] = "bad_manifest" }
local encs = { [0] = "list", [1] = "blocks", [2] = "group" }

local F = smh.fields
F.version = ProtoField.uint8("smh.version", "Version", base.DEC, nil, 0xF0)
F.type = ProtoField.uint8("smh.type", "Type", base.DEC, types, 0x0F)
F.flags = ProtoField.uint8("smh.flags", "Flags", base.HEX)
F.agg = ProtoField.bool("smh.flags.agg", "Aggregated", 8, nil, 0x80)
F.retx = ProtoField.bool("smh.flags.retx", "Retransmission", 8, nil, 0x40)
F.cong = ProtoField.bool("smh.flags.cong", "Congestion experienced", 8, nil, 0x20)
F.final = ProtoField.bool("smh.flags.final", "Final", 8, nil, 0x10)
F.epoch_flag = ProtoField.bool("smh.flags.epoch", "Transfer Epoch present", 8, nil, 0x08)
F.flags_rsv = ProtoField.uint8("smh.flags.reserved", "Reserved flags", base.HEX, nil, 0x07)
F.hop = ProtoField.uint8("smh.hop", "Hop Limit", base.DEC)
F.enc = ProtoField.uint8("smh.enc", "Encoding", base.DEC, encs, 0xF0)
F.rsv = ProtoField.uint8("smh.rsv", "Reserved", base.HEX, nil, 0x0F)
F.setcount = ProtoField.uint16("smh.setcount", "Set Count", base.DEC)
F.src = ProtoField.uint16("smh.src", "Source ID", base.DEC)
F.sess = ProtoField.uint16("smh.sess", "Session ID", base.DEC)
F.seq = ProtoField.uint32("smh.seq", "Sequence Number", base.DEC)
F.epoch = ProtoField.uint32("smh.epoch", "Transfer Epoch", base.HEX)
F.fb = ProtoField.bytes("smh.fb", "Feedback word")
F.fb_count = ProtoField.uint16("smh.fb.count", "Count", base.DEC)
F.fb_reason = ProtoField.string("smh.fb.abort_reason", "Abort reason")
F.fb_speaks = ProtoField.uint16("smh.fb.speaks_for", "Speaks For", base.DEC)
F.fb_reporter = ProtoField.uint16("smh.fb.reporter", "Reporter ID", base.DEC)
F.set = ProtoField.bytes("smh.set", "Receiver set")
F.id = ProtoField.uint16("smh.id", "Receiver ID", base.DEC)
F.block = ProtoField.bytes("smh.block", "Block")
F.block_index = ProtoField.uint16("smh.block.index", "Block Index", base.DEC)
F.block_bitmap = ProtoField.uint64("smh.block.bitmap", "Bitmap", base.HEX)
F.group = ProtoField.uint32("smh.group", "Group ID", base.DEC_HEX)
F.receiver = ProtoField.uint16("smh.receiver", "Receiver", base.DEC)
F.receivers = ProtoField.string("smh.receivers", "Receivers")
F.nreceivers = ProtoField.uint32("smh.receiver_count", "Number of receivers", base.DEC)
F.header_len = ProtoField.uint16("smh.header_len", "Header length", base.DEC)
F.payload_len = ProtoField.uint32("smh.payload_len", "Payload length", base.DEC)
F.err = ProtoField.string("smh.error", "Malformed")

local ex_malformed = ProtoExpert.new("smh.malformed", "Malformed SMH", expert.group.MALFORMED, expert.severity.ERROR)
smh.experts = { ex_malformed }

smh.prefs.udp_port = Pref.uint("UDP port", 9471, "UDP destination port of SMH (docs/smh.md 1)")

local FIXED, EPOCH, FBWORD = 14, 4, 6
local entry_len = { [0] = 2, [1] = 10, [2] = 4 }

-- ids of bitmap word w (0..2^32-1) starting at base, appended to out.
local function bits_to_ids(w, base, out)
    for i = 0, 31 do
        if w % 2 == 1 then
            out[#out + 1] = base + i
        end
        w = math.floor(w / 2)
    end
end

-- "1,5,9-12" as headers.FormatIDSet writes it.
local function format_ids(ids)
    local parts, i = {}, 1
    while i <= #ids do
        local j = i
        while j < #ids and ids[j + 1] == ids[j] + 1 do
            j = j + 1
        end
        if j == i then
            parts[#parts + 1] = tostring(ids[i])
        else
            parts[#parts + 1] = ids[i] .. "-" .. ids[j]
        end
        i = j + 1
    end
    return table.concat(parts, ",")
end

local function malformed(tree, pinfo, item, reason, text)
    tree:add(F.err, reason):set_generated()
    item:add_proto_expert_info(ex_malformed, text)
    pinfo.cols.info:append(" [malformed: " .. reason .. "]")
end

function smh.dissector(tvb, pinfo, tree)
    local len = tvb:len()
    pinfo.cols.protocol = "SMH"
    local root = tree:add(smh, tvb(0, math.min(len, FIXED)))
    if len < FIXED then
        malformed(root, pinfo, root, "truncated", "shorter than the 14-byte fixed part")
        return len
    end
    local ver = tvb(0, 1):bitfield(0, 4)
    local typ = tvb(0, 1):bitfield(4, 4)
    local enc = tvb(3, 1):bitfield(0, 4)
    local count = tvb(4, 2):uint()
    root:add(F.version, tvb(0, 1))
    root:add(F.type, tvb(0, 1))
    local ft = root:add(F.flags, tvb(1, 1))
    ft:add(F.agg, tvb(1, 1))
    ft:add(F.retx, tvb(1, 1))
    ft:add(F.cong, tvb(1, 1))
    ft:add(F.final, tvb(1, 1))
    ft:add(F.epoch_flag, tvb(1, 1))
    ft:add(F.flags_rsv, tvb(1, 1))
    root:add(F.hop, tvb(2, 1))
    root:add(F.enc, tvb(3, 1))
    root:add(F.rsv, tvb(3, 1))
    root:add(F.setcount, tvb(4, 2))
    root:add(F.src, tvb(6, 2))
    root:add(F.sess, tvb(8, 2))
    root:add(F.seq, tvb(10, 4))

    local tname = types[typ] or ("type " .. typ)
    pinfo.cols.info:set(string.format("SMH %s src=%d sess=%d seq=%d", tname,
        tvb(6, 2):uint(), tvb(8, 2):uint(), tvb(10, 4):uint()))

    if ver ~= 1 then
        malformed(root, pinfo, root, "bad_version", "version " .. ver .. ", want 1")
        return len
    end
    if typ > TYPE_ABORT then
        malformed(root, pinfo, root, "bad_type", "reserved type " .. typ)
        return len
    end
    if entry_len[enc] == nil then
        malformed(root, pinfo, root, "bad_encoding", "reserved encoding " .. enc)
        return len
    end
    local feedback = typ >= 1 and typ <= TYPE_ABORT
    local start = FIXED
    if tvb(1, 1):bitfield(4, 1) == 1 then
        -- E: the Transfer Epoch follows the fixed part.
        if len < FIXED + EPOCH or (feedback and len < FIXED + EPOCH + FBWORD) then
            -- (as the switch checks: lengths before the epoch's value)
            malformed(root, pinfo, root, "truncated", "Transfer Epoch or feedback word cut short")
            return len
        end
        local epoch = tvb(FIXED, EPOCH):uint()
        local et = root:add(F.epoch, tvb(FIXED, EPOCH))
        pinfo.cols.info:append(string.format(" epoch=0x%08x", epoch))
        if epoch == 0 then
            malformed(root, pinfo, et, "bad_epoch", "E set with a zero Transfer Epoch")
            return len
        end
        start = FIXED + EPOCH
    end
    local speaks, fbcount = 0, 0
    if feedback then
        local w = start
        if len < w + FBWORD then
            malformed(root, pinfo, root, "truncated", "feedback word cut short")
            return len
        end
        local fw = root:add(F.fb, tvb(w, FBWORD))
        fw:add(F.fb_count, tvb(w, 2))
        fw:add(F.fb_speaks, tvb(w + 2, 2))
        fw:add(F.fb_reporter, tvb(w + 4, 2))
        fbcount, speaks = tvb(w, 2):uint(), tvb(w + 2, 2):uint()
        if typ == TYPE_ABORT then
            local reason = abort_reasons[fbcount] or "unknown"
            fw:add(F.fb_reason, reason):set_generated()
            fw:set_text(string.format("Feedback: abort reason %d (%s), speaks for %d, reporter %d",
                fbcount, reason, speaks, tvb(w + 4, 2):uint()))
        else
            fw:set_text(string.format("Feedback: count %d, speaks for %d, reporter %d",
                fbcount, speaks, tvb(w + 4, 2):uint()))
        end
        start = w + FBWORD
    end
    local set_end = start + count * entry_len[enc]
    if len < set_end then
        malformed(root, pinfo, root, "truncated", string.format(
            "set of %d %s entries needs %d bytes, packet has %d", count, encs[enc], set_end, len))
        return len
    end
    root:set_len(set_end)

    local ids, bad, group = {}, nil, nil
    local st = root:add(F.set, tvb(start, set_end - start))
    st:set_text(string.format("Receiver set: %d %s entr%s", count, encs[enc], count == 1 and "y" or "ies"))
    if enc == 0 then
        for i = 0, count - 1 do
            local r = tvb(start + 2 * i, 2)
            st:add(F.id, r)
            local id = r:uint()
            if #ids > 0 and id <= ids[#ids] and not bad then
                bad = "IDs not strictly ascending"
            end
            ids[#ids + 1] = id
        end
    elseif enc == 1 then
        local last = -1
        for i = 0, count - 1 do
            local off = start + 10 * i
            local b = tvb(off, 2):uint()
            local hi, lo = tvb(off + 2, 4):uint(), tvb(off + 6, 4):uint()
            local bt = st:add(F.block, tvb(off, 10))
            bt:add(F.block_index, tvb(off, 2))
            bt:add(F.block_bitmap, tvb(off + 2, 8))
            if not bad and (b <= last or b > 1023 or (hi == 0 and lo == 0)) then
                bad = "blocks not ascending, index above 1023, or empty bitmap"
            end
            last = b
            local first = #ids + 1
            bits_to_ids(lo, b * 64, ids)
            bits_to_ids(hi, b * 64 + 32, ids)
            bt:set_text(string.format("Block %d: receivers %s", b, format_ids({ table.unpack(ids, first) })))
        end
    else
        if count ~= 1 or feedback then
            -- With Set Count 0 there is no Group ID to read: the header may
            -- end right here.
            bad = "group encoding needs DATA and Set Count 1"
        else
            st:add(F.group, tvb(start, 4))
            group = tvb(start, 4):uint()
        end
    end

    if enc ~= 2 then
        local s = format_ids(ids)
        local rt = root:add(F.receivers, s)
        rt:set_generated()
        root:add(F.nreceivers, #ids):set_generated()
        for _, id in ipairs(ids) do
            rt:add(F.receiver, id):set_generated()
        end
        pinfo.cols.info:append(" " .. encs[enc] .. " [" .. s .. "]")
    elseif group ~= nil then
        pinfo.cols.info:append(string.format(" group %d", group))
    end
    if typ == TYPE_ABORT then
        pinfo.cols.info:append(string.format(" reason=%s speaks=%d", abort_reasons[fbcount] or fbcount, speaks))
    elseif feedback then
        pinfo.cols.info:append(string.format(" count=%d speaks=%d", fbcount, speaks))
    end
    root:add(F.header_len, set_end):set_generated()
    root:add(F.payload_len, len - set_end):set_generated()

    if bad then
        malformed(root, pinfo, st, "bad_set", bad)
    elseif not feedback and count == 0 then
        malformed(root, pinfo, st, "bad_set", "DATA with an empty set")
    elseif not feedback and tvb(1, 1):bitfield(0, 1) == 1 then
        malformed(root, pinfo, root, "bad_feedback", "DATA with the Aggregated flag")
    elseif feedback and speaks == 0 then
        malformed(root, pinfo, root, "bad_feedback", "Speaks For is 0")
    elseif feedback and fbcount == 0 and typ ~= 1 then
        malformed(root, pinfo, root, "bad_feedback", tname .. " with Count 0")
    elseif typ == TYPE_ABORT and count == 0 then
        malformed(root, pinfo, st, "bad_feedback", "ABORT naming no receiver")
    end

    if len > set_end then
        Dissector.get("data"):call(tvb(set_end):tvb(), pinfo, tree)
    end
    return len
end

local registered_port = nil
local function register_port()
    local t = DissectorTable.get("udp.port")
    if registered_port ~= nil then
        t:remove(registered_port, smh)
    end
    registered_port = smh.prefs.udp_port
    t:add(registered_port, smh)
end

function smh.prefs_changed()
    if registered_port ~= smh.prefs.udp_port then
        register_port()
    end
end

register_port()
