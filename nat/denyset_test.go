package nat

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestDenySetBuiltins(t *testing.T) {
	d := NewDenySet(nil, nil)
	for _, tc := range []struct {
		addr   string
		denied bool
	}{
		{"64:ff9b::a00:1", true},     // NAT64 of 10.0.0.1
		{"64:ff9b::808:808", true},   // NAT64 of anything: the provider's NAT64 decides
		{"64:ff9b:1:2::1", true},     // local-use NAT64
		{"64:ff9b:2::1", false},      // past the /48
		{"fd00:ec2::254", true},      // AWS metadata (IPv6)
		{"169.254.169.253", true},    // AWS DNS
		{"169.254.169.254", true},    // metadata
		{"168.63.129.16", true},      // Azure WireServer
		{"168.63.129.15", false},     // its neighbours are public
		{"168.63.129.17", false},     //
		{"100.100.100.200", true},    // Alibaba metadata
		{"::ffff:10.1.2.3", true},    // IPv4-mapped: judged as IPv4
		{"::ffff:8.8.8.8", false},    //
		{"fe80::1%eth0", true},       // zone ignored
		{"127.0.0.1", true},          //
		{"::1", true},                //
		{"8.8.8.8", false},           //
		{"2606:4700::1111", false},   //
		{"255.255.255.255", true},    //
		{"0.0.0.0", true},            //
		{"::", false},                // unspecified v6 is not routable anyway
		{"ffff:ffff::", true},        //
		{"2001:db8:ffff::1", true},   //
		{"2001:db9::1", false},       //
		{"223.255.255.255", false},   //
		{"224.0.0.0", true},          //
		{"198.51.100.20", false},     // documentation v4 is not built in
		{"192.0.2.1", false},         //
		{"fc00::1", true},            //
		{"fec0::1", false},           // deprecated site-local: not built in
		{"100.63.255.255", false},    //
		{"100.128.0.0", false},       //
		{"169.253.255.255", false},   //
		{"172.32.0.0", false},        //
		{"11.0.0.0", false},          //
		{"9.255.255.255", false},     //
		{"10.255.255.255", true},     //
		{"126.255.255.255", false},   //
		{"128.0.0.0", false},         //
		{"192.167.255.255", false},   //
		{"192.169.0.0", false},       //
		{"64:ff9a:ffff::1", false},   //
		{"fd00:ec2::253", true},      // inside fc00::/7 anyway
		{"febf:ffff::1", true},       //
		{"ff02::1", true},            //
		{"2001:2:0:1::2", false},     // the lab's internet host
		{"203.0.113.2", false},       //
		{"1.1.1.1", false},           //
		{"100.100.100.201", true},    // inside 100.64/10
		{"169.254.169.255", true},    //
		{"192.168.255.255", true},    //
		{"172.31.255.255", true},     //
		{"0.255.255.255", true},      //
		{"1.0.0.0", false},           //
		{"239.255.255.255", true},    //
		{"240.0.0.1", true},          //
		{"127.255.255.255", true},    //
		{"::2", false},               //
		{"fdff:ffff::", true},        //
		{"fe00::", false},            //
		{"fec0::", false},            //
		{"ff00::", true},             //
		{"64:ff9b::", true},          //
		{"64:ff9b::1:0:0", false},    // past the /96
		{"64:ff9b:0:0:0:1::", false}, //
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := d.Denied(a); got != tc.denied {
			t.Errorf("Denied(%s) = %v, want %v", a, got, tc.denied)
		}
	}
	if !d.Denied(netip.Addr{}) {
		t.Error("the invalid address is not denied")
	}
}

// TestDenySetReference compares Denied with a slow reference (in a block
// prefix and in no allow prefix) on random prefix lists, at every boundary
// and at random addresses.
func TestDenySetReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		block, allow := randomPrefixes(rng, rng.IntN(8)), randomPrefixes(rng, rng.IntN(6))
		d := NewDenySet(block, allow)
		all := append(append(append(builtinBlock4(), builtinBlock6()...), block...), allow...)
		addrs := append(probes(all), randomAddrs(rng, 200)...)
		for _, a := range addrs {
			if !a.IsValid() {
				continue
			}
			want := (inPrefixes(builtinBlock4(), a) || inPrefixes(builtinBlock6(), a) || inPrefixes(block, a)) && !inPrefixes(allow, a)
			if got := d.Denied(a); got != want {
				t.Fatalf("case %d: block %v allow %v: Denied(%s) = %v, want %v", i, block, allow, a, got, want)
			}
		}
		// The prefix form covers exactly the same addresses.
		ps := d.Prefixes()
		for _, a := range addrs {
			if a.IsValid() && inPrefixes(ps, a) != d.Denied(a) {
				t.Fatalf("case %d: Prefixes() %v disagrees with Denied at %s", i, ps, a)
			}
		}
		for _, v4 := range []bool{true, false} {
			rs := d.ranges(v4)
			for j := 1; j < len(rs); j++ {
				if !rs[j-1].last.Next().Less(rs[j].first) {
					t.Fatalf("case %d: ranges %v and %v overlap or touch", i, rs[j-1], rs[j])
				}
			}
		}
	}
}

// TestDenySetMatchesRuleset is the property the DenySet exists for: what
// Denied says about an address is what the ruleset's interval sets say
// (blocked contains it, allowed does not), read back from the netlink
// messages Apply sends, for the test cases and random configs.
func TestDenySetMatchesRuleset(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cfgs := []Config{}
	for _, tc := range testCases() {
		cfgs = append(cfgs, tc.cfg)
	}
	for range 40 {
		cfg := testCases()[0].cfg
		cfg.Block = randomPrefixes(rng, rng.IntN(6))
		cfg.WANPrefixes = randomPrefixes(rng, rng.IntN(3))
		for _, p := range randomPrefixes(rng, rng.IntN(5)) {
			if p.Overlaps(loopback4) || p.Overlaps(loopback6) || p.Overlaps(cfg.Member4) || p.Overlaps(cfg.Member6) {
				continue
			}
			cfg.Allow = append(cfg.Allow, p)
		}
		cfgs = append(cfgs, cfg)
	}
	for i, cfg := range cfgs {
		m, rec := newFakeManager(t)
		if err := m.Apply(cfg); err != nil {
			t.Fatalf("config %d: %v", i, err)
		}
		batches := rec.take()
		sets := setsInBatch(t, batches[len(batches)-1])
		d := cfg.DenySet()
		all := append(append(append(append(builtinBlock4(), builtinBlock6()...), cfg.Block...), cfg.WANPrefixes...), cfg.Allow...)
		for _, a := range append(probes(all), randomAddrs(rng, 500)...) {
			if !a.IsValid() {
				continue
			}
			blocked, allowed := setBlocked6, setAllowed6
			if a.Is4() {
				blocked, allowed = setBlocked4, setAllowed4
			}
			inB, inA := inRanges(sets[blocked], a), inRanges(sets[allowed], a)
			if d.Denied(a) != inB || inA == inB {
				t.Fatalf("config %d (block %v, wan %v, allow %v): %s: Denied %v, in %s %v, in %s %v",
					i, cfg.Block, cfg.WANPrefixes, cfg.Allow, a, d.Denied(a), blocked, inB, allowed, inA)
			}
		}
	}
}

// setsInBatch decodes the interval sets' elements from a ruleset batch.
func setsInBatch(t *testing.T, batch []netlink.Message) map[string][]addrRange {
	t.Helper()
	out := map[string][]addrRange{}
	for _, msg := range batch {
		if msg.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM) {
			continue
		}
		attrs, err := netlink.UnmarshalAttributes(msg.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		var name string
		type elem struct {
			key netip.Addr
			end bool
		}
		var els []elem
		for _, a := range attrs {
			switch a.Type & nlaTypeMask {
			case unix.NFTA_SET_ELEM_LIST_SET:
				name = strings.TrimRight(string(a.Data), "\x00")
			case unix.NFTA_SET_ELEM_LIST_ELEMENTS:
				if !strings.HasPrefix(name, "blocked") && !strings.HasPrefix(name, "allowed") {
					continue // the fair-state sets hold plain addresses
				}
				list, err := netlink.UnmarshalAttributes(a.Data)
				if err != nil {
					t.Fatal(err)
				}
				for _, le := range list {
					eattrs, err := netlink.UnmarshalAttributes(le.Data)
					if err != nil {
						t.Fatal(err)
					}
					var e elem
					for _, ea := range eattrs {
						switch ea.Type & nlaTypeMask {
						case unix.NFTA_SET_ELEM_KEY:
							kv, err := netlink.UnmarshalAttributes(ea.Data)
							if err != nil || len(kv) != 1 {
								t.Fatalf("element key: %v", err)
							}
							e.key, _ = netip.AddrFromSlice(kv[0].Data)
						case unix.NFTA_SET_ELEM_FLAGS:
							e.end = binary.BigEndian.Uint32(ea.Data)&unix.NFT_SET_ELEM_INTERVAL_END != 0
						}
					}
					els = append(els, e)
				}
			}
		}
		slices.SortStableFunc(els, func(a, b elem) int { return a.key.Compare(b.key) })
		var rs []addrRange
		for i, e := range els {
			if e.end {
				continue
			}
			last := lastAddr(netip.PrefixFrom(e.key, 0))
			if i+1 < len(els) {
				if !els[i+1].end {
					t.Fatalf("set %s: start %s followed by another start", name, e.key)
				}
				last = els[i+1].key.Prev()
			}
			rs = append(rs, addrRange{e.key, last})
		}
		out[name] = rs
	}
	for _, name := range []string{setBlocked4, setBlocked6, setAllowed4, setAllowed6} {
		if _, ok := out[name]; !ok {
			t.Fatalf("no elements for set %s in the batch", name)
		}
	}
	return out
}

// randomPrefixes returns n prefixes of both families, biased towards the
// neighbourhood of the built-in ones so that they overlap and touch.
func randomPrefixes(rng *rand.Rand, n int) []netip.Prefix {
	builtin := append(builtinBlock4(), builtinBlock6()...)
	var out []netip.Prefix
	for range n {
		var a netip.Addr
		if rng.IntN(2) == 0 {
			near := builtin[rng.IntN(len(builtin))]
			a = near.Addr()
			if rng.IntN(2) == 0 {
				a = lastAddr(near).Next()
				if !a.IsValid() {
					a = near.Addr()
				}
			}
		} else {
			a = randomAddrs(rng, 1)[0]
		}
		min := 1
		if a.Is4() {
			min = 4
		}
		bits := min + rng.IntN(a.BitLen()-min+1)
		out = append(out, netip.PrefixFrom(a, bits).Masked())
	}
	return out
}

func randomAddrs(rng *rand.Rand, n int) []netip.Addr {
	var out []netip.Addr
	for range n {
		if rng.IntN(2) == 0 {
			out = append(out, netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}))
			continue
		}
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], rng.Uint64())
		binary.BigEndian.PutUint64(b[8:], rng.Uint64())
		if rng.IntN(2) == 0 { // the interesting part of the space
			b[0], b[1] = []byte{0x00, 0x20, 0xfc, 0xfe, 0xff}[rng.IntN(5)], byte(rng.IntN(4))
			if b[0] == 0 {
				b[1], b[2], b[3] = 0x64, 0xff, 0x9b
			}
		}
		out = append(out, netip.AddrFrom16(b))
	}
	return out
}

func TestSubtract(t *testing.T) {
	r := func(a, b string) addrRange { return addrRange{netip.MustParseAddr(a), netip.MustParseAddr(b)} }
	for _, tc := range []struct {
		name            string
		rs, holes, want []addrRange
	}{
		{"no holes", []addrRange{r("10.0.0.0", "10.0.0.9")}, nil, []addrRange{r("10.0.0.0", "10.0.0.9")}},
		{"middle", []addrRange{r("10.0.0.0", "10.0.0.9")}, []addrRange{r("10.0.0.3", "10.0.0.4")},
			[]addrRange{r("10.0.0.0", "10.0.0.2"), r("10.0.0.5", "10.0.0.9")}},
		{"edges", []addrRange{r("10.0.0.0", "10.0.0.9")}, []addrRange{r("9.0.0.0", "10.0.0.0"), r("10.0.0.9", "11.0.0.0")},
			[]addrRange{r("10.0.0.1", "10.0.0.8")}},
		{"all", []addrRange{r("10.0.0.0", "10.0.0.9")}, []addrRange{r("0.0.0.0", "255.255.255.255")}, nil},
		{"one hole over two ranges", []addrRange{r("10.0.0.0", "10.0.0.9"), r("10.0.0.20", "10.0.0.29")},
			[]addrRange{r("10.0.0.5", "10.0.0.25")}, []addrRange{r("10.0.0.0", "10.0.0.4"), r("10.0.0.26", "10.0.0.29")}},
		{"top", []addrRange{r("ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
			[]addrRange{r("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
			[]addrRange{r("ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffef")}},
	} {
		if got := subtract(tc.rs, tc.holes); !slices.Equal(got, tc.want) {
			t.Errorf("%s: subtract = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDenySetEqual(t *testing.T) {
	p := netip.MustParsePrefix
	a := NewDenySet([]netip.Prefix{p("192.0.2.0/24")}, nil)
	if !a.Equal(NewDenySet([]netip.Prefix{p("192.0.2.0/25"), p("192.0.2.128/25")}, nil)) {
		t.Error("the same addresses in two halves are not Equal")
	}
	if a.Equal(NewDenySet([]netip.Prefix{p("192.0.2.0/24")}, []netip.Prefix{p("192.0.2.7/32")})) {
		t.Error("a hole is not seen by Equal")
	}
}
