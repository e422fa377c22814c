package sched

import (
	"testing"
	"time"
)

func TestPacerRate(t *testing.T) {
	var p pacer
	const rate = 100_000_000 // 100 Mbit/s = 12.5 MB/s
	p.configure(rate, int64(time.Millisecond), 1480, 0)
	var now, sent int64
	for now < int64(time.Second) {
		allow, wait := p.allowance(now)
		if allow <= 0 {
			if wait <= 0 {
				t.Fatal("no allowance and no wait")
			}
			now += wait
			continue
		}
		p.charge(1480)
		sent += 1480
	}
	if sent < 12_400_000 || sent > 12_600_000 {
		t.Fatalf("sent %d bytes in 1 s at 100 Mbit/s, want ≈ 12.5 MB", sent)
	}
	// Idle time does not bank more than the burst (1 ms ≈ 12.5 kB).
	allow, _ := p.allowance(now + int64(time.Hour))
	if allow > 12_500 {
		t.Fatalf("allowance after idle %d > burst", allow)
	}
	var off pacer
	if allow, wait := off.allowance(5); allow <= 0 || wait != 0 {
		t.Fatal("unpaced pacer must allow")
	}
	if got := bytesIn(int64(time.Hour), maxRate); got <= 0 {
		t.Fatalf("bytesIn overflow: %d", got)
	}
}

func TestInflightCreditAndExpiry(t *testing.T) {
	var f inflight
	const limit, expire = 100_000, int64(20 * time.Millisecond)
	now := int64(time.Second)
	f.add(now, 60_000, expire)
	f.add(now, 60_000, expire)
	if avail, wait := f.available(now, limit, expire); avail > 0 || wait <= 0 || wait > expire+int64(2*time.Millisecond) {
		t.Fatalf("over limit: avail %d wait %d", avail, wait)
	}
	f.credit(50_000)
	if avail, _ := f.available(now, limit, expire); avail != 30_000 {
		t.Fatalf("after credit avail %d, want 30000", avail)
	}
	f.credit(1 << 40) // over-credit is discarded, not banked
	if total, _ := f.load(); total != 0 {
		t.Fatalf("total %d after full credit", total)
	}
	// Debt never matched by a send is forgiven after expire.
	f.add(now, 200_000, expire)
	if avail, _ := f.available(now+expire/2, limit, expire); avail > 0 {
		t.Fatal("debt forgiven too early")
	}
	if avail, _ := f.available(now+expire+int64(2*time.Millisecond), limit, expire); avail != limit {
		t.Fatalf("debt not forgiven after expiry: avail %d", avail)
	}
	if _, forgiven := f.load(); forgiven != 200_000 {
		t.Fatalf("forgiven %d, want 200000", forgiven)
	}
	// Oldest debt is paid first: a leak in an old epoch absorbs credit, and
	// the newer debt it displaced expires in turn.
	now += int64(time.Second)
	f.add(now, 10_000, expire)
	f.add(now+int64(5*time.Millisecond), 10_000, expire)
	f.credit(10_000)
	f.expireLocked(now+expire+int64(2*time.Millisecond), expire)
	if total, _ := f.load(); total != 10_000 {
		t.Fatalf("total %d, want the newer 10000", total)
	}
	// A long gap clears the whole ring.
	f.add(now+int64(time.Hour), 1, expire)
	if total, _ := f.load(); total != 1 {
		t.Fatalf("total after gap %d", total)
	}
}

func TestWGMessageLen(t *testing.T) {
	for _, tc := range []struct{ n, mtu, want int }{
		{0, 1420, 32}, {1, 1420, 48}, {16, 1420, 48}, {1400, 1420, 1440}, {1420, 1420, 1452}, {1419, 1420, 1452},
	} {
		if got := wgMessageLen(tc.n, tc.mtu); got != int64(tc.want) {
			t.Errorf("wgMessageLen(%d, %d) = %d, want %d", tc.n, tc.mtu, got, tc.want)
		}
	}
}
