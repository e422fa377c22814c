package netlab

import (
	"context"
	"fmt"
	"time"
)

// pollInterval is how often WaitFor re-checks its condition.
const pollInterval = 10 * time.Millisecond

// WaitFor polls cond until it returns true, ctx ends or timeout passes,
// whichever is first. Tests use it instead of sleeping.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			if cond() {
				return nil
			}
			return fmt.Errorf("netlab: wait for condition: %w", ctx.Err())
		case <-t.C:
		}
	}
}
