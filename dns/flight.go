package dns

import "sync"

// flights coalesces identical questions: while one upstream resolution for a
// key is in flight, later callers for the same key wait for its result
// instead of sending their own query.
type flights struct {
	onJoin func() // test hook: called when a caller joins a flight

	mu sync.Mutex
	m  map[cacheKey]*flight
}

// flight is one in-flight resolution; res and err are written before done
// is closed and only read after.
type flight struct {
	done chan struct{}
	res  *entry
	err  error
}

// do runs fn once for all concurrent callers with key k and returns its
// result to each; joined reports whether this caller waited on another's
// flight.
func (f *flights) do(k cacheKey, fn func() (*entry, error)) (res *entry, joined bool, err error) {
	f.mu.Lock()
	if c, ok := f.m[k]; ok {
		f.mu.Unlock()
		if f.onJoin != nil {
			f.onJoin()
		}
		<-c.done
		return c.res, true, c.err
	}
	if f.m == nil {
		f.m = make(map[cacheKey]*flight)
	}
	c := &flight{done: make(chan struct{})}
	f.m[k] = c
	f.mu.Unlock()

	// Release the waiters even if fn panics, so one bad answer cannot wedge
	// every later query for the same name.
	defer func() {
		f.mu.Lock()
		delete(f.m, k)
		f.mu.Unlock()
		close(c.done)
	}()
	c.err = errFlightPanic
	c.res, c.err = fn()
	return c.res, false, c.err
}
