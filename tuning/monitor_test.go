package tuning

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the monitor goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMonitor(t *testing.T) {
	f := newFake(safeKernel())
	f.vals["net.core.netdev_budget"] = "600"
	var logs syncBuffer
	checked := make(chan time.Time, 1)
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := NewMonitor(MonitorConfig{
		Params:  f,
		Profile: mustParse("net.core.netdev_budget = 600\n"),
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now: func() time.Time {
			clock = clock.Add(time.Minute)
			checked <- clock
			return clock
		},
	})
	if m.Latest() != nil {
		t.Fatal("Latest before any check must be nil")
	}
	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan time.Time)
	done := make(chan struct{})
	go func() { m.Run(ctx, ticks); close(done) }()

	at := <-checked // the check at start
	waitLatest(t, m, at)
	if r := m.Latest(); !r.CriticalOK() || len(r.Failures()) != 0 {
		t.Fatalf("first report: %+v", r.Failures())
	}

	f.set(KeyIPForward, "0")
	f.set("net.core.netdev_budget", "300")
	ticks <- time.Time{}
	at = <-checked
	r := waitLatest(t, m, at)
	if r.CriticalOK() || len(r.Failures()) != 2 {
		t.Fatalf("after drift: critical ok %v, failures %+v", r.CriticalOK(), r.Failures())
	}

	ticks <- time.Time{} // same drift again: no new log lines
	waitLatest(t, m, <-checked)

	f.set(KeyIPForward, "1")
	f.set("net.core.netdev_budget", "600")
	rNow := m.CheckNow() // concurrent with Run: allowed
	<-checked
	if !rNow.CriticalOK() || m.Latest().At != rNow.At {
		t.Fatalf("CheckNow: %+v", rNow.Failures())
	}

	cancel()
	<-done

	out := logs.String()
	if n := strings.Count(out, "level=ERROR") + strings.Count(out, "level=WARN"); n != 2 {
		t.Errorf("want exactly one ERROR (ip_forward) and one WARN (netdev_budget), got %d:\n%s", n, out)
	}
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "key=net.ipv4.ip_forward") {
		t.Errorf("critical drift must log at ERROR:\n%s", out)
	}
	if n := strings.Count(out, "back as wanted"); n != 2 {
		t.Errorf("want two recoveries logged, got %d:\n%s", n, out)
	}
}

// waitLatest returns the published report of the check stamped at: Now is
// called before the report is stored, so poll for the store with a deadline.
func waitLatest(t *testing.T, m *Monitor, at time.Time) *Report {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if r := m.Latest(); r != nil && r.At.Equal(at) {
			return r
		}
		runtimeGosched()
	}
	t.Fatalf("no report stamped %v", at)
	return nil
}

func TestMonitorStopsWhenTicksClose(t *testing.T) {
	m := NewMonitor(MonitorConfig{Params: newFake(safeKernel()), Profile: mustParse("")})
	ticks := make(chan time.Time)
	close(ticks)
	m.Run(context.Background(), ticks) // returns instead of blocking
	if m.Latest() == nil {
		t.Fatal("Run must check once at start")
	}
	if m.Latest().At.IsZero() {
		t.Fatal("reports from a Monitor carry a time")
	}
}
