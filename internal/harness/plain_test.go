package harness

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPeersConf(t *testing.T) {
	got, err := peersConf([]string{"AAA=", "BBB="}, []netip.Addr{PlainMemberAddr(0), netip.MustParseAddr("fd00:99::5")})
	if err != nil {
		t.Fatal(err)
	}
	want := "[Peer]\nPublicKey = AAA=\nAllowedIPs = 10.99.0.2/32\n\n[Peer]\nPublicKey = BBB=\nAllowedIPs = fd00:99::5/128\n\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := peersConf([]string{"AAA="}, nil); err == nil || !strings.Contains(err.Error(), "1 keys for 0 addresses") {
		t.Fatalf("mismatched lengths: %v", err)
	}
}

func TestPlainMemberAddr(t *testing.T) {
	for i, want := range map[int]string{0: "10.99.0.2", 253: "10.99.0.255", 254: "10.99.1.0", 19999: "10.99.78.33"} {
		if got := PlainMemberAddr(i).String(); got != want {
			t.Errorf("PlainMemberAddr(%d) = %s, want %s", i, got, want)
		}
	}
}

func TestCountHandshaken(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	out := "k1=\t999990\nk2=\t0\nk3=\t999000\nk4=\t1000000\n"
	if n, err := countHandshaken(out, now, time.Minute); err != nil || n != 2 {
		t.Fatalf("countHandshaken = %d, %v; want 2 (k1, k4: k2 never, k3 too old)", n, err)
	}
	if n, err := countHandshaken("", now, time.Minute); err != nil || n != 0 {
		t.Fatalf("empty: %d, %v", n, err)
	}
	for _, bad := range []string{"k1=\tnot-a-number\n", "k1= 1 2\n"} {
		if _, err := countHandshaken(bad, now, time.Minute); err == nil {
			t.Errorf("countHandshaken(%q): no error", bad)
		}
	}
}
