package dns

import (
	"errors"
	"testing"
)

func TestFlightSharesResult(t *testing.T) {
	var f flights
	k := cacheKey{name: "a."}
	want := &entry{ttl: 1}
	got, joined, err := f.do(k, func() (*entry, error) { return want, nil })
	if got != want || joined || err != nil {
		t.Fatalf("do = %v %v %v", got, joined, err)
	}
	if len(f.m) != 0 {
		t.Error("finished flight left in the table")
	}
	boom := errors.New("boom")
	if _, _, err := f.do(k, func() (*entry, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("err = %v, want boom", err)
	}
}

// A panicking resolution must release its waiters with an error and leave
// the key usable.
func TestFlightPanicReleasesWaiters(t *testing.T) {
	var f flights
	k := cacheKey{name: "a."}
	joined := make(chan struct{})
	f.onJoin = func() { close(joined) }
	waiter := make(chan error)
	go func() {
		defer func() { _ = recover() }()
		f.do(k, func() (*entry, error) {
			go func() {
				_, _, err := f.do(k, func() (*entry, error) { return nil, nil })
				waiter <- err
			}()
			<-joined
			panic("bad answer")
		})
	}()
	if err := <-waiter; !errors.Is(err, errFlightPanic) {
		t.Fatalf("waiter got %v, want errFlightPanic", err)
	}
	f.onJoin = nil
	if _, joined, err := f.do(k, func() (*entry, error) { return &entry{}, nil }); joined || err != nil {
		t.Errorf("key not usable after a panic: joined %v err %v", joined, err)
	}
}
