package node

import (
	"log/slog"
	"os"
	"sync"
	"syscall"
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

// fakeService records the fd store traffic.
type fakeService struct {
	mu       sync.Mutex
	stored   []string
	removed  []string
	files    map[string][]*os.File
	storeErr error
}

func (f *fakeService) StoreFile(name string, _ syscall.Conn) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.storeErr != nil {
		return f.storeErr
	}
	f.stored = append(f.stored, name)
	return nil
}

func (f *fakeService) RemoveFiles(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, name)
	return nil
}

func (f *fakeService) TakeFiles(name string) []*os.File {
	fs := f.files[name]
	delete(f.files, name)
	return fs
}

func (f *fakeService) WatchdogInterval() time.Duration { return 30 * time.Second }

func devNull(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return os.NewFile(f.Fd(), name)
}

func TestServiceInterface(t *testing.T) {
	var _ Service = (*fakeService)(nil)
	var _ Notifier = (*service.Manager)(nil)
	_ = New(Options{Logger: slog.New(slog.DiscardHandler)})
}
