package tuning

import (
	"errors"
	"strings"
	"testing"
)

func TestEnsureForwarding(t *testing.T) {
	tests := []struct {
		name     string
		v4, v6   string // "" = absent
		writeErr map[string]error
		clamp    bool // writes succeed but the value stays 0
		errKey   string
		class    error
		writes   int
	}{
		{name: "already on", v4: "1", v6: "1"},
		{name: "turned on", v4: "0", v6: "0", writes: 2},
		{name: "ipv6 absent is fine", v4: "1"},
		{name: "ipv4 read-only", v4: "0", v6: "1", writeErr: map[string]error{KeyIPForward: ErrReadOnly}, errKey: KeyIPForward, class: ErrReadOnly, writes: 1},
		{name: "ipv6 read-only", v4: "1", v6: "0", writeErr: map[string]error{KeyIPv6Forward: ErrReadOnly}, errKey: KeyIPv6Forward, class: ErrReadOnly, writes: 1},
		{name: "ipv4 absent", v6: "1", errKey: KeyIPForward, class: ErrAbsent},
		{name: "write ignored", v4: "0", v6: "1", clamp: true, errKey: KeyIPForward, class: ErrRejected, writes: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]string{}
			if tt.v4 != "" {
				m[KeyIPForward] = tt.v4
			}
			if tt.v6 != "" {
				m[KeyIPv6Forward] = tt.v6
			}
			f := newFake(m)
			for k, e := range tt.writeErr {
				f.writeErr[k] = e
			}
			if tt.clamp {
				f.onWrite = func(f *fakeParams, key, _ string) { f.vals[key] = "0" }
			}
			err := EnsureForwarding(f)
			if len(f.writes) != tt.writes {
				t.Errorf("writes = %v, want %d", f.writes, tt.writes)
			}
			if tt.errKey == "" {
				if err != nil {
					t.Fatalf("EnsureForwarding: %v", err)
				}
				return
			}
			var fe *ForwardingError
			if !errors.As(err, &fe) || fe.Key != tt.errKey {
				t.Fatalf("err = %v, want a *ForwardingError for %s", err, tt.errKey)
			}
			if !errors.Is(err, ErrForwardingOff) || !errors.Is(err, tt.class) {
				t.Errorf("err = %v: want Is(ErrForwardingOff) and Is(%v)", err, tt.class)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tt.errKey) || !strings.Contains(msg, "exitd tune apply") {
				t.Errorf("message is not one clear line naming the key and the fix: %q", msg)
			}
		})
	}
}
