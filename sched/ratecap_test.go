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
	tq.ms[0].down.rate.Store(10_000_000)
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
	tq.ms[0].down.rate.Store(1_000_000) // 1 Mbit/s: 125 bytes/ms
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
	tq.ms[0].down.rate.Store(1_000_000)
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

// A capped member idle for long gets its full burst back at once. The
// refill once multiplied bytes/s by idle nanoseconds in int64: after more
// than 2^63/(rate/8) ns (74 s at 1 Gbit/s) the product wrapped and the
// member starved for seconds or minutes. Idle times chosen so that the old
// product was negative; 1 Gbit/s × 1 h happened to wrap positive.
func TestRateCapLongIdle(t *testing.T) {
	for _, tc := range []struct {
		name string
		rate uint64
		idle int64
	}{
		{"10gbit 1h", 10_000_000_000, int64(time.Hour)},
		{"1gbit 1h", 1_000_000_000, int64(time.Hour)},
		{"1gbit 75s", 1_000_000_000, int64(75 * time.Second)},
		{"100mbit 24h", 100_000_000, int64(24 * time.Hour)},
		{"1mbit 24h", 1_000_000, int64(24 * time.Hour)},
		{"400gbit 30d", maxRate, int64(30 * 24 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tq := newTestQueue(t, Config{DisableECN: true, CoDelTarget: time.Second, CoDelInterval: time.Second}, 1)
			tq.ms[0].down.rate.Store(tc.rate)
			const pkt = 1400
			wire := int64(pkt + TunnelOverhead)
			burst := max(int64(tc.rate/8)*capBurst/1e9, 2*int64(tq.p.quantum))
			want := int((burst + wire - 1) / wire) // packets a full bucket admits
			// drain sends until the bucket is empty at now, keeping the
			// member backlogged, and returns how many packets went.
			drain := func(now int64) int {
				n := 0
				for {
					for tq.ms[0].down.pkts < 20 {
						tq.push(0, 0, pkt, now)
					}
					if m, _ := tq.pop(now); m < 0 {
						return n
					}
					if n++; n > want+1 {
						t.Fatalf("sent more than a full burst (%d packets) at once", want)
					}
				}
			}
			drain(1)
			end := 1 + tc.idle
			if n := drain(end); n != want {
				t.Fatalf("after %v idle sent %d packets at once, want a full burst of %d (throttled for %v)",
					time.Duration(tc.idle), n, want, time.Duration(tq.q.throttleWait))
			}
			// And from then on it runs at its cap, not below it.
			if w, max := tq.q.throttleWait, 2*wire*8e9/int64(tc.rate)+1; w <= 0 || w > max {
				t.Fatalf("throttleWait %v after the burst, want ≤ %v", time.Duration(w), time.Duration(max))
			}
			tq.check()
		})
	}
}

// A capped member visited more often than it earns a whole byte still gets
// its cap: the refill once truncated each visit's credit to whole bytes and
// dropped the rest, so a 500 kbit/s member sharing a 1 Gbit/s link (a turn
// every 11.7 µs, 0.73 bytes) got nothing after its first burst.
func TestRateCapFrequentTurns(t *testing.T) {
	tq := newTestQueue(t, Config{DisableECN: true, CoDelTarget: time.Second, CoDelInterval: time.Second}, 2)
	const capRate = 500_000
	tq.ms[0].down.rate.Store(capRate)
	const pkt = 1400
	wire := int64(pkt + TunnelOverhead)
	perPkt := wire * 8 * 1e9 / 1_000_000_000 // ns per packet at 1 Gbit/s
	var sent [2]int64
	now := int64(1)
	for now < int64(time.Second) {
		for m := range 2 {
			for tq.ms[m].down.pkts < 4 {
				tq.push(m, 0, pkt, now)
			}
		}
		if m, _ := tq.pop(now); m >= 0 {
			sent[m] += wire
		}
		now += perPkt
	}
	if got := float64(sent[0]) * 8 / (float64(now) / 1e9); got < 0.9*capRate || got > 1.1*capRate+float64(2*wire*8) {
		t.Fatalf("capped member got %.0f bit/s, want about %d", got, capRate)
	}
	tq.check()
}

// Both directions through the device: after an hour idle (virtual time), a
// member capped at 10 Gbit/s sends 20 packets at once.
func TestDeviceRateCapLongIdle(t *testing.T) {
	for _, up := range []bool{false, true} {
		name := map[bool]string{false: "download", true: "upload"}[up]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ch := tuntest.NewChannelTUN()
				d := newTestDevice(t, ch.TUN(), Config{}, 1)
				defer d.Close()
				d.SetMemberRate(0, 10_000_000_000, 10_000_000_000)
				round := func() time.Duration {
					start := time.Now()
					if up {
						var bufs [][]byte
						for range 20 {
							bufs = append(bufs, append(make([]byte, wgOffset), ipv4Packet(memberAddr(0), serverAddr, protoTCP, 5, 80, 1200, 0)...))
						}
						d.Write(bufs, wgOffset)
						for range 20 {
							<-ch.Inbound
						}
					} else {
						for range 20 {
							ch.Outbound <- ipv4Packet(serverAddr, memberAddr(0), protoTCP, 80, 5, 1200, 0)
						}
						synctest.Wait()
						readPackets(t, d, 20)
					}
					return time.Since(start)
				}
				round() // fills the bucket once
				time.Sleep(time.Hour)
				if el := round(); el > time.Millisecond {
					t.Fatalf("after an hour idle, 20 packets took %v, want at once (burst 5 ms at 10 Gbit/s)", el)
				}
			})
		})
	}
}

// The bucket arithmetic never overflows: extreme rates and idle times fill
// the bucket exactly, sub-byte credit is kept, waits are exact and positive.
// The pacer shares bytesIn.
func TestBucketArithmeticExtremes(t *testing.T) {
	const maxI64 = int64(1<<63 - 1)
	for _, tc := range []struct {
		name          string
		tokens, depth int64
		rem           uint64
		dt            int64
		rate          uint64
		wantTok       int64
		wantRem       uint64
		need          int64 // bytes for waitFor, with the refilled rem
		wantWait      int64
	}{
		{"max rate max dt", -1500, 3000, 0, maxI64, 1<<64 - 1, 3000, 0, 1, 1},
		{"1 ns at 10 tbit", -1500, 3000, 0, 1, 1e13 + 1, -250, 1, 1, 1},
		{"above depth", 5000, 3000, 7, 1, 1, 3000, 0, 1, 8e9},
		{"sub-byte kept", 0, 3000, 7_999_999_999, 1, 1, 1, 0, 1, 8e9},
		{"sub-byte accumulates", 0, 3000, 0, 999, 8_000_000, 0, 7_992_000_000, 1, 1},
		{"slowest rate, big need", 0, 3000, 0, 1, 1, 0, 1, 70000, 70000*8e9 - 1},
		{"wait beyond range", 0, 3000, 0, 1, 1, 0, 1, 1 << 40, 1 << 62},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, rem := refill(tc.tokens, tc.rem, tc.depth, tc.dt, tc.rate)
			if tok != tc.wantTok || rem != tc.wantRem {
				t.Fatalf("refill = %d, %d; want %d, %d", tok, rem, tc.wantTok, tc.wantRem)
			}
			if w := waitFor(tc.need, rem, tc.rate); w != tc.wantWait {
				t.Fatalf("waitFor(%d, %d, %d) = %d, want %d", tc.need, rem, tc.rate, w, tc.wantWait)
			}
		})
	}
	var p pacer
	p.configure(maxRate, int64(maxBurst), 1480, 0)
	p.charge(p.depth)
	if allow, _ := p.allowance(int64(30 * 24 * time.Hour)); allow != p.depth {
		t.Fatalf("pacer after 30 days idle allows %d, want its depth %d", allow, p.depth)
	}
}
