package tuning

import (
	"fmt"
	"runtime"
	"sync"
)

// fakeParams is an in-memory kernel. Keys missing from vals are absent;
// writeErr forces a write failure; onWrite models side effects.
type fakeParams struct {
	mu       sync.Mutex
	vals     map[string]string
	writeErr map[string]error
	readErr  map[string]error
	writes   []string // "key=value" in order
	onWrite  func(f *fakeParams, key, value string)
}

var _ Params = (*fakeParams)(nil)

func newFake(vals map[string]string) *fakeParams {
	return &fakeParams{vals: vals, writeErr: map[string]error{}, readErr: map[string]error{}}
}

func (f *fakeParams) Read(key string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.readErr[key]; err != nil {
		return "", fmt.Errorf("fake: read %s: %w", key, err)
	}
	v, ok := f.vals[key]
	if !ok {
		return "", fmt.Errorf("fake: read %s: %w", key, ErrAbsent)
	}
	return v, nil
}

func (f *fakeParams) Write(key, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes = append(f.writes, key+"="+value)
	if err := f.writeErr[key]; err != nil {
		return fmt.Errorf("fake: write %s: %w", key, err)
	}
	if _, ok := f.vals[key]; !ok {
		return fmt.Errorf("fake: write %s: %w", key, ErrAbsent)
	}
	f.vals[key] = value
	if f.onWrite != nil {
		f.onWrite(f, key, value)
	}
	return nil
}

func (f *fakeParams) set(key, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vals[key] = value
}

// safeKernel returns values under which every critical key holds.
func safeKernel() map[string]string {
	m := map[string]string{}
	for _, k := range CriticalKeys() {
		m[k] = criticalKeys[k].want
	}
	m[KeyConntrackMax] = "262144"
	m[KeyBuckets] = "262144"
	return m
}

func mustParse(text string) *Profile {
	p, err := Parse("test.conf", []byte(text))
	if err != nil {
		panic(err)
	}
	return p
}

func runtimeGosched() { runtime.Gosched() }
