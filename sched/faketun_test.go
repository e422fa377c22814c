package sched

import (
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
)

// fakeTUN is a tun.Device with a configurable batch size: Read returns the
// next batch sent on reads (or the next error on errs), Write records a
// copy of every packet with the offset it was written at.
type fakeTUN struct {
	batch  int
	reads  chan [][]byte
	errs   chan error
	closed chan struct{}
	once   sync.Once
	events chan tun.Event

	mu      sync.Mutex // guards written, offsets
	written [][]byte
	offsets []int
}

func newFakeTUN(batch int) *fakeTUN {
	return &fakeTUN{
		batch:  batch,
		reads:  make(chan [][]byte),
		errs:   make(chan error),
		closed: make(chan struct{}),
		events: make(chan tun.Event),
	}
}

var _ tun.Device = (*fakeTUN)(nil)

func (f *fakeTUN) File() *os.File { return nil }

func (f *fakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-f.closed:
		return 0, os.ErrClosed
	case err := <-f.errs:
		return 0, err
	case batch := <-f.reads:
		n := 0
		for _, p := range batch {
			if n == len(bufs) {
				return n, tun.ErrTooManySegments
			}
			sizes[n] = copy(bufs[n][offset:], p)
			n++
		}
		return n, nil
	}
}

func (f *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-f.closed:
		return 0, os.ErrClosed
	default:
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range bufs {
		f.written = append(f.written, append([]byte(nil), b[offset:]...))
		f.offsets = append(f.offsets, offset)
	}
	return len(bufs), nil
}

func (f *fakeTUN) MTU() (int, error)        { return 1420, nil }
func (f *fakeTUN) Name() (string, error)    { return "fake0", nil }
func (f *fakeTUN) Events() <-chan tun.Event { return f.events }
func (f *fakeTUN) BatchSize() int           { return f.batch }
func (f *fakeTUN) Close() error {
	f.once.Do(func() { close(f.closed); close(f.events) })
	return nil
}

func (f *fakeTUN) writtenCopy() ([][]byte, []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.written...), append([]int(nil), f.offsets...)
}
