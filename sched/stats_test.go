package sched

import (
	"testing"
	"testing/synctest"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"
)

func TestHistogram(t *testing.T) {
	for _, tc := range []struct {
		sojourn time.Duration
		bucket  int
	}{
		{-time.Second, 0},
		{0, 0},
		{32 * time.Microsecond, 0},
		{33 * time.Microsecond, 1},
		{time.Millisecond, 5},
		{5 * time.Millisecond, 8},
		{100 * time.Millisecond, 12},
		{time.Hour, histBuckets - 1},
	} {
		b := histBucket(int64(tc.sojourn))
		if b != tc.bucket {
			t.Errorf("bucket(%v) = %d, want %d", tc.sojourn, b, tc.bucket)
		}
		if tc.sojourn >= 0 && tc.sojourn >= HistogramBound(b) {
			t.Errorf("%v not below its bucket's bound %v", tc.sojourn, HistogramBound(b))
		}
		if b > 0 && tc.sojourn < HistogramBound(b-1) {
			t.Errorf("%v below the previous bucket's bound", tc.sojourn)
		}
	}
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Fatal("empty histogram quantile")
	}
	h[0], h[5], h[10] = 90, 9, 1
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0, HistogramBound(0)}, {0.5, HistogramBound(0)}, {0.95, HistogramBound(5)}, {1, HistogramBound(10)}} {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

// Stats and MemberStats report what went through, per direction.
func TestDeviceStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{EgressRate: 50_000_000, InflightBytes: 1 << 20}, 2)
		defer d.Close()
		for i := range 10 {
			ch.Outbound <- ipv4Packet(serverAddr, memberAddr(0), protoUDP, uint16(i), 1, 1000, 0)
		}
		synctest.Wait()
		st := d.Stats()
		if st.Down.QueuedPackets != 10 || st.Down.ActiveMembers != 1 || st.Down.ActiveFlows != 10 ||
			st.Down.QueuedBytes != 10*(1000+TunnelOverhead) || st.Members != 2 || st.Discipline != "srr" ||
			st.EgressRate != 50_000_000 || st.InflightLimit != 1<<20 {
			t.Fatalf("stats before Read: %+v", st)
		}
		m, _ := d.MemberStats(0)
		if m.Down.QueuedPackets != 10 || m.Weight != 1 {
			t.Fatalf("member stats before Read: %+v", m)
		}
		time.Sleep(3 * time.Millisecond) // virtual: the packets age 3 ms
		readPackets(t, d, 10)
		st = d.Stats()
		if st.Down.SentPackets != 10 || st.Down.QueuedPackets != 0 || st.InflightBytes != 10*wgMessageLen(1000, 1420) {
			t.Fatalf("stats after Read: %+v", st)
		}
		m, _ = d.MemberStats(0)
		if m.Down.SentBytes != 10*(1000+TunnelOverhead) || m.Down.Sojourn.Quantile(0) < 3*time.Millisecond {
			t.Fatalf("member stats after Read: %+v (p0 %v)", m.Down, m.Down.Sojourn.Quantile(0))
		}
		seen := 0
		d.ForEachMember(func(id uint32, ms MemberStats) {
			if id == 0 && ms.Down.SentPackets != 10 {
				t.Errorf("ForEachMember member 0: %+v", ms.Down)
			}
			seen++
		})
		if seen != 3 {
			t.Fatalf("ForEachMember visited %d, want 2 + unknown", seen)
		}
	})
}
