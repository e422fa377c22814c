package netlab

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	var n atomic.Int32
	if err := WaitFor(context.Background(), 5*time.Second, func() bool { return n.Add(1) >= 3 }); err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("cond called %d times, want 3", got)
	}
}

func TestWaitForImmediate(t *testing.T) {
	if err := WaitFor(context.Background(), 0, func() bool { return true }); err != nil {
		t.Fatalf("WaitFor with a true condition and no time: %v", err)
	}
}

func TestWaitForTimeout(t *testing.T) {
	start := time.Now()
	err := WaitFor(context.Background(), 50*time.Millisecond, func() bool { return false })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor error = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("WaitFor took %v past a 50ms timeout", d)
	}
}

func TestWaitForCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := WaitFor(ctx, time.Hour, func() bool { return false })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitFor error = %v, want Canceled", err)
	}
}
