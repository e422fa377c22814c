package tuning

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Monitor re-checks a profile and keeps the latest Report where status and
// metrics code can read it without locking.
//
// RoutineMonitor (Run) is the only goroutine it starts — one per Run call —
// and it checks once at start and then on every tick. CheckNow may be
// called concurrently (e.g. from a control API "recheck"). Drift is logged
// on transitions only: a key leaving ok at Warn, coming back at Info.
type Monitor struct {
	params  Params
	profile *Profile
	log     *slog.Logger
	now     func() time.Time

	latest atomic.Pointer[Report]

	mu   sync.Mutex        // guards prev
	prev map[string]Status // status per key at the previous check
}

// MonitorConfig configures NewMonitor.
type MonitorConfig struct {
	Params  Params
	Profile *Profile         // usually Bundled().WithConntrack(...)
	Logger  *slog.Logger     // nil discards
	Now     func() time.Time // nil means time.Now
}

// NewMonitor returns a Monitor that has not checked yet.
func NewMonitor(cfg MonitorConfig) *Monitor {
	m := &Monitor{params: cfg.Params, profile: cfg.Profile, log: cfg.Logger, now: cfg.Now}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// CheckNow runs Check, publishes the report and logs transitions.
func (m *Monitor) CheckNow() Report {
	r := Check(m.params, m.profile)
	r.At = m.now()
	m.mu.Lock()
	m.logTransitionsLocked(r)
	m.latest.Store(&r)
	m.mu.Unlock()
	return r
}

// Latest returns the most recent report, or nil before the first check.
// The report must not be modified.
func (m *Monitor) Latest() *Report { return m.latest.Load() }

// Run is RoutineMonitor: it checks now and on every value from ticks until
// ctx is done or ticks is closed. The daemon passes time.NewTicker(d).C;
// tests pass a channel they feed.
func (m *Monitor) Run(ctx context.Context, ticks <-chan time.Time) {
	m.CheckNow()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ticks:
			if !ok {
				return
			}
			m.CheckNow()
		}
	}
}

func (m *Monitor) logTransitionsLocked(r Report) {
	next := make(map[string]Status, len(r.Results))
	for _, res := range r.Results {
		next[res.Key] = res.Status
		before, seen := m.prev[res.Key]
		if !seen {
			before = StatusOK // first check: report everything not ok
		}
		switch {
		case before == StatusOK && res.Status != StatusOK:
			level := slog.LevelWarn
			switch {
			case res.Critical && !res.Safe:
				level = slog.LevelError
			case res.Optional && res.Status == StatusAbsent:
				level = slog.LevelDebug // e.g. no default_qdisc in a container
			}
			m.log.Log(context.Background(), level, "tuning: kernel parameter not as wanted",
				"key", res.Key, "wanted", res.Wanted, "in_force", res.InForce,
				"status", res.Status, "critical", res.Critical)
		case seen && before != StatusOK && res.Status == StatusOK:
			m.log.Info("tuning: kernel parameter back as wanted", "key", res.Key, "value", res.InForce)
		}
	}
	m.prev = next
}
