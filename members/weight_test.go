package members

import (
	"net/netip"
	"path/filepath"
	"testing"
)

func TestWeightNormalisedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	open := func() *Registry {
		r, err := Open(path, Options{Prefix4: netip.MustParsePrefix("10.99.0.0/24")})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := open()
	ms, err := r.AddBatch([]AddRequest{{Label: "zero"}, {Label: "five", Weight: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].Weight != DefaultWeight || ms[1].Weight != 5 {
		t.Fatalf("weights %d, %d; want %d, 5", ms[0].Weight, ms[1].Weight, DefaultWeight)
	}
	zero := 0
	_, after, err := r.Update("five", Change{Weight: &zero})
	if err != nil {
		t.Fatal(err)
	}
	if after.Weight != DefaultWeight {
		t.Fatalf("update to 0 stored %d, want %d", after.Weight, DefaultWeight)
	}
	r.Close()
	r = open()
	defer r.Close()
	for _, m := range r.List() {
		if m.Weight < 1 || m.Weight > MaxWeight {
			t.Errorf("%s: weight %d after reopen", m.Label, m.Weight)
		}
	}
}

func TestPrefixes(t *testing.T) {
	m := Member{IPv4: netip.MustParseAddr("10.99.0.2"), IPv6: netip.MustParseAddr("fd00:99::2")}
	got := m.Prefixes()
	if len(got) != 2 || got[0].String() != "10.99.0.2/32" || got[1].String() != "fd00:99::2/128" {
		t.Fatalf("got %v", got)
	}
	if got := (Member{IPv6: m.IPv6}).Prefixes(); len(got) != 1 || got[0].Bits() != 128 {
		t.Fatalf("v6 only: %v", got)
	}
	if got := (Member{}).Addrs(); len(got) != 0 {
		t.Fatalf("none: %v", got)
	}
}

func TestByAddr(t *testing.T) {
	r, err := Open(filepath.Join(t.TempDir(), "m.db"), Options{
		Prefix4: netip.MustParsePrefix("10.99.0.0/24"), Prefix6: netip.MustParsePrefix("fd00:99::/64")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ms, err := r.AddBatch([]AddRequest{{Label: "a"}, {Label: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{ms[1].IPv4, ms[1].IPv6, netip.AddrFrom16(ms[1].IPv4.As16())} {
		if m, ok := r.ByAddr(a); !ok || m.Label != "b" {
			t.Errorf("ByAddr(%s) = %q %v", a, m.Label, ok)
		}
	}
	for _, a := range []string{"10.99.0.1", "10.99.0.9", "192.0.2.1", "fd00:99::1"} {
		if m, ok := r.ByAddr(netip.MustParseAddr(a)); ok {
			t.Errorf("ByAddr(%s) found %q", a, m.Label)
		}
	}
	if _, err := r.RemoveBatch([]string{"b"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.ByAddr(ms[1].IPv4); ok {
		t.Error("removed member still found by address")
	}
}
