package sched

import (
	"testing"
	"unsafe"
)

// The hot path's cost is mostly cache misses on member and flow state, so
// the layouts member.go and flows.go describe are load-bearing: check them.
func TestMemberLayout(t *testing.T) {
	const line = 64
	var m mstate
	for name, end := range map[string]uintptr{
		"next":      unsafe.Offsetof(m.next) + unsafe.Sizeof(m.next),
		"ft":        unsafe.Offsetof(m.ft) + unsafe.Sizeof(m.ft),
		"bytes":     unsafe.Offsetof(m.bytes) + unsafe.Sizeof(m.bytes),
		"pkts":      unsafe.Offsetof(m.pkts) + unsafe.Sizeof(m.pkts),
		"rate":      unsafe.Offsetof(m.rate) + unsafe.Sizeof(m.rate),
		"weight":    unsafe.Offsetof(m.weight) + unsafe.Sizeof(m.weight),
		"deficit":   unsafe.Offsetof(m.deficit) + unsafe.Sizeof(m.deficit),
		"flows":     unsafe.Offsetof(m.flows) + unsafe.Sizeof(m.flows),
		"list":      unsafe.Offsetof(m.list) + unsafe.Sizeof(m.list),
		"fatBucket": unsafe.Offsetof(m.fatBucket) + unsafe.Sizeof(m.fatBucket),
	} {
		if end > line {
			t.Errorf("hot field mstate.%s ends at byte %d, outside the first cache line", name, end)
		}
	}
	var ft flowTable
	if sz := unsafe.Sizeof(ft.flows[0]); sz != line {
		t.Errorf("flowQ is %d bytes, want one cache line", sz)
	}
	if off := unsafe.Offsetof(ft.flows); off != 0 {
		t.Errorf("flowTable.flows at offset %d", off)
	}
	// The allocator must place tables at 64-byte boundaries: their size
	// class is a multiple of 64 and, holding no pointers, they carry no
	// allocation header.
	for range 64 {
		layoutSink = new(flowTable) // on the heap, as getTable's are
		if p := uintptr(unsafe.Pointer(layoutSink)); p%line != 0 {
			t.Fatalf("flowTable (%d bytes) allocated at %#x", unsafe.Sizeof(ft), p)
		}
	}
}

var layoutSink *flowTable
