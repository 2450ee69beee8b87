// The group table: group ID -> members, an immutable value like the rest of
// a Tables snapshot. A change returns a new table that shares everything
// but the path to the changed group, so a one-member update costs half a
// kilobyte per level of the trie, 1.5 KB at 10,000 groups (a copied map
// cost 650 KB there, and the garbage made GC cycles run while updates were
// in flight).
//
// The structure is a radix trie on the ID's bits, five at a time from the
// low end: an interior node has 32 slots, each empty, a subtree or a
// group, and a group sits at the shallowest level where no other group
// shares its low bits. Sequential IDs, the usual case, give a depth of
// log32(groups): two levels up to 1,024 groups, four up to a million. A
// slot's two pointers sit side by side, so a lookup touches one cache line
// per level and the group's own; it never allocates. (A bitmap-compressed
// node with a separate child slice saves memory but costs a second miss
// per level: 750 ns against a map's 130 at 65,536 groups.)
package dataplane

import (
	"iter"
	"slices"
)

const (
	groupBits  = 5
	groupSlots = 1 << groupBits
	groupMask  = groupSlots - 1
)

// GroupTable maps group IDs to their members (strictly ascending). The zero
// value and nil are empty tables. A GroupTable is never changed once built:
// With and Without return new ones.
type GroupTable struct {
	root *groupNode
	n    int
}

type groupNode struct {
	slots [groupSlots]groupSlot
}

// groupSlot holds a subtree or a group, never both.
type groupSlot struct {
	kid  *groupNode
	leaf *groupLeaf
}

type groupLeaf struct {
	id      uint32
	members []uint16
}

func slotOf(id uint32, shift uint) uint32 { return id >> shift & groupMask }

// Lookup returns a group's members.
func (t *GroupTable) Lookup(id uint32) ([]uint16, bool) {
	if t == nil {
		return nil, false
	}
	for n, shift := t.root, uint(0); n != nil; shift += groupBits {
		s := &n.slots[slotOf(id, shift)]
		if l := s.leaf; l != nil {
			if l.id == id {
				return l.members, true
			}
			return nil, false
		}
		n = s.kid
	}
	return nil, false
}

// Len is the number of groups.
func (t *GroupTable) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// With returns a table in which group id has members (which the table
// keeps: the caller must not change them afterwards).
func (t *GroupTable) With(id uint32, members []uint16) *GroupTable {
	var root *groupNode
	n := 0
	if t != nil {
		root, n = t.root, t.n
	}
	root, added := groupInsert(root, 0, &groupLeaf{id: id, members: members}, false)
	if added {
		n++
	}
	return &GroupTable{root: root, n: n}
}

// Without returns a table without group id (t itself if it has none).
func (t *GroupTable) Without(id uint32) *GroupTable {
	if t == nil {
		return nil
	}
	root, leaf, removed := groupRemove(t.root, 0, id)
	if !removed {
		return t
	}
	if leaf != nil {
		// The root keeps even a lone group in a node: Lookup expects one.
		root = &groupNode{}
		root.slots[slotOf(leaf.id, 0)].leaf = leaf
	}
	return &GroupTable{root: root, n: t.n - 1}
}

// All yields every group, in no particular order.
func (t *GroupTable) All() iter.Seq2[uint32, []uint16] {
	return func(yield func(uint32, []uint16) bool) {
		if t != nil {
			groupWalk(t.root, yield)
		}
	}
}

// NewGroupTable builds a table from a map (the members slices are kept).
func NewGroupTable(groups map[uint32][]uint16) *GroupTable {
	t := &GroupTable{}
	for id, m := range groups {
		var added bool
		// The nodes are this builder's own until it returns: insert in
		// place rather than copying a path per group.
		t.root, added = groupInsert(t.root, 0, &groupLeaf{id: id, members: m}, true)
		if added {
			t.n++
		}
	}
	return t
}

// GroupTableEqual reports whether two tables hold the same groups with the
// same members.
func GroupTableEqual(a, b *GroupTable) bool {
	if a.Len() != b.Len() {
		return false
	}
	for id, m := range a.All() {
		o, ok := b.Lookup(id)
		if !ok || !slices.Equal(m, o) {
			return false
		}
	}
	return true
}

// groupInsert puts leaf into the subtree n (nil: none yet) at level shift
// and returns the new subtree and whether the group is new. Unless
// inPlace, it copies the nodes on the path and changes nothing reachable
// from n.
func groupInsert(n *groupNode, shift uint, leaf *groupLeaf, inPlace bool) (*groupNode, bool) {
	switch {
	case n == nil:
		n, inPlace = &groupNode{}, true
	case !inPlace:
		c := *n
		n = &c
	}
	s := &n.slots[slotOf(leaf.id, shift)]
	switch {
	case s.kid != nil:
		var added bool
		s.kid, added = groupInsert(s.kid, shift+groupBits, leaf, inPlace)
		return n, added
	case s.leaf == nil:
		s.leaf = leaf
		return n, true
	case s.leaf.id == leaf.id:
		s.leaf = leaf
		return n, false
	}
	// Another group shares the low bits so far: both go one level down.
	kid := &groupNode{}
	kid.slots[slotOf(s.leaf.id, shift+groupBits)].leaf = s.leaf
	s.kid, _ = groupInsert(kid, shift+groupBits, leaf, true)
	s.leaf = nil
	return n, true
}

// groupRemove takes group id out of the subtree n at level shift, copying
// the path. It returns the new subtree, or, when that would hold a single
// group and nothing else, that group alone (the caller puts it in its own
// slot, undoing the depth that inserts added), and whether the group was
// there. Both results are nil for an emptied subtree.
func groupRemove(n *groupNode, shift uint, id uint32) (*groupNode, *groupLeaf, bool) {
	if n == nil {
		return nil, nil, false
	}
	i := slotOf(id, shift)
	s := n.slots[i]
	switch {
	case s.leaf != nil && s.leaf.id == id:
		s.leaf = nil
	case s.kid != nil:
		kid, leaf, removed := groupRemove(s.kid, shift+groupBits, id)
		if !removed {
			return n, nil, false
		}
		s.kid, s.leaf = kid, leaf
	default:
		return n, nil, false
	}
	c := *n
	c.slots[i] = s
	var lone *groupLeaf
	used := 0
	for _, x := range c.slots {
		if x.kid != nil || x.leaf != nil {
			used++
			lone = x.leaf
		}
	}
	switch {
	case used == 0:
		return nil, nil, true
	case used == 1 && lone != nil:
		return nil, lone, true
	}
	return &c, nil, true
}

func groupWalk(n *groupNode, yield func(uint32, []uint16) bool) bool {
	if n == nil {
		return true
	}
	for _, s := range n.slots {
		if s.leaf != nil && !yield(s.leaf.id, s.leaf.members) {
			return false
		}
		if s.kid != nil && !groupWalk(s.kid, yield) {
			return false
		}
	}
	return true
}
