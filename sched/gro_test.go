package sched

import (
	"bytes"
	"testing"
)

// The first packet of each flow in a drain batch gets 64 KiB of capacity
// (so the TUN's GRO can coalesce into it); later packets keep their slot
// buffers; bytes are unchanged.
func TestGROHeads(t *testing.T) {
	var g groHeads
	mk := func(b byte) []byte {
		p := make([]byte, headroom+100, headroom+200)
		for i := range p[headroom:] {
			p[headroom+i] = b
		}
		return p
	}
	out := [][]byte{mk(1), mk(2), mk(3), mk(4), mk(5)}
	orig := make([][]byte, len(out))
	for i, p := range out {
		orig[i] = append([]byte(nil), p...)
	}
	hashes := []uint64{10, 10, 266, 10, 266} // 266&255 == 10: same table slot
	for round := range 2 {                   // generations reset per batch
		cur := append([][]byte(nil), out...)
		g.prepare(cur, hashes)
		for i, p := range cur {
			if !bytes.Equal(p[headroom:], orig[i][headroom:]) || len(p) != len(orig[i]) {
				t.Fatalf("round %d packet %d changed", round, i)
			}
			big := cap(p) >= headroom+65535
			// 0 heads flow 10; 1 follows it; 2 heads 266 and evicts 10
			// from the shared table slot, so 3 and 4 are (harmlessly)
			// treated as heads again.
			want := i == 0 || i == 2 || i == 3 || i == 4
			if big != want {
				t.Fatalf("round %d packet %d: head buffer %v, want %v", round, i, big, want)
			}
		}
	}
	if len(g.bufs) != 4 {
		t.Fatalf("%d head buffers, want 4 reused across batches", len(g.bufs))
	}
}
