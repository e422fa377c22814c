package sched

import (
	"testing"
	"testing/synctest"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// A capped member gets its cap, the uncapped member the rest, in virtual
// time: member 0 capped at 10 Mbit/s, member 1 uncapped, a link that
// drains 100 Mbit/s; both always backlogged.
func TestRateCapShares(t *testing.T) {
	tq := newTestQueue(t, Config{DisableECN: true, CoDelTarget: time.Second, CoDelInterval: time.Second}, 2)
	tq.ms[0].rateDown.Store(10_000_000)
	const pkt = 1400
	wire := int64(pkt + TunnelOverhead)
	perPkt := wire * 8 * 1e9 / 100_000_000 // ns per packet at 100 Mbit/s
	var sent [2]int64
	now := int64(1)
	for step := 0; step < 20000; step++ {
		for tq.ms[0].down.pkts < 20 {
			tq.push(0, 0, pkt, now)
		}
		for tq.ms[1].down.pkts < 20 {
			tq.push(1, 0, pkt, now)
		}
		m, _ := tq.pop(now)
		if m < 0 {
			t.Fatalf("nothing sent at step %d although member 1 is uncapped", step)
		}
		sent[m] += wire
		now += perPkt
	}
	secs := float64(now) / 1e9
	got0 := float64(sent[0]) * 8 / secs
	got1 := float64(sent[1]) * 8 / secs
	if got0 < 9e6 || got0 > 11.5e6 {
		t.Errorf("capped member got %.1f Mbit/s, want about 10", got0/1e6)
	}
	if got1 < 85e6 {
		t.Errorf("uncapped member got %.1f Mbit/s, want the rest (about 90)", got1/1e6)
	}
	tq.check()
}

// With only capped members backlogged and out of tokens, dequeue returns
// nothing and says how long to wait; after that wait it sends again.
func TestRateCapThrottleWait(t *testing.T) {
	tq := newTestQueue(t, Config{}, 1)
	tq.ms[0].rateDown.Store(1_000_000) // 1 Mbit/s: 125 bytes/ms
	for range 50 {
		tq.push(0, 0, 1400, 0)
	}
	now := int64(1)
	n := 0
	for {
		m, _ := tq.pop(now)
		if m < 0 {
			break
		}
		n++
		if n > 50 {
			t.Fatal("cap never throttled")
		}
	}
	if n == 0 || n > 4 {
		t.Fatalf("burst sent %d packets, want a small burst (5 ms or 2 quanta)", n)
	}
	w := tq.q.throttleWait
	if w <= 0 || w > 20*ms {
		t.Fatalf("throttleWait %d ns", w)
	}
	if m, _ := tq.pop(now + w/2); m >= 0 && tq.q.throttleWait == 0 {
		// Half the wait may already suffice after rounding; never before zero tokens.
		t.Log("sent before the full wait")
	}
	if m, _ := tq.pop(now + w + 2*ms); m != 0 {
		t.Fatalf("not sent after the wait (got %d)", m)
	}
	tq.check()
}

// fifo ignores caps.
func TestRateCapFIFOIgnores(t *testing.T) {
	tq := newTestQueue(t, Config{Discipline: DisciplineFIFO}, 1)
	tq.ms[0].rateDown.Store(1_000_000)
	for range 10 {
		tq.push(0, 0, 1400, 0)
	}
	for i := range 10 {
		if m, _ := tq.pop(1); m != 0 {
			t.Fatalf("fifo throttled packet %d", i)
		}
	}
}

// Through the device: a capped member's download is paced by its cap and a
// blocked Read wakes when tokens return (no stall); SetMemberRate on an
// unknown id reports false; an upload cap disables the bypass.
func TestDeviceRateCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{}, 1)
		defer d.Close()
		if d.SetMemberRate(999, 1, 1) {
			t.Fatal("SetMemberRate on an unknown member")
		}
		if !d.SetMemberRate(0, 1_000_000, 1_000_000) {
			t.Fatal("SetMemberRate on member 0 failed")
		}
		if d.upCapped.Load() != 1 {
			t.Fatalf("upCapped %d", d.upCapped.Load())
		}
		start := time.Now()
		for range 20 {
			// ECT(0): CoDel marks instead of dropping as the capped queue ages.
			ch.Outbound <- ipv4Packet(serverAddr, memberAddr(0), protoTCP, 80, 5, 1200, 2)
		}
		synctest.Wait()
		bufs, sizes := wgBufs(1)
		got := 0
		for got < 20 {
			n, err := d.Read(bufs, sizes, wgOffset)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
		// 20 × 1260 on-wire bytes at 1 Mbit/s ≈ 200 ms, less the 5 ms burst.
		if el := time.Since(start); el < 150*time.Millisecond || el > 300*time.Millisecond {
			t.Fatalf("20 packets took %v at a 1 Mbit/s cap, want about 200 ms", el)
		}
		d.Write([][]byte{append(make([]byte, wgOffset), ipv4Packet(memberAddr(0), serverAddr, protoTCP, 5, 80, 100, 0)...)}, wgOffset)
		<-ch.Inbound
		synctest.Wait()
		if st := d.Stats(); st.UpBypassPackets != 0 || st.Up.EnqueuedPackets != 1 {
			t.Fatalf("capped upload bypassed the queue: %+v", st)
		}
		d.SetMemberRate(0, 0, 0)
		if d.upCapped.Load() != 0 {
			t.Fatalf("upCapped %d after clearing", d.upCapped.Load())
		}
		d.SetMemberRate(0, 0, 5_000_000)
		d.RemoveMember(0)
		if d.upCapped.Load() != 0 {
			t.Fatalf("upCapped %d after removal", d.upCapped.Load())
		}
	})
}
