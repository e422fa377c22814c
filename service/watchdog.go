package service

import (
	"context"
	"time"
)

// Pinger is what RunWatchdog pings: Watchdog sends WATCHDOG=1.
type Pinger interface {
	Watchdog() error
}

var _ Pinger = (*Manager)(nil)

// RunWatchdog pings p on every tick while healthy returns nil, and calls
// onUnhealthy (which may be nil) with the error when it does not, skipping
// the ping so that systemd's WatchdogSec runs out and it restarts the
// service. It returns when ctx ends. Tick at a third of WatchdogSec or
// faster, so one slow check does not cost a restart.
func RunWatchdog(ctx context.Context, p Pinger, tick <-chan time.Time, healthy func() error, onUnhealthy func(error)) {
	for {
		if err := healthy(); err != nil {
			if onUnhealthy != nil {
				onUnhealthy(err)
			}
		} else {
			p.Watchdog()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}

// WatchdogTick is the ping period for a WatchdogSec of interval: a third
// of it, at least 100 ms; 0 when the watchdog is off.
func WatchdogTick(interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	return max(interval/3, 100*time.Millisecond)
}
