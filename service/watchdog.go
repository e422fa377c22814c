package service

import (
	"time"
)

// WatchdogTick is the ping period for a WatchdogSec of interval: a third
// of it, at least 100 ms; 0 when the watchdog is off.
func WatchdogTick(interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	return max(interval/3, 100*time.Millisecond)
}
