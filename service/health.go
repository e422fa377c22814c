package service

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Health decides whether the watchdog may be pinged: every registered check
// passes and no data-path stage is stuck. A stage is stuck when it has been
// busy (working on input, not waiting for it) for longer than the limit with
// no call of it finishing meanwhile — a goroutine that blocks forever
// outside its wait point, or a send that never returns.
//
// A bare timer would keep pinging while the packet path is wedged; this
// keeps pinging only while the goroutines that move packets make progress.
type Health struct {
	now   func() time.Time
	epoch time.Time
	limit time.Duration

	mu     sync.Mutex // guards stages and checks
	stages []*Stage
	checks []check
}

type check struct {
	name string
	fn   func() error
}

// NewHealth returns a Health that calls a stage stuck after limit. now is
// the clock (time.Now when nil); it must be monotonic.
func NewHealth(limit time.Duration, now func() time.Time) *Health {
	if now == nil {
		now = time.Now
	}
	return &Health{now: now, epoch: now(), limit: limit}
}

// Stage registers and returns a new progress marker called name.
func (h *Health) Stage(name string) *Stage {
	s := &Stage{name: name, h: h}
	h.mu.Lock()
	h.stages = append(h.stages, s)
	h.mu.Unlock()
	return s
}

// AddCheck registers a condition that must hold (e.g. "the nftables table
// is present"); fn returns nil when it does.
func (h *Health) AddCheck(name string, fn func() error) {
	h.mu.Lock()
	h.checks = append(h.checks, check{name, fn})
	h.mu.Unlock()
}

// Check returns nil when every check passes and no stage is stuck, else an
// error naming the first problem.
func (h *Health) Check() error {
	h.mu.Lock()
	stages := append([]*Stage(nil), h.stages...)
	checks := append([]check(nil), h.checks...)
	h.mu.Unlock()
	now := h.nanos()
	for _, s := range stages {
		if d, stuck := s.stuckFor(now); stuck {
			return fmt.Errorf("service: data path stage %s made no progress for %s", s.name, d.Round(time.Millisecond))
		}
	}
	for _, c := range checks {
		if err := c.fn(); err != nil {
			return fmt.Errorf("service: health check %s: %w", c.name, err)
		}
	}
	return nil
}

func (h *Health) nanos() int64 { return int64(h.now().Sub(h.epoch)) + 1 } // never 0

// Stage is one data-path goroutine's (or concurrent call site's) progress
// marker. Busy when work starts, Idle when it finishes or goes back to
// waiting for input. Both are allocation-free and safe for concurrent use;
// with concurrent callers the stage is stuck only when none of them
// finished within the limit.
type Stage struct {
	name  string
	h     *Health
	busy  atomic.Int64 // callers between Busy and Idle
	since atomic.Int64 // Health.nanos of the last transition
}

// Name is the stage's name.
func (s *Stage) Name() string { return s.name }

// Busy marks the start of work.
func (s *Stage) Busy() {
	if s.busy.Add(1) == 1 {
		s.since.Store(s.h.nanos())
	}
}

// Idle marks the end of work (progress).
func (s *Stage) Idle() {
	s.busy.Add(-1)
	s.since.Store(s.h.nanos())
}

func (s *Stage) stuckFor(now int64) (time.Duration, bool) {
	if s.busy.Load() <= 0 {
		return 0, false
	}
	d := time.Duration(now - s.since.Load())
	return d, d > s.h.limit
}
