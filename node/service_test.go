package node

import (
	"log/slog"
	"testing"
	"time"

	"exitd/service"
)

func TestRates(t *testing.T) {
	var r rates
	t0 := time.Unix(100, 0)
	r.update(t0, 1000, 5000)
	if r.up != 0 || r.down != 0 {
		t.Fatal("first sample must only set the baseline")
	}
	r.update(t0.Add(2*time.Second), 1000+250_000, 5000+2_500_000)
	if r.up != 1e6 || r.down != 1e7 {
		t.Fatalf("up %v down %v, want 1 Mbit/s and 10 Mbit/s", r.up, r.down)
	}
	r.update(t0.Add(3*time.Second), 0, 0) // counters reset (device restarted): keep last rates
	if r.up != 1e6 {
		t.Fatalf("reset counters changed the rate to %v", r.up)
	}
}

func TestHealthLimit(t *testing.T) {
	for _, tc := range []struct{ wd, want time.Duration }{
		{0, time.Second}, {3 * time.Second, time.Second}, {30 * time.Second, 10 * time.Second}, {time.Hour, 10 * time.Second}, {9 * time.Second, 3 * time.Second},
	} {
		if got := healthLimit(tc.wd); got != tc.want {
			t.Errorf("healthLimit(%v) = %v, want %v", tc.wd, got, tc.want)
		}
	}
}

func TestServiceInterface(t *testing.T) {
	var _ Service = (*service.Manager)(nil)
	var _ Notifier = (*service.Manager)(nil)
	_ = New(Options{Logger: slog.New(slog.DiscardHandler)})
}
