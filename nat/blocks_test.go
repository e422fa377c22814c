package nat

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// inRanges is the optimised answer; inPrefixes the slow reference.
func inRanges(rs []addrRange, a netip.Addr) bool {
	for _, r := range rs {
		if !a.Less(r.first) && !r.last.Less(a) {
			return true
		}
	}
	return false
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// probes returns the addresses around every prefix boundary.
func probes(ps []netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for _, p := range ps {
		first, last := p.Masked().Addr(), lastAddr(p)
		out = append(out, first, last, first.Next(), last.Prev(), first.Prev(), last.Next())
	}
	return out
}

func TestBlockRanges(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name  string
		extra []netip.Prefix
		v4    bool
		want  []string
	}{
		{"builtin v4 (metadata addresses inside 100.64/10 and 169.254/16)", nil, true, []string{
			"0.0.0.0-0.255.255.255", "10.0.0.0-10.255.255.255", "100.64.0.0-100.127.255.255",
			"127.0.0.0-127.255.255.255", "168.63.129.16-168.63.129.16", "169.254.0.0-169.254.255.255",
			"172.16.0.0-172.31.255.255", "192.168.0.0-192.168.255.255", "224.0.0.0-255.255.255.255"}},
		{"builtin v6 (fd00:ec2::254 is inside fc00::/7)", nil, false, []string{
			"::1-::1", "64:ff9b::-64:ff9b::ffff:ffff", "64:ff9b:1::-64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
			"2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
			"fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
			"ff00::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
		{"contained, adjacent and overlapping extras", []netip.Prefix{
			p("10.1.0.0/16"), p("11.0.0.0/8"), p("100.0.0.0/9"), p("2001:db8::/32")}, true, []string{
			"0.0.0.0-0.255.255.255", "10.0.0.0-11.255.255.255", "100.0.0.0-100.127.255.255",
			"127.0.0.0-127.255.255.255", "168.63.129.16-168.63.129.16", "169.254.0.0-169.254.255.255",
			"172.16.0.0-172.31.255.255", "192.168.0.0-192.168.255.255", "224.0.0.0-255.255.255.255"}},
		{"joining v6", []netip.Prefix{p("fe00::/9"), p("198.18.0.0/15")}, false, []string{
			"::1-::1", "64:ff9b::-64:ff9b::ffff:ffff", "64:ff9b:1::-64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
			"2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
			"fc00::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ff00::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
		{"everything", []netip.Prefix{p("0.0.0.0/0")}, true, []string{"0.0.0.0-255.255.255.255"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := NewDenySet(tc.extra, nil).ranges(tc.v4)
			var got []string
			for _, r := range rs {
				got = append(got, r.first.String()+"-"+r.last.String())
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("deny ranges =\n%v\nwant\n%v", got, tc.want)
			}
			// Against the reference: same membership at every boundary.
			all := append(builtinBlock4(), builtinBlock6()...)
			all = append(all, tc.extra...)
			for _, a := range probes(all) {
				if !a.IsValid() || a.Is4() != tc.v4 {
					continue
				}
				if inRanges(rs, a) != inPrefixes(all, a) {
					t.Errorf("%s: ranges say %v, prefixes say %v", a, inRanges(rs, a), inPrefixes(all, a))
				}
			}
			// The allow set is exactly the rest of the family.
			allowed := complement(rs, tc.v4)
			for _, a := range probes(all) {
				if a.IsValid() && a.Is4() == tc.v4 && inRanges(allowed, a) == inRanges(rs, a) {
					t.Errorf("%s: in blocked %v, in allowed %v", a, inRanges(rs, a), inRanges(allowed, a))
				}
			}
			// Sorted, disjoint and not touching (the kernel rejects overlaps).
			for i := 1; i < len(rs); i++ {
				if !rs[i-1].last.Next().Less(rs[i].first) {
					t.Errorf("ranges %v and %v overlap or touch", rs[i-1], rs[i])
				}
			}
		})
	}
}

func TestComplement(t *testing.T) {
	r := func(a, b string) addrRange { return addrRange{netip.MustParseAddr(a), netip.MustParseAddr(b)} }
	for _, tc := range []struct {
		name string
		in   []addrRange
		v4   bool
		want []addrRange
	}{
		{"empty", nil, true, []addrRange{r("0.0.0.0", "255.255.255.255")}},
		{"all", []addrRange{r("0.0.0.0", "255.255.255.255")}, true, nil},
		{"middle", []addrRange{r("10.0.0.0", "10.255.255.255")}, true,
			[]addrRange{r("0.0.0.0", "9.255.255.255"), r("11.0.0.0", "255.255.255.255")}},
		{"edges", []addrRange{r("::", "::ff"), r("ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}, false,
			[]addrRange{r("::100", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}},
	} {
		if got := complement(tc.in, tc.v4); !slices.Equal(got, tc.want) {
			t.Errorf("%s: complement = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestIntervalElements(t *testing.T) {
	els := intervalElements(NewDenySet(nil, nil).ranges(true))
	// 9 ranges, the last open to the top of the address space: 17 elements.
	if len(els) != 17 {
		t.Fatalf("%d elements, want 17", len(els))
	}
	for i, e := range els {
		if e.IntervalEnd != (i%2 == 1) {
			t.Errorf("element %d (%v): IntervalEnd = %v", i, e.Key, e.IntervalEnd)
		}
	}
	if last := els[len(els)-1]; last.IntervalEnd || netip.AddrFrom4([4]byte(last.Key)) != netip.MustParseAddr("224.0.0.0") {
		t.Errorf("last element %v", last)
	}
}

// The member prefixes sit inside the deny sets; the forward chain must
// therefore accept member-to-member traffic (isolation off) before the leak
// rule, and return traffic by state. This pins the assumption.
func TestMemberPrefixesAreBlocked(t *testing.T) {
	cfg := testCases()[0].cfg
	if d := NewDenySet(nil, nil); !d.Denied(cfg.Member4.Addr()) || !d.Denied(cfg.Member6.Addr()) {
		t.Fatal("member prefixes are expected inside the built-in deny sets")
	}
}
