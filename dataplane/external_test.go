package dataplane

import (
	"bytes"
	"testing"
)

// extPool is an external pool over n buffers of size bytes whose handles
// are 1000+i.
func extPool(n, size int) *Pool {
	bufs := make([][]byte, n)
	handles := make([]uintptr, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
		handles[i] = uintptr(1000 + i)
	}
	return NewExternalPool(bufs, handles)
}

// TestHeaderPoolLendsCopies: copies take their header buffers from the
// header pool while it has some, then from the worker's own pool; a header
// buffer sent by reference is consigned whole, one dropped comes back to its
// owner, and unlent ones are given back by Unlend.
func TestHeaderPoolLendsCopies(t *testing.T) {
	in := extPool(2, 512)
	hdr := extPool(4, 512)
	own := NewPool(4, 512)
	own.UseHeaders(hdr)
	if hdr.Get() != nil {
		t.Fatal("an external pool lent a buffer nobody lent it")
	}
	if got := hdr.Lendable(3); got != 3 {
		t.Fatalf("Lendable(3) = %d on an empty pool", got)
	}
	hdr.Lend(2)
	hdr.Lend(3)
	if got := hdr.Lendable(3); got != 1 {
		t.Fatalf("Lendable(3) = %d with 2 lent", got)
	}
	orig := in.Adopt(0, 128, 100)
	copy(orig.Head, bytes.Repeat([]byte{7}, 100))
	payload := orig.Head[60:]

	c1 := own.newCopy(orig, payload) // buffer 3 (last lent)
	c2 := own.newCopy(orig, payload) // buffer 2
	c3 := own.newCopy(orig, payload) // the worker's own
	if c1 == nil || c2 == nil || c3 == nil {
		t.Fatal("newCopy returned nil with buffers left")
	}
	if c1.own.ext != 1003 || c2.own.ext != 1002 || c3.own.ext != 0 {
		t.Fatalf("header buffers %d %d %d, want 1003 1002 0", c1.own.ext, c2.own.ext, c3.own.ext)
	}
	for _, c := range []*Packet{c1, c2, c3} {
		c.off = Headroom
		c.Head = c.Buffer()[Headroom : Headroom+42]
	}
	// c1 goes out by reference: its header buffer and the payload's.
	head, off, n, tail, toff, tn, ref, ok := c1.ConsignRef()
	if !ok || ref || head != 1003 || off != Headroom || n != 42 || tail != 1000 || toff != 128+60 || tn != 40 {
		t.Fatalf("ConsignRef = %d %d %d %d %d %d %v %v", head, off, n, tail, toff, tn, ref, ok)
	}
	// c2 is dropped: its header buffer goes back to the owner.
	c2.Free()
	if r := hdr.Released(); len(r) != 1 || r[0] != 1002 {
		t.Fatalf("released %v, want [1002]", r)
	}
	c3.Free()
	orig.Free()
	// ConsignRef dropped c1's reference to the payload (the queue attaches
	// its own in C, before the owner frees what was released).
	if r := in.Released(); len(r) != 1 || r[0] != 1000 {
		t.Fatalf("payload released %v, want [1000]", r)
	}
	hdr.Lend(1)
	hdr.Lend(0)
	if r := hdr.Unlend(); len(r) != 2 || r[0] != 1001 || r[1] != 1000 {
		t.Fatalf("Unlend = %v, want [1001 1000]", r)
	}
	if hdr.Get() != nil {
		t.Fatal("a buffer stayed lent after Unlend")
	}
}

// TestHeaderPoolDoesNotAllocate: lending, copying and giving back allocate
// nothing.
func TestHeaderPoolDoesNotAllocate(t *testing.T) {
	in := extPool(1, 512)
	hdr := extPool(64, 512)
	own := NewPool(4, 512)
	own.UseHeaders(hdr)
	var cs [16]*Packet
	round := func() {
		for i := 0; i < 16; i++ {
			hdr.Lend(i)
		}
		orig := in.Adopt(0, 128, 100)
		for i := range cs {
			cs[i] = own.newCopy(orig, orig.Head[60:])
		}
		for _, c := range cs {
			c.Free()
		}
		orig.Free()
		hdr.Released()
		in.Released()
	}
	round()
	if a := testing.AllocsPerRun(200, round); a != 0 {
		t.Errorf("%v allocations per round", a)
	}
}
