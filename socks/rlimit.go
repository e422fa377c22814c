//go:build unix

package socks

import (
	"fmt"
	"syscall"
)

// RaiseNoFileLimit raises the soft RLIMIT_NOFILE to the hard limit and
// returns the limits now in force. Each SOCKS session holds two sockets (a
// UDP association two as well), so the soft limit bounds concurrent
// sessions. Go already raises the soft limit at start-up on Linux; calling
// this makes the figure explicit and reportable.
func RaiseNoFileLimit() (soft, hard uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, fmt.Errorf("socks: get RLIMIT_NOFILE: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, 0, fmt.Errorf("socks: raise RLIMIT_NOFILE to %d: %w", rl.Max, err)
		}
	}
	return uint64(rl.Cur), uint64(rl.Max), nil
}
