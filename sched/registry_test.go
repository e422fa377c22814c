package sched

import (
	"net/netip"
	"sync"
	"testing"
)

func TestRegistry(t *testing.T) {
	r := newRegistry()
	v4 := netip.MustParseAddr("10.0.0.2")
	v6 := netip.MustParseAddr("fd00::2")
	mapped := netip.MustParseAddr("::ffff:10.0.0.3")
	for _, tc := range []struct {
		name    string
		id      uint32
		addrs   []netip.Addr
		wantErr bool
	}{
		{"v4 and v6", 1, []netip.Addr{v4, v6}, false},
		{"v4-mapped is stored as v4", 2, []netip.Addr{mapped}, false},
		{"no addresses", 3, nil, false},
		{"reserved id", UnknownMember, []netip.Addr{v4}, true},
		{"zero address", 4, []netip.Addr{{}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := r.upsert(tc.id, tc.addrs, 1); (err != nil) != tc.wantErr {
				t.Fatalf("upsert err %v, want error %v", err, tc.wantErr)
			}
		})
	}
	look := func(a netip.Addr) uint32 {
		r.mu.RLock()
		defer r.mu.RUnlock()
		return r.lookupRLocked(keyFromAddr(a), true).id
	}
	for _, tc := range []struct {
		addr netip.Addr
		want uint32
	}{
		{v4, 1},
		{v6, 1},
		{netip.MustParseAddr("10.0.0.3"), 2},
		{netip.MustParseAddr("10.0.0.9"), UnknownMember},
		{netip.MustParseAddr("fd00::9"), UnknownMember},
	} {
		if got := look(tc.addr); got != tc.want {
			t.Errorf("lookup %v = %d, want %d", tc.addr, got, tc.want)
		}
	}
	// Packet-side keys agree with address-side keys.
	k, ok, _ := classify(ipv4Packet(serverAddr, v4, protoUDP, 1, 1, 40, 0), true, &flowKey{})
	if !ok || k != keyFromAddr(v4) {
		t.Fatal("packet key differs from address key (IPv4)")
	}
	k, ok, _ = classify(ipv6Packet(netip.MustParseAddr("2001:db8::1"), v6, protoUDP, 1, 1, 60, 0), true, &flowKey{})
	if !ok || k != keyFromAddr(v6) {
		t.Fatal("packet key differs from address key (IPv6)")
	}
	// Changing addresses drops the old ones; removal drops all.
	if err := r.upsert(1, []netip.Addr{v6}, 2); err != nil {
		t.Fatal(err)
	}
	if look(v4) != UnknownMember || look(v6) != 1 || r.get(1).weight() != 2 {
		t.Fatal("readdress of member 1 wrong")
	}
	if !r.remove(1) || look(v6) != UnknownMember || r.get(1) != nil || r.remove(1) {
		t.Fatal("remove wrong")
	}
	if r.get(UnknownMember) != r.unknown || r.len() != 2 {
		t.Fatalf("get(Unknown) or len (%d) wrong", r.len())
	}
	if n := len(r.snapshot()); n != 3 {
		t.Fatalf("snapshot has %d entries, want 2 members + unknown", n)
	}
}

// Bulk adds from several goroutines while the data path looks up.
func TestRegistryConcurrentBulkAdd(t *testing.T) {
	r := newRegistry()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 8000; i += 4 {
				if err := r.upsert(uint32(i), []netip.Addr{memberAddr(i)}, 1); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 8000 {
			r.mu.RLock()
			r.lookupRLocked(keyFromAddr(memberAddr(i)), true)
			r.mu.RUnlock()
		}
	}()
	wg.Wait()
	if r.len() != 8000 {
		t.Fatalf("%d members after bulk add", r.len())
	}
}
