// Package control is sparsecast's control process: it reads the fabric
// description, computes each switch's route table (primary and backup egress
// per receiver) and group table, and pushes them to the switch through the
// shared-memory ring (docs/control.md). It never imports the dataplane and
// never touches packet memory: the ring record format in headers/ is the only
// contract between them.
package control

// NoPort marks a route entry with no port (no backup, or unreachable).
const NoPort = 0xFF

// Route is one receiver's entry in one switch's table. Ports are indexes in
// the switch's port order (SwitchTables.Ports).
type Route struct {
	Receiver uint16 `json:"receiver"`
	Primary  uint8  `json:"primary"`
	Backup   uint8  `json:"backup"`
}

// SwitchTables is everything control computes for one switch.
type SwitchTables struct {
	Switch string              `json:"switch"`
	Ports  []string            `json:"ports"`
	Routes []Route             `json:"routes"` // ascending by receiver
	Groups map[uint32][]uint16 `json:"groups"` // members strictly ascending
}

// GroupOpKind says what a GroupOp does.
type GroupOpKind uint8

const (
	GroupSet    GroupOpKind = iota + 1 // replace the members (creates the group)
	GroupAdd                           // add members
	GroupRemove                        // remove members
	GroupDelete                        // delete the group
)

// GroupOp is one membership change.
type GroupOp struct {
	Kind    GroupOpKind
	Group   uint32
	Members []uint16 // strictly ascending
}

// Event is what the dataplane reports through the event ring.
type Event struct {
	Kind       string // "hello", "applied", "rejected", "link", "rerouted"
	Generation uint64
	BootID     uint64 // hello
	Port       uint8  // link, rerouted
	LinkState  uint8  // headers.LinkUp / LinkDegraded / LinkDown
	LossPPM    uint32 // link
	Moved      uint32 // rerouted: entries moved to their backup
	Code       uint32 // rejected: headers.Reject*
	Index      uint32 // rejected: record index in the batch
	Nanos      uint64 // applied: publish timestamp (CLOCK_MONOTONIC ns); link: detect ns; rerouted: swap ns
}

// Ring is the control side of one switch's shared-memory rings.
type Ring interface {
	// PushFull sends a full resync batch with generation gen.
	PushFull(gen uint64, t *SwitchTables) error
	// PushRoutes sends changed route entries as one batch.
	PushRoutes(gen uint64, routes []Route) error
	// PushGroupOps sends membership changes as one batch.
	PushGroupOps(gen uint64, ops []GroupOp) error
	// HandedOver is when the last pushed batch (its first records)
	// became visible to the dataplane, CLOCK_MONOTONIC ns.
	HandedOver() uint64
	// PollEvents hands every waiting event to fn and returns how many.
	PollEvents(fn func(Event)) int
	// Dataplane returns the dataplane's boot ID (0: none yet) and the
	// generation it last applied, from the ring file's header.
	Dataplane() (bootID, applied uint64)
	Close() error
}
