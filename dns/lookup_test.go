package dns

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
)

func TestLookupNetIP(t *testing.T) {
	up := startUpstream(t, zone(t,
		"www.example. 300 IN A 192.0.2.10",
		"www.example. 300 IN AAAA 2001:db8::10",
		"v4only.example. 300 IN A 192.0.2.11",
		"inside.example. 300 IN A 10.1.2.3",
	))
	path := filepath.Join(t.TempDir(), "block.txt")
	writeFile(t, path, "ads.example\n")
	r := testResolver(t, newClock(), Config{Upstreams: []string{up.addr}, Rebind: true, BlocklistPath: path}, Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		name, network, host string
		want                []string
		wantErr             func(error) bool
	}{
		{"both families", "ip", "www.example", []string{"192.0.2.10", "2001:db8::10"}, nil},
		{"v4", "ip4", "WWW.example.", []string{"192.0.2.10"}, nil},
		{"v6", "ip6", "www.example", []string{"2001:db8::10"}, nil},
		{"literal", "ip", "198.51.100.1", []string{"198.51.100.1"}, nil},
		{"one family only", "ip", "v4only.example", []string{"192.0.2.11"}, nil},
		{"nxdomain", "ip", "nope.example", nil, isNotFound},
		{"blocked", "ip", "sub.ads.example", nil, isNotFound},
		{"rebinding", "ip4", "inside.example", nil, func(err error) bool { return errors.Is(err, ErrRebind) }},
		{"bad name", "ip", "a..b", nil, isNotFound},
		{"bad network", "tcp", "www.example", nil, func(err error) bool { return err != nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.LookupNetIP(ctx, tc.network, tc.host)
			if tc.wantErr != nil {
				if !tc.wantErr(err) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var s []string
			for _, a := range got {
				s = append(s, a.String())
			}
			if err != nil || !slices.Equal(s, tc.want) {
				t.Fatalf("got %v %v, want %v", s, err, tc.want)
			}
		})
	}
	// The cache serves repeated lookups (and member queries) alike.
	before := up.count()
	if _, err := r.LookupNetIP(ctx, "ip", "www.example"); err != nil {
		t.Fatal(err)
	}
	if m := ask(t, r, question("www.example.", mdns.TypeA, 0, false)); len(m.Answer) != 1 {
		t.Fatalf("member query after lookup: %v", m)
	}
	if up.count() != before {
		t.Fatalf("cached name asked upstream %d more times", up.count()-before)
	}
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
