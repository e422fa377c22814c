package netlab

import (
	"net/netip"
	"strings"
	"testing"
)

func TestMemberAddr(t *testing.T) {
	tests := []struct {
		i      int
		v4, v6 string
	}{
		{1, "198.18.1.1", "2001:2:0:2::1:1"},
		{2, "198.18.1.2", "2001:2:0:2::1:2"},
		{254, "198.18.1.254", "2001:2:0:2::1:fe"},
		{255, "198.18.2.1", "2001:2:0:2::2:1"},
		{508, "198.18.2.254", "2001:2:0:2::2:fe"},
		{509, "198.18.3.1", "2001:2:0:2::3:1"},
		{MaxMembers, "198.18.127.254", "2001:2:0:2::7f:fe"},
	}
	under4 := netip.MustParsePrefix(UnderlayPrefix4)
	under6 := netip.MustParsePrefix(UnderlayPrefix6)
	extra := netip.MustParsePrefix(ExtraPrefix4)
	for _, tc := range tests {
		a4, err := MemberAddr4(tc.i)
		if err != nil || a4.String() != tc.v4 {
			t.Errorf("MemberAddr4(%d) = %v, %v; want %s", tc.i, a4, err, tc.v4)
		}
		a6, err := MemberAddr6(tc.i)
		if err != nil || a6.String() != tc.v6 {
			t.Errorf("MemberAddr6(%d) = %v, %v; want %s", tc.i, a6, err, tc.v6)
		}
		if !under4.Contains(a4) || extra.Contains(a4) || !under6.Contains(a6) {
			t.Errorf("member %d: %s/%s outside the underlay or inside the extra range", tc.i, a4, a6)
		}
	}
	for _, bad := range []int{-1, 0, MaxMembers + 1} {
		if _, err := MemberAddr4(bad); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("MemberAddr4(%d) error = %v, want out of range", bad, err)
		}
		if _, err := MemberAddr6(bad); err == nil {
			t.Errorf("MemberAddr6(%d) accepted", bad)
		}
	}
}

func TestMemberAddrsDistinct(t *testing.T) {
	seen := map[netip.Addr]int{}
	for i := 1; i <= MaxMembers; i++ {
		a, err := MemberAddr4(i)
		if err != nil {
			t.Fatal(err)
		}
		b := a.As4()
		if b[3] == 0 || b[3] == 255 || a.String() == ExitUnderlay4 {
			t.Fatalf("member %d got reserved address %s", i, a)
		}
		if j, dup := seen[a]; dup {
			t.Fatalf("members %d and %d share %s", j, i, a)
		}
		seen[a] = i
	}
}

func TestExtraAddr(t *testing.T) {
	tests := []struct {
		k    int
		want string
	}{
		{0, "198.18.128.1"},
		{1, "198.18.128.2"},
		{254, "198.18.128.255"},
		{255, "198.18.129.0"},
		{MaxExtraAddrs - 1, "198.18.255.254"},
	}
	extra := netip.MustParsePrefix(ExtraPrefix4)
	for _, tc := range tests {
		a, err := ExtraAddr4(tc.k)
		if err != nil || a.String() != tc.want {
			t.Errorf("ExtraAddr4(%d) = %v, %v; want %s", tc.k, a, err, tc.want)
		}
		if !extra.Contains(a) {
			t.Errorf("ExtraAddr4(%d) = %s outside %s", tc.k, a, ExtraPrefix4)
		}
	}
	for _, bad := range []int{-1, MaxExtraAddrs} {
		if _, err := ExtraAddr4(bad); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("ExtraAddr4(%d) error = %v, want out of range", bad, err)
		}
	}
}

// TestConstants keeps the fixed plan consistent: every address parses and
// sits in its prefix, interface names fit IFNAMSIZ.
func TestConstants(t *testing.T) {
	in := []struct{ addr, prefix string }{
		{ExitUnderlay4, UnderlayPrefix4}, {ExitUnderlay6, UnderlayPrefix6},
		{ExitWAN4, WANPrefix4}, {Internet4, WANPrefix4},
		{ExitWAN6, WANPrefix6}, {Internet6, WANPrefix6},
		{ExitLAN4, LANPrefix4}, {Mgmt4, LANPrefix4},
		{ExitLAN6, LANPrefix6}, {Mgmt6, LANPrefix6},
	}
	for _, c := range in {
		if !netip.MustParsePrefix(c.prefix).Contains(netip.MustParseAddr(c.addr)) {
			t.Errorf("%s not in %s", c.addr, c.prefix)
		}
	}
	if netip.MustParsePrefix(UnderlayPrefix4).Contains(netip.MustParseAddr(Metadata4)) {
		t.Errorf("metadata address inside the underlay")
	}
	for _, name := range []string{ExitUnderlayIface, ExitWANIface, ExitLANIface, InternetIface,
		MgmtIface, MemberIface, HubBridge, HubExitPort, hubMemberPort(MaxMembers)} {
		if len(name) > 15 {
			t.Errorf("interface name %q longer than 15", name)
		}
	}
}
