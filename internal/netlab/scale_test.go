package netlab

import (
	"testing"
	"time"
)

// TestLabManyMembers builds a few dozen members plus many extra sources,
// and checks the last member and the last extra address answer.
func TestLabManyMembers(t *testing.T) {
	start := time.Now()
	l := newLab(t, Options{Members: 30, ExtraMemberAddrs: 2000})
	t.Logf("built 30 members and 2000 extra addresses in %v", time.Since(start))
	if len(l.Members) != 30 || len(l.Members[0].ExtraAddrs) != 2000 {
		t.Fatalf("%d members, %d extra addresses", len(l.Members), len(l.Members[0].ExtraAddrs))
	}
	last := l.Members[29]
	if last.Addr4.String() != "198.18.1.30" || last.Role != "member30" {
		t.Fatalf("last member %s %s", last.Role, last.Addr4)
	}
	mustPing(t, last, ExitUnderlay4)
	mustPing(t, l.Exit, l.Members[0].ExtraAddrs[1999].String())
	mustPing(t, last, l.Members[0].Addr4.String())
}
