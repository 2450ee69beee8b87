package headers

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
	RejectVersion    = 1 // unknown record version
	RejectKind       = 2 // unknown kind, or an event kind on the command ring
	RejectCount      = 3 // Count out of range for the kind
	RejectPort       = 4 // a port index the switch does not have
	RejectOrder      = 5 // a record outside BEGIN..COMMIT, or a generation change inside a batch
	RejectGeneration = 6 // a batch whose generation is not above the applied one
	RejectGroup      = 7 // removing from or deleting a group that does not exist
	RejectMembers    = 8 // members not strictly ascending
	RejectReserved   = 9 // reserved bytes not zero
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
