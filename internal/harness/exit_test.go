package harness

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestParseExitKind(t *testing.T) {
	for _, k := range ExitKinds() {
		got, err := ParseExitKind(string(k))
		if err != nil || got != k {
			t.Errorf("ParseExitKind(%q) = %q, %v", k, got, err)
		}
	}
	for _, bad := range []string{"", "wireguard", "SRR", " srr", "exitd-srr"} {
		_, err := ParseExitKind(bad)
		if !errors.Is(err, ErrUnknownExitKind) {
			t.Errorf("ParseExitKind(%q): %v, want ErrUnknownExitKind", bad, err)
			continue
		}
		for _, want := range []string{`"` + bad + `"`, "exitd, srr, fifo, upstream, debian, bareback"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseExitKind(%q): %q lacks %q", bad, err, want)
			}
		}
	}
}

// TestStartExitRejects checks the errors StartExit returns before it
// touches the lab (nil here: reaching it would panic).
func TestStartExitRejects(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		kind ExitKind
		o    ExitOptions
		want string
	}{
		{"unknown kind", "wireguard", ExitOptions{Dir: dir}, `unknown exit kind "wireguard" (want one of exitd, srr, fifo, upstream, debian, bareback)`},
		{"empty kind", "", ExitOptions{Dir: dir}, `unknown exit kind ""`},
		{"exitd without dir", ExitExitd, ExitOptions{}, "exitd exit: no Dir"},
		{"debian without dir", ExitDebian, ExitOptions{}, "debian exit: no Dir"},
		{"upstream without binary", ExitUpstream, ExitOptions{Dir: dir}, "upstream exit: no Upstream binary"},
		{"valid kind, no lab", ExitFIFO, ExitOptions{Dir: dir}, "fifo exit: no lab"},
		{"bareback needs no dir", ExitBareback, ExitOptions{}, "bareback exit: no lab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, err := StartExit(context.Background(), nil, tc.kind, tc.o)
			if x != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("StartExit(%q) = %v, %v; want error containing %q", tc.kind, x, err, tc.want)
			}
		})
	}
}

func TestSchedulerTable(t *testing.T) {
	tests := []struct {
		name string
		kind ExitKind
		rate string
		want string
	}{
		{"exitd defaults", ExitExitd, "", ""},
		{"exitd paced", ExitExitd, "95mbit", "[scheduler]\negress_rate = \"95mbit\"\n"},
		{"srr", ExitSRR, "", "[scheduler]\ndiscipline = \"srr\"\n"},
		{"fifo paced", ExitFIFO, "95mbit", "[scheduler]\ndiscipline = \"fifo\"\negress_rate = \"95mbit\"\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := schedulerTable(tc.kind, tc.rate); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRunningExitCloseOnce(t *testing.T) {
	calls := 0
	r := &RunningExit{close: func() error { calls++; return errors.New("boom") }}
	if r.Close() == nil || r.Close() == nil || calls != 1 {
		t.Fatalf("calls %d", calls)
	}
}

// TestLayering: the harness drives exitd and exitctl as programs, so of
// exitd's packages it imports only the lab.
func TestLayering(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs go list")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(goBin, "list", "-deps", "exitd/internal/harness").Output()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"exitd/internal/harness": true, "exitd/internal/netlab": true, "exitd/internal/testenv": true}
	for _, p := range strings.Fields(string(out)) {
		if (p == "exitd" || strings.HasPrefix(p, "exitd/")) && !allowed[p] {
			t.Errorf("internal/harness depends on %s", p)
		}
	}
}
