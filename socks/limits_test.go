package socks

import (
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(2, 10, 3, clk.Now)
	steps := []struct {
		op      string // "acq" or "rel" or "wait"
		key     string
		advance time.Duration
		want    refusal
	}{
		{op: "acq", key: "a", want: admitted},
		{op: "acq", key: "a", want: admitted},
		{op: "acq", key: "a", want: refusedLimit}, // two sessions open
		{op: "acq", key: "b", want: admitted},     // other keys unaffected
		{op: "rel", key: "a"},
		{op: "acq", key: "a", want: admitted}, // third token of the burst
		{op: "rel", key: "a"},
		{op: "acq", key: "a", want: refusedRate}, // burst of 3 spent
		{op: "wait", advance: 100 * time.Millisecond},
		{op: "acq", key: "a", want: admitted}, // one token at 10/s
		{op: "rel", key: "a"},
		{op: "acq", key: "a", want: refusedRate},
	}
	for i, s := range steps {
		switch s.op {
		case "acq":
			if got := l.acquire(s.key); got != s.want {
				t.Fatalf("step %d: acquire(%s) = %d, want %d", i, s.key, got, s.want)
			}
		case "rel":
			l.release(s.key)
		case "wait":
			clk.Advance(s.advance)
		}
	}
}

// TestLimiterSweep: idle keys are forgotten once their bucket refills.
func TestLimiterSweep(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(10, 100, 200, clk.Now)
	for i := range 3 * minSweep {
		key := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String()
		if l.acquire(key) != admitted {
			t.Fatal("refused")
		}
		l.release(key)
		clk.Advance(10 * time.Second)
	}
	if n := len(l.keys); n > minSweep+1 {
		t.Errorf("%d keys kept, want at most %d", n, minSweep+1)
	}
}

// TestBucketModel compares the bucket with a slow model that replays the
// history of takes one millisecond at a time.
func TestBucketModel(t *testing.T) {
	const rate, burst = 50.0, 5.0 // one token per 20 ms
	var b bucket
	start := time.Unix(0, 0)
	var taken []int // milliseconds at which a token was taken
	model := func(now int) bool {
		tokens, i := burst, 0
		for ms := 0; ms <= now; ms++ {
			if ms > 0 {
				tokens = min(burst, tokens+rate/1000)
			}
			for ; i < len(taken) && taken[i] == ms; i++ {
				tokens--
			}
		}
		return tokens >= 1-1e-9
	}
	for ms := 0; ms < 2000; ms += 7 {
		got := b.take(start.Add(time.Duration(ms)*time.Millisecond), rate, burst)
		if want := model(ms); got != want {
			t.Fatalf("at %d ms: take = %v, model %v", ms, got, want)
		}
		if got {
			taken = append(taken, ms)
		}
	}
	if len(taken) < 40 {
		t.Errorf("only %d tokens in 2 s at 50/s", len(taken))
	}
}

func TestSessionLimit(t *testing.T) {
	echo := echoServer(t, lo4)
	opts := testOptions()
	opts.MaxSessions = 2
	s, px := startServer(t, opts, tunnelCfg, false)
	a := mustConnect(t, px, ipAddr(echo))
	b := mustConnect(t, px, ipAddr(echo))
	if _, rep := connect(t, px, ipAddr(echo)); rep != replyNotAllowed {
		t.Fatalf("third session: %v, want not allowed", rep)
	}
	if st := s.Stats(); st.RefusedLimit != 1 {
		t.Fatalf("RefusedLimit = %d", st.RefusedLimit)
	}
	roundTrip(t, b, "still served")
	a.Close()
	waitFor(t, "a session slot", func() bool { return s.Stats().SessionsActive == 1 })
	c := mustConnect(t, px, ipAddr(echo))
	roundTrip(t, c, "after release")
	// The limit is per member: ::1 is another member.
	_, px6 := startServer(t, opts, tunnelCfg, true)
	mustConnect(t, px6, ipAddr(echo))
}

func TestConnectRate(t *testing.T) {
	echo := echoServer(t, lo4)
	clk := newFakeClock()
	opts := testOptions()
	opts.Now = clk.Now
	opts.ConnectRate = 1
	opts.ConnectBurst = 2
	s, px := startServer(t, opts, tunnelCfg, false)
	mustConnect(t, px, ipAddr(echo)).Close()
	mustConnect(t, px, ipAddr(echo)).Close()
	if _, rep := connect(t, px, ipAddr(echo)); rep != replyNotAllowed {
		t.Fatalf("third connect: %v, want not allowed", rep)
	}
	if st := s.Stats(); st.RefusedRate != 1 || st.RefusedLimit != 0 {
		t.Fatalf("stats %+v", st)
	}
	clk.Advance(time.Second)
	mustConnect(t, px, ipAddr(echo))
}

// TestUploadLimit: a member's upload is paced to its rate; the download
// is not.
func TestUploadLimit(t *testing.T) {
	echo := echoServer(t, lo4)
	var asked atomic.Value
	opts := testOptions()
	const bps = 4 << 20 // 512 KiB/s
	opts.UploadLimit = func(member string) uint64 {
		asked.Store(member)
		return bps
	}
	s, px := startServer(t, opts, tunnelCfg, false)
	c := mustConnect(t, px, ipAddr(echo))
	if got := asked.Load(); got != "member-127.0.0.1" {
		t.Errorf("UploadLimit asked for %v", got)
	}
	const size = 320 << 10
	start := time.Now()
	go func() {
		c.Write(make([]byte, size))
		c.Conn.(*net.TCPConn).CloseWrite()
	}()
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != size {
		t.Fatalf("echoed %d, %v", n, err)
	}
	burst := newPacer(bps).burst
	want := time.Duration((size - burst) / (bps / 8) * float64(time.Second))
	if d := time.Since(start); d < want*8/10 {
		t.Errorf("%d bytes at %d bit/s took %v, want at least %v", size, bps, d, want)
	}
	waitFor(t, "session end", func() bool { return s.Stats().SessionsActive == 0 })
}

// TestPacerGrant checks pacing arithmetic without sockets.
func TestPacerGrant(t *testing.T) {
	p := newPacer(8 << 20) // 1 MiB/s, burst 64 KiB
	if g := p.grant(1<<20, nil); g != 64<<10 {
		t.Fatalf("first grant %d, want the burst", g)
	}
	p.refund(1 << 10)
	if g := p.grant(100, nil); g != 100 {
		t.Fatalf("grant after refund %d", g)
	}
	done := make(chan struct{})
	close(done)
	p.b.tokens = 0
	if g := p.grant(1<<20, done); g != 0 {
		t.Fatalf("grant after done %d, want 0", g)
	}
	if !newPacer(8).allow(64<<10) || newPacer(8).allow(64<<10+1) {
		t.Error("allow does not pass exactly one burst")
	}
}
