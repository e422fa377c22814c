package dns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	mdns "github.com/miekg/dns"
)

func TestParseBlocklist(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		names []string
		bad   int
	}{
		{"domain list", "ads.example\ntracker.example.\n", []string{"ads.example.", "tracker.example."}, 0},
		{"hosts format", "0.0.0.0 ads.example\n127.0.0.1 a.example b.example\n:: v6.example\n", []string{"a.example.", "ads.example.", "b.example.", "v6.example."}, 0},
		{"comments and blanks", "# list\n\n   \nads.example # trailing\n\t# indented\n", []string{"ads.example."}, 0},
		{"lowercased", "ADS.Example\n0.0.0.0 Tracker.EXAMPLE\n", []string{"ads.example.", "tracker.example."}, 0},
		{"crlf", "ads.example\r\n0.0.0.0 b.example\r\n", []string{"ads.example.", "b.example."}, 0},
		{"hosts self names ignored", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n255.255.255.255 broadcasthost\n0.0.0.0 0.0.0.0\n", nil, 1},
		{"bad lines counted", "ads.example\nnot a valid line\n||adblock.example^\n*.wild.example\n0.0.0.0 bad..name\n1.2.3.4\nok.example\n", []string{"ads.example.", "ok.example."}, 5},
		{"address alone", "192.0.2.1\n", nil, 1},
		{"root", ".\n", nil, 1},
		{"too long line", strings.Repeat("a", 5000) + "\nok.example\n", []string{"ok.example."}, 1},
		{"no final newline", "ads.example", []string{"ads.example."}, 0},
		{"empty", "", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bl, err := parseBlocklist(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for n := range bl.names {
				got = append(got, n)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.names) || bl.bad != tt.bad {
				t.Errorf("names %q bad %d, want %q bad %d", got, bl.bad, tt.names, tt.bad)
			}
		})
	}
}

func TestParseBlocklistReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	if _, err := parseBlocklist(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("err = %v, want the read error", err)
	}
}

func TestBlocked(t *testing.T) {
	bl, err := parseBlocklist(strings.NewReader("ads.example\n0.0.0.0 deep.sub.tracker.example\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want bool
	}{
		{"ads.example.", true},
		{"x.ads.example.", true},
		{"a.b.c.ads.example.", true},
		{"deep.sub.tracker.example.", true},
		{"x.deep.sub.tracker.example.", true},
		{"sub.tracker.example.", false},
		{"bads.example.", false},
		{"example.", false},
		{"ads.example.net.", false},
		{".", false},
	}
	for _, tt := range tests {
		if got := bl.blocked(tt.name); got != tt.want {
			t.Errorf("blocked(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	if (*blocklist)(nil).blocked("ads.example.") {
		t.Error("a nil blocklist blocks")
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBlocklistAnswersAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "block.txt")
	writeFile(t, path, "ads.example\nbad line here\n")
	up := startUpstream(t, zone(t, "ads.example. 60 IN A 192.0.2.1", "x.ads.example. 60 IN A 192.0.2.2", "ok.example. 60 IN A 192.0.2.3"))
	r := testResolver(t, newClock(), Config{Upstreams: []string{up.addr}, BlocklistPath: path}, Options{})
	if st := r.Stats(); st.BlocklistEntries != 1 || st.BlocklistBadLines != 1 {
		t.Fatalf("blocklist stats %d entries %d bad, want 1 and 1", st.BlocklistEntries, st.BlocklistBadLines)
	}
	check := func(step, name string, blocked bool) {
		t.Helper()
		got := ask(t, r, question(name, mdns.TypeA, 1232, false))
		if blocked {
			if got.Rcode != mdns.RcodeNameError || len(got.Answer) != 0 || !slices.Equal(ede(got), []uint16{mdns.ExtendedErrorCodeBlocked}) {
				t.Errorf("%s: %s: rcode %s EDE %v, want NXDOMAIN Blocked", step, name, mdns.RcodeToString[got.Rcode], ede(got))
			}
		} else if got.Rcode != mdns.RcodeSuccess || len(got.Answer) != 1 {
			t.Errorf("%s: %s: rcode %s answer %v, want the record", step, name, mdns.RcodeToString[got.Rcode], got.Answer)
		}
	}
	check("loaded", "ads.example.", true)
	check("loaded", "X.Ads.Example.", true)
	check("loaded", "ok.example.", false)
	if up.count() != 1 || r.Stats().Blocked != 2 {
		t.Fatalf("upstream %d blocked %d, want 1 and 2", up.count(), r.Stats().Blocked)
	}

	writeFile(t, path, "0.0.0.0 ok.example\n")
	if err := r.ReloadBlocklist(); err != nil {
		t.Fatal(err)
	}
	check("reloaded", "ads.example.", false)
	check("reloaded", "ok.example.", true) // even though it is cached

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := r.ReloadBlocklist(); err == nil || !strings.HasPrefix(err.Error(), "dns: blocklist") {
		t.Fatalf("reload of a missing file: err = %v", err)
	}
	check("failed reload keeps the old list", "ok.example.", true)
}

func TestNoBlocklistReload(t *testing.T) {
	r := testResolver(t, newClock(), Config{Upstreams: []string{"192.0.2.53"}}, Options{})
	if err := r.ReloadBlocklist(); err != nil {
		t.Errorf("reload without a blocklist: %v", err)
	}
}

// TestReloadDuringTraffic runs queries, reloads and Stats at once; run it
// under -race.
func TestReloadDuringTraffic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "block.txt")
	writeFile(t, path, "ads.example\n")
	up := startUpstream(t, zone(t, "ok.example. 60 IN A 192.0.2.3"))
	clock := newClock()
	r := testResolver(t, clock, Config{Upstreams: []string{up.addr}, BlocklistPath: path, CacheEntries: 4}, Options{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				w := udpFrom(fmt.Sprintf("10.99.0.%d", g+2))
				r.ServeDNS(w, question(fmt.Sprintf("n%d.ok.example.", i%6), mdns.TypeA, 1232, false))
				if w.err != nil || len(w.msgs) != 1 {
					t.Errorf("query %d: %v, %d replies", i, w.err, len(w.msgs))
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			writeFile(t, path+".new", fmt.Sprintf("ads%d.example\n", i))
			if err := os.Rename(path+".new", path); err != nil {
				t.Error(err)
			}
			if err := r.ReloadBlocklist(); err != nil {
				t.Error(err)
			}
			_ = r.Stats()
			clock.Advance(secs(10))
		}
	})
	wg.Wait()
	if st := r.Stats(); st.Queries != 200 || st.CacheEntries > 4 {
		t.Errorf("queries %d cache entries %d, want 200 and ≤ 4", st.Queries, st.CacheEntries)
	}
}
