package headers

import (
	"encoding/binary"
	"strconv"
)

// Control ring records: the only thing the control process and the dataplane
// share (docs/control.md). Two single-producer single-consumer rings live in
// one mmapped file under /dev/shm: commands from control to the dataplane and
// events back. Every slot holds one fixed-size, versioned record:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|    Version    |     Kind      |    Count      |   Reserved    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                           Argument                            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     Generation (64 bits)                      |
//	+                                                               +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  Body (48 bytes, per Kind)                    |
//	~                                                               ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Count says how many entries of the Body are used; Argument is a per-kind
// 32-bit value (a group ID, a port index, an error code). All fields are
// little-endian: both ends run on the same host, and the record never
// crosses a wire.
//
// Commands (control -> dataplane). A batch is BEGIN, any number of ROUTES,
// GROUP_*, then COMMIT, all with the batch's generation; the dataplane
// applies a batch off the fast path, publishes one new table snapshot, and
// answers APPLIED. A BEGIN with Argument 1 starts a full resync: the tables
// are rebuilt from the batch alone.
//
//	kind             Argument      Count   Body
//	BEGIN            1 = full      0       -
//	ROUTES           0             1-12    12 x (receiver u16, primary u8, backup u8)
//	GROUP_SET        group ID      0-24    24 x member u16 (replace; more in GROUP_ADD)
//	GROUP_ADD        group ID      1-24    24 x member u16
//	GROUP_REMOVE     group ID      1-24    24 x member u16
//	GROUP_DELETE     group ID      0       -
//	COMMIT           0             0       -
//
// Events (dataplane -> control):
//
//	kind             Argument           Count  Body
//	HELLO            0                  0      boot ID u64, applied generation u64
//	APPLIED          0                  0      apply nanoseconds u64
//	REJECTED         error code         0      offending kind u8, record index u32
//	LINK             port index         0      state u8, loss ppm u32, detect ns u64
//	REROUTED         port index         0      entries moved u32, swap ns u64
//
// Port indexes are the switch configuration's port order; 0xFF is "none".
const (
	RingRecordLen  = 64
	RingVersion    = 1
	ringBodyOff    = 16
	RingBodyLen    = RingRecordLen - ringBodyOff
	RoutesPerRec   = RingBodyLen / 4
	MembersPerRec  = RingBodyLen / 2
	RingFullResync = 1
)

// RecordKind is a ring record's kind.
type RecordKind uint8

// Command kinds.
const (
	CmdBegin RecordKind = 1 + iota
	CmdRoutes
	CmdGroupSet
	CmdGroupAdd
	CmdGroupRemove
	CmdGroupDelete
	CmdCommit
)

// Event kinds.
const (
	EvHello RecordKind = 64 + iota
	EvApplied
	EvRejected
	EvLink
	EvRerouted
)

// Link states in an EvLink record.
const (
	LinkUp       = 1
	LinkDegraded = 2
	LinkDown     = 3
)

// Rejection codes (the Argument of EvRejected). Each is counted by the
// dataplane under sparsecast_switch_ring_rejected_total{reason}.
const (
	RejectVersion    = 1  // unknown record version
	RejectKind       = 2  // unknown kind, or an event kind on the command ring
	RejectCount      = 3  // Count out of range for the kind
	RejectPort       = 4  // a port index the switch does not have
	RejectOrder      = 5  // a record outside BEGIN..COMMIT, or a generation change inside a batch
	RejectGeneration = 6  // a batch whose generation is not above the applied one
	RejectGroup      = 7  // removing from or deleting a group that does not exist
	RejectMembers    = 8  // members not strictly ascending
	RejectReserved   = 9  // reserved bytes not zero
	RejectLength     = 10 // a record that is not RingRecordLen bytes (never one taken from a ring)

	// NumRejectCodes bounds the codes: counters indexed by code have this
	// many entries (index 0, "no error", unused).
	NumRejectCodes = RejectLength + 1
)

// RecordError is the sentinel for each rejection code, so decoders never
// allocate an error per record.
var recordErrors = [...]error{
	RejectVersion:    errRing("unknown record version"),
	RejectKind:       errRing("unknown record kind"),
	RejectCount:      errRing("count out of range"),
	RejectPort:       errRing("port index out of range"),
	RejectOrder:      errRing("record outside a batch"),
	RejectGeneration: errRing("stale generation"),
	RejectGroup:      errRing("no such group"),
	RejectMembers:    errRing("members not strictly ascending"),
	RejectReserved:   errRing("reserved bytes not zero"),
	RejectLength:     errRing("record not 64 bytes"),
}

type errRing string

func (e errRing) Error() string { return "ring record: " + string(e) }

// RejectError returns the sentinel error of a rejection code, or nil.
func RejectError(code uint32) error {
	if int(code) < len(recordErrors) {
		return recordErrors[code]
	}
	return nil
}

// rejectNames are the reason labels of sparsecast_switch_ring_rejected_total.
var rejectNames = [NumRejectCodes]string{
	RejectVersion:    "version",
	RejectKind:       "kind",
	RejectCount:      "count",
	RejectPort:       "port",
	RejectOrder:      "order",
	RejectGeneration: "generation",
	RejectGroup:      "group",
	RejectMembers:    "members",
	RejectReserved:   "reserved",
	RejectLength:     "length",
}

// RejectReason returns the metric label of a rejection code ("port",
// "members", ...), or "unknown" for 0 and codes this version does not know.
func RejectReason(code uint32) string {
	if code > 0 && int(code) < len(rejectNames) {
		return rejectNames[code]
	}
	return "unknown"
}

// Record is a typed view of one ring record: RingRecordLen bytes, read and
// written in place (the model is gVisor's header.UDP). Accessors do not
// check the kind; call Validate first on untrusted bytes.
//
// Body layouts, offsets from the start of the Body (byte 16), all fields
// little-endian and every byte not listed zero:
//
//	ROUTES        4*i: receiver u16, 4*i+2: primary u8, 4*i+3: backup u8, i < Count
//	GROUP_*       2*i: member u16, i < Count
//	HELLO         0: boot ID u64, 8: applied generation u64 (= Generation)
//	APPLIED       0: apply nanoseconds u64
//	REJECTED      0: offending kind u8, 4: record index u32
//	LINK          0: state u8, 4: loss ppm u32, 8: detect nanoseconds u64
//	REROUTED      0: entries moved u32, 8: swap nanoseconds u64
//
// A ROUTES entry whose primary is 0xFF must have backup 0xFF too: it removes
// the receiver's route (control sends it for an unreachable receiver).
type Record []byte

// Header field offsets.
const (
	ringOffVersion  = 0
	ringOffKind     = 1
	ringOffCount    = 2
	ringOffReserved = 3
	ringOffArgument = 4
	ringOffGen      = 8

	// Body field offsets (absolute).
	ringOffBootID   = ringBodyOff
	ringOffApplied  = ringBodyOff + 8
	ringOffNanos0   = ringBodyOff     // APPLIED
	ringOffRejKind  = ringBodyOff     // REJECTED
	ringOffRejIndex = ringBodyOff + 4 // REJECTED
	ringOffState    = ringBodyOff     // LINK
	ringOffLoss     = ringBodyOff + 4 // LINK
	ringOffMoved    = ringBodyOff     // REROUTED
	ringOffNanos8   = ringBodyOff + 8 // LINK, REROUTED
)

// RingNoPort is the port index meaning "none".
const RingNoPort = 0xFF

func (r Record) Version() uint8         { return r[ringOffVersion] }
func (r Record) Kind() RecordKind       { return RecordKind(r[ringOffKind]) }
func (r Record) Count() int             { return int(r[ringOffCount]) }
func (r Record) Argument() uint32       { return binary.LittleEndian.Uint32(r[ringOffArgument:]) }
func (r Record) Generation() uint64     { return binary.LittleEndian.Uint64(r[ringOffGen:]) }
func (r Record) SetVersion(v uint8)     { r[ringOffVersion] = v }
func (r Record) SetKind(k RecordKind)   { r[ringOffKind] = uint8(k) }
func (r Record) SetCount(n int)         { r[ringOffCount] = uint8(n) }
func (r Record) SetArgument(a uint32)   { binary.LittleEndian.PutUint32(r[ringOffArgument:], a) }
func (r Record) SetGeneration(g uint64) { binary.LittleEndian.PutUint64(r[ringOffGen:], g) }

// Full reports whether a BEGIN starts a full resync.
func (r Record) Full() bool { return r.Argument() == RingFullResync }

// Group returns the group ID of a GROUP_* record.
func (r Record) Group() uint32 { return r.Argument() }

// Route returns entry i of a ROUTES record.
func (r Record) Route(i int) (receiver uint16, primary, backup uint8) {
	o := ringBodyOff + 4*i
	return binary.LittleEndian.Uint16(r[o:]), r[o+2], r[o+3]
}

// SetRoute writes entry i of a ROUTES record (Count is not changed).
func (r Record) SetRoute(i int, receiver uint16, primary, backup uint8) {
	o := ringBodyOff + 4*i
	binary.LittleEndian.PutUint16(r[o:], receiver)
	r[o+2], r[o+3] = primary, backup
}

// Member returns member i of a GROUP_* record.
func (r Record) Member(i int) uint16 { return binary.LittleEndian.Uint16(r[ringBodyOff+2*i:]) }

// SetMember writes member i of a GROUP_* record (Count is not changed).
func (r Record) SetMember(i int, m uint16) { binary.LittleEndian.PutUint16(r[ringBodyOff+2*i:], m) }

// Event fields.
func (r Record) BootID() uint64           { return binary.LittleEndian.Uint64(r[ringOffBootID:]) }
func (r Record) AppliedGen() uint64       { return binary.LittleEndian.Uint64(r[ringOffApplied:]) }
func (r Record) ApplyNanos() uint64       { return binary.LittleEndian.Uint64(r[ringOffNanos0:]) }
func (r Record) RejectedKind() RecordKind { return RecordKind(r[ringOffRejKind]) }
func (r Record) RejectedIndex() uint32    { return binary.LittleEndian.Uint32(r[ringOffRejIndex:]) }
func (r Record) Code() uint32             { return r.Argument() }
func (r Record) Port() uint8              { return uint8(r.Argument()) }
func (r Record) LinkState() uint8         { return r[ringOffState] }
func (r Record) LossPPM() uint32          { return binary.LittleEndian.Uint32(r[ringOffLoss:]) }
func (r Record) Moved() uint32            { return binary.LittleEndian.Uint32(r[ringOffMoved:]) }
func (r Record) EventNanos() uint64       { return binary.LittleEndian.Uint64(r[ringOffNanos8:]) }

// start clears b's first RingRecordLen bytes and writes the common header.
// b must hold at least RingRecordLen bytes (a caller's fixed buffer).
func start(b []byte, k RecordKind, count int, arg uint32, gen uint64) Record {
	r := Record(b[:RingRecordLen:RingRecordLen])
	clear(r)
	r[ringOffVersion] = RingVersion
	r[ringOffKind] = uint8(k)
	r[ringOffCount] = uint8(count)
	r.SetArgument(arg)
	r.SetGeneration(gen)
	return r
}

// Begin fills b with a BEGIN record; full starts a full resync.
func Begin(b []byte, gen uint64, full bool) Record {
	arg := uint32(0)
	if full {
		arg = RingFullResync
	}
	return start(b, CmdBegin, 0, arg, gen)
}

// Commit fills b with a COMMIT record.
func Commit(b []byte, gen uint64) Record { return start(b, CmdCommit, 0, 0, gen) }

// RingRoute is one entry of a ROUTES record.
type RingRoute struct {
	Receiver uint16
	Primary  uint8
	Backup   uint8
}

// Routes fills b with a ROUTES record holding the first RoutesPerRec (at
// most) of routes and returns it with how many it took.
func Routes(b []byte, gen uint64, routes []RingRoute) (Record, int) {
	n := min(len(routes), RoutesPerRec)
	r := start(b, CmdRoutes, n, 0, gen)
	for i, e := range routes[:n] {
		r.SetRoute(i, e.Receiver, e.Primary, e.Backup)
	}
	return r, n
}

func groupRec(b []byte, k RecordKind, gen uint64, group uint32, members []uint16) (Record, int) {
	n := min(len(members), MembersPerRec)
	r := start(b, k, n, group, gen)
	for i, m := range members[:n] {
		r.SetMember(i, m)
	}
	return r, n
}

// GroupSet fills b with a GROUP_SET record replacing group's members with
// the first MembersPerRec (at most) of members, and returns it with how many
// it took; the rest follow in GroupAdd records.
func GroupSet(b []byte, gen uint64, group uint32, members []uint16) (Record, int) {
	return groupRec(b, CmdGroupSet, gen, group, members)
}

// GroupAdd is GroupSet for GROUP_ADD (members must not be empty).
func GroupAdd(b []byte, gen uint64, group uint32, members []uint16) (Record, int) {
	return groupRec(b, CmdGroupAdd, gen, group, members)
}

// GroupRemove is GroupSet for GROUP_REMOVE (members must not be empty).
func GroupRemove(b []byte, gen uint64, group uint32, members []uint16) (Record, int) {
	return groupRec(b, CmdGroupRemove, gen, group, members)
}

// GroupDelete fills b with a GROUP_DELETE record.
func GroupDelete(b []byte, gen uint64, group uint32) Record {
	return start(b, CmdGroupDelete, 0, group, gen)
}

// Hello fills b with a HELLO event.
func Hello(b []byte, bootID, applied uint64) Record {
	r := start(b, EvHello, 0, 0, applied)
	binary.LittleEndian.PutUint64(r[ringOffBootID:], bootID)
	binary.LittleEndian.PutUint64(r[ringOffApplied:], applied)
	return r
}

// Applied fills b with an APPLIED event for batch gen, published at nanos
// (CLOCK_MONOTONIC).
func Applied(b []byte, gen, nanos uint64) Record {
	r := start(b, EvApplied, 0, 0, gen)
	binary.LittleEndian.PutUint64(r[ringOffNanos0:], nanos)
	return r
}

// Rejected fills b with a REJECTED event: batch gen was refused because
// record index (BEGIN is 0), of kind kind, failed with code.
func Rejected(b []byte, gen uint64, code uint32, kind RecordKind, index uint32) Record {
	r := start(b, EvRejected, 0, code, gen)
	r[ringOffRejKind] = uint8(kind)
	binary.LittleEndian.PutUint32(r[ringOffRejIndex:], index)
	return r
}

// Link fills b with a LINK event; gen is the applied generation at the time.
func Link(b []byte, gen uint64, port, state uint8, lossPPM uint32, detectNanos uint64) Record {
	r := start(b, EvLink, 0, uint32(port), gen)
	r[ringOffState] = state
	binary.LittleEndian.PutUint32(r[ringOffLoss:], lossPPM)
	binary.LittleEndian.PutUint64(r[ringOffNanos8:], detectNanos)
	return r
}

// Rerouted fills b with a REROUTED event.
func Rerouted(b []byte, gen uint64, port uint8, moved uint32, swapNanos uint64) Record {
	r := start(b, EvRerouted, 0, uint32(port), gen)
	binary.LittleEndian.PutUint32(r[ringOffMoved:], moved)
	binary.LittleEndian.PutUint64(r[ringOffNanos8:], swapNanos)
	return r
}

// IsCommand reports whether k is a command kind (control -> dataplane).
func (k RecordKind) IsCommand() bool { return k >= CmdBegin && k <= CmdCommit }

// IsEvent reports whether k is an event kind (dataplane -> control).
func (k RecordKind) IsEvent() bool { return k >= EvHello && k <= EvRerouted }

var kindNames = [...]string{
	CmdBegin: "begin", CmdRoutes: "routes", CmdGroupSet: "group_set", CmdGroupAdd: "group_add",
	CmdGroupRemove: "group_remove", CmdGroupDelete: "group_delete", CmdCommit: "commit",
	EvHello: "hello", EvApplied: "applied", EvRejected: "rejected", EvLink: "link", EvRerouted: "rerouted",
}

func (k RecordKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// zero reports whether b is all zero bytes.
func zero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Validate checks a record on its own: length, version, kind, Count for the kind,
// Argument where the kind fixes it, reserved and unused bytes zero, port
// indexes below nports (0xFF where "none" is allowed: a backup, a route
// removal, never a LINK or REROUTED port), group members strictly
// ascending. It returns 0 or the rejection code; RejectErr gives the error.
// Batch rules (order, generation, existing groups) are the applier's.
// Validate does not allocate.
func (r Record) Validate(nports int) uint32 {
	if len(r) != RingRecordLen {
		return RejectLength
	}
	if r.Version() != RingVersion {
		return RejectVersion
	}
	k := r.Kind()
	if !k.IsCommand() && !k.IsEvent() {
		return RejectKind
	}
	n := r.Count()
	if r[ringOffReserved] != 0 {
		return RejectReserved
	}
	body := r[ringBodyOff:]
	switch k {
	case CmdBegin:
		if n != 0 {
			return RejectCount
		}
		if a := r.Argument(); a != 0 && a != RingFullResync || !zero(body) {
			return RejectReserved
		}
	case CmdCommit, CmdGroupDelete:
		if n != 0 {
			return RejectCount
		}
		if k == CmdCommit && r.Argument() != 0 || !zero(body) {
			return RejectReserved
		}
	case CmdRoutes:
		if n < 1 || n > RoutesPerRec {
			return RejectCount
		}
		if r.Argument() != 0 || !zero(body[4*n:]) {
			return RejectReserved
		}
		for i := 0; i < n; i++ {
			_, p, b := r.Route(i)
			if p == RingNoPort {
				if b != RingNoPort {
					return RejectPort
				}
				continue
			}
			if int(p) >= nports || b != RingNoPort && int(b) >= nports {
				return RejectPort
			}
		}
	case CmdGroupSet, CmdGroupAdd, CmdGroupRemove:
		if n > MembersPerRec || n == 0 && k != CmdGroupSet {
			return RejectCount
		}
		if !zero(body[2*n:]) {
			return RejectReserved
		}
		for i := 1; i < n; i++ {
			if r.Member(i) <= r.Member(i-1) {
				return RejectMembers
			}
		}
	case EvHello:
		if n != 0 {
			return RejectCount
		}
		if r.Argument() != 0 || !zero(body[16:]) {
			return RejectReserved
		}
		if r.Generation() != r.AppliedGen() {
			return RejectGeneration
		}
	case EvApplied:
		if n != 0 {
			return RejectCount
		}
		if r.Argument() != 0 || !zero(body[8:]) {
			return RejectReserved
		}
	case EvRejected:
		if n != 0 {
			return RejectCount
		}
		if !zero(body[1:4]) || !zero(body[8:]) {
			return RejectReserved
		}
	case EvLink, EvRerouted:
		if n != 0 {
			return RejectCount
		}
		if r.Argument() > 0xFF {
			return RejectReserved
		}
		if k == EvLink && !zero(body[1:4]) || k == EvRerouted && !zero(body[4:8]) || !zero(body[16:]) {
			return RejectReserved
		}
		if int(r.Port()) >= nports {
			return RejectPort
		}
	}
	return 0
}
