package metrics

import (
	"errors"
	"testing"
	"time"
)

func newTestTable(src Source, clk *fakeClock) *Table {
	return NewTable(src, TableOptions{Now: clk.now, SojournBounds: testBounds()})
}

func TestTableStates(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(4)}
	tb := newTestTable(src, clk)
	if _, err := tb.Snapshot(); err != nil {
		t.Fatal(err)
	}
	// m0: session + data; m1: session, keepalives only; m2: handshake
	// messages but no session; m3: nothing.
	clk.add(5 * time.Second)
	now := clk.now()
	src.set(func(ms []MemberCounters) []MemberCounters {
		ms[0].LastHandshake, ms[0].RxBytes, ms[0].TxBytes = now.Add(-time.Minute), 10_000, 50_000
		ms[0].Down.SentPackets, ms[0].Down.SentBytes = 40, 50_000
		ms[1].LastHandshake, ms[1].RxBytes = now.Add(-2*time.Minute), 64
		ms[2].RxBytes = 148
		ms[2].LastHandshake = now.Add(-10 * time.Minute)
		return ms
	})
	s, err := tb.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]State{"m0": Active, "m1": Idle, "m2": Handshaking, "m3": Offline}
	for _, m := range s.Members {
		if m.State != want[m.Label] {
			t.Errorf("%s: state %v, want %v", m.Label, m.State, want[m.Label])
		}
	}
	if s.Active != 1 || s.Idle != 1 || s.Handshaking != 1 || s.Offline != 1 || s.Configured != 4 || s.Sessions() != 2 {
		t.Fatalf("counts: %+v", s)
	}
	if s.Members[0].Label != "m0" {
		t.Fatalf("busiest first: got %s", s.Members[0].Label)
	}
	if got := s.Members[0].TxRate; got != 80_000 { // bits/s
		t.Fatalf("tx rate %v B/s, want 10000 (50000 B in 5 s)", got)
	}
	// 20 s without data: m0 turns idle; m2's handshake attempts stop: offline.
	clk.add(20 * time.Second)
	s, _ = tb.Snapshot()
	for _, m := range s.Members {
		if m.Label == "m0" && m.State != Idle {
			t.Errorf("m0 after 20 s without data: %v, want idle", m.State)
		}
		if m.Label == "m2" && m.State != Offline {
			t.Errorf("m2 after 20 s of silence: %v, want offline", m.State)
		}
	}
	// 4 minutes on, no handshake: nobody has a session.
	clk.add(4 * time.Minute)
	s, _ = tb.Snapshot()
	if s.Sessions() != 0 || s.Offline != 4 {
		t.Fatalf("after 4 min: %+v", s)
	}
}

func TestTableMinIntervalSharesRefresh(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(3)}
	tb := newTestTable(src, clk)
	a, _ := tb.Snapshot()
	clk.add(500 * time.Millisecond)
	b, _ := tb.Snapshot()
	if a != b || src.calls != 1 {
		t.Fatalf("snapshot within MinInterval was refreshed (%d calls)", src.calls)
	}
	clk.add(600 * time.Millisecond)
	c, _ := tb.Snapshot()
	if c == a || src.calls != 2 || c.Window != 1100*time.Millisecond {
		t.Fatalf("refresh after MinInterval: calls %d window %v", src.calls, c.Window)
	}
	if _, err := tb.Refresh(); err != nil || src.calls != 3 {
		t.Fatalf("Refresh: %v, calls %d", err, src.calls)
	}
}

func TestTableTotalsMonotonic(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(2)}
	tb := newTestTable(src, clk)
	src.set(func(ms []MemberCounters) []MemberCounters {
		ms[0].RxBytes, ms[0].TxBytes = 100, 1000
		ms[1].RxBytes, ms[1].TxBytes = 200, 2000
		ms[0].Down.OverflowDrops, ms[1].Up.CoDelDrops, ms[1].Down.CEMarks = 3, 4, 5
		ms[0].Down.Sojourn[0], ms[0].Down.Sojourn[3] = 10, 2
		return ms
	})
	s, _ := tb.Snapshot()
	if s.Totals.RxBytes != 300 || s.Totals.TxBytes != 3000 {
		t.Fatalf("totals %+v", s.Totals)
	}
	// m1 removed and m0's peer re-added (its counters restart at 50/60).
	clk.add(2 * time.Second)
	src.set(func(ms []MemberCounters) []MemberCounters {
		ms = ms[:1]
		ms[0].RxBytes, ms[0].TxBytes = 50, 60
		ms[0].Down.Sojourn = [SojournBuckets]uint64{0: 1} // histogram reset too
		return ms
	})
	s, _ = tb.Snapshot()
	tests := []struct {
		name      string
		got, want uint64
	}{
		{"rx", s.Totals.RxBytes, 350},
		{"tx", s.Totals.TxBytes, 3060},
		{"down overflow", s.Totals.Down.OverflowDrops, 3},
		{"up codel", s.Totals.Up.CoDelDrops, 4},
		{"down ce", s.Totals.Down.CEMarks, 5},
		{"sojourn bucket 0", s.Totals.SojournDown[0], 11},
		{"sojourn bucket 3", s.Totals.SojournDown[3], 2},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	if s.Configured != 1 || len(tb.state) != 1 {
		t.Fatalf("removed member still tracked: configured %d, state %d", s.Configured, len(tb.state))
	}
	if s.Totals.SojournSumDown <= 0 {
		t.Fatal("sojourn sum not estimated")
	}
}

func TestTableQueueDelay(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(2)}
	tb := newTestTable(src, clk)
	tb.Snapshot()
	clk.add(time.Second)
	src.set(func(ms []MemberCounters) []MemberCounters {
		ms[0].Down.SentBytes, ms[0].Down.QueuedBytes = 1_000_000, 100_000 // drains 1 MB/s, 100 kB queued
		ms[1].Down.QueuedBytes = 5000                                     // stuck: nothing drained
		return ms
	})
	s, _ := tb.Snapshot()
	got := map[string]time.Duration{}
	for _, m := range s.Members {
		got[m.Label] = m.QueueDelay
	}
	if got["m0"] != 100*time.Millisecond {
		t.Errorf("m0 delay %v, want 100ms", got["m0"])
	}
	if got["m1"] != time.Second {
		t.Errorf("stuck m1 delay %v, want the window (1s)", got["m1"])
	}
}

func TestTableSourceError(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(1)}
	tb := newTestTable(src, clk)
	first, _ := tb.Snapshot()
	src.err = errFake
	clk.add(2 * time.Second)
	s, err := tb.Snapshot()
	if !errors.Is(err, errFake) || s != first {
		t.Fatalf("error refresh: %v, snapshot %p want previous %p", err, s, first)
	}
	// No snapshot yet and an error: nil and the error.
	tb2 := newTestTable(&fakeSource{err: errFake}, clk)
	if s, err := tb2.Snapshot(); s != nil || err == nil {
		t.Fatalf("got %v %v", s, err)
	}
}

func TestSnapshotTop(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(5)}
	tb := newTestTable(src, clk)
	tb.Snapshot()
	clk.add(time.Second)
	src.set(func(ms []MemberCounters) []MemberCounters {
		for i := range ms {
			ms[i].TxBytes = uint64(i) * 1000
			ms[i].Down.OverflowDrops = uint64(10 - i)
		}
		return ms
	})
	s, _ := tb.Snapshot()
	top := s.Top(2, nil)
	if len(top) != 2 || top[0].Label != "m4" || top[1].Label != "m3" {
		t.Fatalf("top by rate: %v", labels(top))
	}
	byDrops := s.Top(0, func(v *MemberView) float64 { return float64(v.Drops) })
	if len(byDrops) != 5 || byDrops[0].Label != "m0" {
		t.Fatalf("top by drops: %v", labels(byDrops))
	}
	if s.Members[0].Label != "m4" {
		t.Fatal("Top reordered the snapshot")
	}
}

func labels(vs []MemberView) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Label)
	}
	return out
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Offline: "offline", Handshaking: "handshaking", Idle: "idle", Active: "active", 9: "state(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q", s, s.String())
		}
	}
}
