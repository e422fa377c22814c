package service

import (
	"errors"
	"strings"
	"testing"
)

func TestRestartPending(t *testing.T) {
	tests := []struct {
		name    string
		jobs    string
		result  string
		policy  string
		want    bool
		because string
	}{
		{"systemctl restart", "1234 exitd.service restart running\n", "success", "on-failure", true, "restart job"},
		{"package upgrade", "77 exitd.service try-restart waiting\n", "", "on-failure", true, "try-restart job"},
		{"start queued behind stop", "9 exitd.service start waiting\n", "success", "no", true, "start job"},
		{"systemctl stop", "1234 exitd.service stop running\n", "success", "on-failure", false, ""},
		{"another unit restarts", "5 other.service restart running\n", "success", "on-failure", false, ""},
		{"kill -9", "", "signal", "on-failure", true, "signal and Restart=on-failure"},
		{"watchdog kill", "", "watchdog", "on-failure", true, "watchdog"},
		{"crash, no restart policy", "", "exit-code", "no", false, ""},
		{"crash, on-abnormal ignores exit codes", "", "exit-code", "on-abnormal", false, ""},
		{"clean exit", "", "success", "on-failure", false, ""},
		{"not under systemd", "", "", "on-failure", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) string {
				if k == "SERVICE_RESULT" {
					return tc.result
				}
				return ""
			}
			sc := func(args ...string) (string, error) {
				switch args[0] {
				case "list-jobs":
					return tc.jobs, nil
				case "show":
					if args[len(args)-1] != "exitd.service" {
						t.Fatalf("show for %v", args)
					}
					return tc.policy + "\n", nil
				}
				t.Fatalf("unexpected systemctl %v", args)
				return "", nil
			}
			got, why, err := RestartPending("exitd.service", env, sc)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || !strings.Contains(why, tc.because) {
				t.Fatalf("got %v (%q), want %v (%q)", got, why, tc.want, tc.because)
			}
		})
	}
}

func TestRestartPendingErrors(t *testing.T) {
	failing := func(args ...string) (string, error) { return "", errors.New("no bus") }
	if _, _, err := RestartPending("exitd.service", func(string) string { return "signal" }, failing); err == nil {
		t.Fatal("systemctl failure not reported")
	}
	showFails := func(args ...string) (string, error) {
		if args[0] == "show" {
			return "", errors.New("no bus")
		}
		return "", nil
	}
	if _, _, err := RestartPending("exitd.service", func(string) string { return "signal" }, showFails); err == nil {
		t.Fatal("show failure not reported")
	}
}

func TestRestartsOn(t *testing.T) {
	for _, tc := range []struct {
		policy, result string
		want           bool
	}{
		{"always", "success", true}, {"no", "signal", false}, {"on-abort", "core-dump", true},
		{"on-abort", "watchdog", false}, {"on-watchdog", "watchdog", true}, {"on-abnormal", "timeout", true},
	} {
		if got := restartsOn(tc.policy, tc.result); got != tc.want {
			t.Errorf("restartsOn(%s, %s) = %v", tc.policy, tc.result, got)
		}
	}
}
