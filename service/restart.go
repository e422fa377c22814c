package service

import (
	"fmt"
	"strings"
)

// RestartPending tells an ExecStopPost command whether systemd is about to
// start unit again, so that it leaves the data path (nftables table, TUN,
// member conntrack) to the next process instead of tearing it down.
//
// A restart follows when a restart job for the unit is running or queued
// (`systemctl restart`, `try-restart` from a package upgrade), or when the
// service failed (SERVICE_RESULT other than "success": a crash, kill -9, a
// watchdog kill) and its Restart= policy restarts on that result.
// systemctl runs `systemctl ARGS...` and returns its stdout; getenv reads
// the environment systemd gives ExecStopPost. The reason is for the log.
func RestartPending(unit string, getenv func(string) string, systemctl func(args ...string) (string, error)) (bool, string, error) {
	out, err := systemctl("list-jobs", "--no-legend", "--no-pager")
	if err != nil {
		return false, "", fmt.Errorf("service: list jobs: %w", err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == unit {
			switch f[2] {
			case "restart", "try-restart", "reload-or-restart", "start":
				return true, fmt.Sprintf("a %s job for %s is pending", f[2], unit), nil
			}
		}
	}
	result := getenv("SERVICE_RESULT")
	if result == "" || result == "success" {
		return false, "", nil
	}
	policy, err := systemctl("show", "--property=Restart", "--value", unit)
	if err != nil {
		return false, "", fmt.Errorf("service: show Restart= of %s: %w", unit, err)
	}
	policy = strings.TrimSpace(policy)
	if restartsOn(policy, result) {
		return true, fmt.Sprintf("%s ended with %s and Restart=%s", unit, result, policy), nil
	}
	return false, "", nil
}

// restartsOn is systemd's table of which results each Restart= setting
// restarts on (systemd.service(5), "Table 2").
func restartsOn(policy, result string) bool {
	switch policy {
	case "always":
		return true
	case "on-failure":
		return result != "success"
	case "on-abnormal":
		return result == "signal" || result == "core-dump" || result == "watchdog" || result == "timeout"
	case "on-abort":
		return result == "signal" || result == "core-dump"
	case "on-watchdog":
		return result == "watchdog"
	}
	return false
}
