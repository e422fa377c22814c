package tuning

import (
	"errors"
	"fmt"
)

// ErrForwardingOff is wrapped by EnsureForwarding's error: forwarding is off
// and could not be turned on, so the node cannot do its job.
var ErrForwardingOff = errors.New("forwarding is off")

// ForwardingError says which key is off and why it could not be fixed. Its
// message is one sentence meant for the log line the daemon exits with.
type ForwardingError struct {
	Key     string
	InForce string // "" when unreadable
	Cause   error
}

func (e *ForwardingError) Error() string {
	family := "IPv4"
	if e.Key == KeyIPv6Forward {
		family = "IPv6"
	}
	now := e.InForce
	if now == "" {
		now = "unreadable"
	}
	return fmt.Sprintf("tuning: %s forwarding is off (%s = %s) and cannot be turned on here (%s): run `exitd tune apply` as root, and `exitd tune effective` to find a sysctl.d file that sets it to 0",
		family, e.Key, now, statusOf(e.Cause))
}

// Unwrap lets errors.Is match ErrForwardingOff and the cause's class
// (ErrReadOnly, ErrAbsent, ...).
func (e *ForwardingError) Unwrap() []error { return []error{ErrForwardingOff, e.Cause} }

// EnsureForwarding makes sure IPv4 and IPv6 forwarding are on, turning them
// on when they are off and params allows it. It returns a *ForwardingError
// (wrapping ErrForwardingOff) when one stays off. IPv6 forwarding is only
// required when the kernel has IPv6: an absent IPv6 key is not an error
// (Check still reports it).
func EnsureForwarding(params Params) error {
	for _, key := range []string{KeyIPForward, KeyIPv6Forward} {
		v, err := params.Read(key)
		if err == nil && NormalizeValue(v) == "1" {
			continue
		}
		if key == KeyIPv6Forward && errors.Is(err, ErrAbsent) {
			continue
		}
		if err != nil {
			return &ForwardingError{Key: key, Cause: err}
		}
		if werr := params.Write(key, "1"); werr != nil {
			return &ForwardingError{Key: key, InForce: v, Cause: werr}
		}
		if v2, rerr := params.Read(key); rerr != nil || NormalizeValue(v2) != "1" {
			cause := rerr
			if cause == nil {
				cause = fmt.Errorf("tuning: %s reads %q after writing 1: %w", key, v2, ErrRejected)
			}
			return &ForwardingError{Key: key, InForce: v2, Cause: cause}
		}
	}
	return nil
}
