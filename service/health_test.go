package service

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestStageStuck(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	h := NewHealth(5*time.Second, clk.now)
	send := h.Stage("udp-send")
	read := h.Stage("tun-read")
	if err := h.Check(); err != nil {
		t.Fatalf("fresh: %v", err)
	}
	// Idle for a long time (waiting for packets) is healthy.
	clk.add(time.Hour)
	if err := h.Check(); err != nil {
		t.Fatalf("idle: %v", err)
	}
	// Busy but finishing within the limit is healthy.
	send.Busy()
	clk.add(4 * time.Second)
	if err := h.Check(); err != nil {
		t.Fatalf("busy 4s: %v", err)
	}
	send.Idle()
	clk.add(10 * time.Second)
	if err := h.Check(); err != nil {
		t.Fatalf("after idle: %v", err)
	}
	// Busy past the limit is stuck, and the error names the stage.
	read.Busy()
	clk.add(6 * time.Second)
	err := h.Check()
	if err == nil || !strings.Contains(err.Error(), "tun-read") || !strings.Contains(err.Error(), "6s") {
		t.Fatalf("stuck: %v", err)
	}
	read.Idle()
	if err := h.Check(); err != nil {
		t.Fatalf("recovered: %v", err)
	}
}

func TestStageConcurrentCallers(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	h := NewHealth(time.Second, clk.now)
	w := h.Stage("tun-write")
	w.Busy() // a caller that never returns
	for range 5 {
		clk.add(600 * time.Millisecond)
		w.Busy() // others keep finishing: progress
		w.Idle()
		if err := h.Check(); err != nil {
			t.Fatalf("progressing: %v", err)
		}
	}
	clk.add(2 * time.Second) // nobody finishes any more
	if err := h.Check(); err == nil {
		t.Fatal("no progress not detected")
	}
}

func TestHealthChecks(t *testing.T) {
	h := NewHealth(time.Second, nil)
	present := true
	h.AddCheck("nftables", func() error {
		if !present {
			return errors.New("table exitd is missing")
		}
		return nil
	})
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	present = false
	if err := h.Check(); err == nil || !strings.Contains(err.Error(), "nftables") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("failing check: %v", err)
	}
}

func TestStageAllocs(t *testing.T) {
	h := NewHealth(time.Second, nil)
	s := h.Stage("hot")
	if n := testing.AllocsPerRun(1000, func() { s.Busy(); s.Idle() }); n != 0 {
		t.Fatalf("%v allocs per Busy/Idle", n)
	}
}

type countPinger struct {
	mu sync.Mutex
	n  int
}

func (p *countPinger) Watchdog() error { p.mu.Lock(); p.n++; p.mu.Unlock(); return nil }
func (p *countPinger) count() int      { p.mu.Lock(); defer p.mu.Unlock(); return p.n }

func TestWatchdogTick(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, 0}, {-time.Second, 0}, {30 * time.Second, 10 * time.Second}, {90 * time.Millisecond, 100 * time.Millisecond},
	} {
		if got := WatchdogTick(tc.in); got != tc.want {
			t.Errorf("WatchdogTick(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
