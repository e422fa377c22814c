package e2e

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

// A member's rate cap, set live with `exitctl member set --rate`, holds its
// download near the cap (the srr scheduler passes it over without tokens)
// and lifting the cap gives the speed back, without reconnecting.
func TestMemberRateCap(t *testing.T) {
	testenv.RequireRoot(t)
	l := netlab.NewT(t, netlab.Options{Members: 1})
	ctx := context.Background()
	if _, err := l.Internet.StartIperfServer(ctx, 0); err != nil {
		t.Fatal(err)
	}
	n, err := harness.StartNode(ctx, l, harness.NodeOptions{Bin: bins, Dir: shortTempDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Proc.Stop() })
	if _, err := n.AddMember(ctx, l.Members[0], "capped"); err != nil {
		t.Fatal(err)
	}
	down := func() float64 {
		t.Helper()
		res, err := l.Members[0].Iperf(ctx, netlab.IperfOptions{Server: netip.MustParseAddr(netlab.Internet4),
			Duration: 4 * time.Second, Streams: 2, Reverse: true, Omit: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return res.ReceivedBps
	}
	if _, err := n.Exitctl(ctx, "member", "set", "capped", "--rate", "20mbit"); err != nil {
		t.Fatal(err)
	}
	capped := down()
	// Goodput is on-wire rate minus tunnel and TCP/IP headers (~7 %).
	if capped < 15e6 || capped > 21e6 {
		t.Fatalf("capped at 20 Mbit/s, got %.1f Mbit/s", capped/1e6)
	}
	if _, err := n.Exitctl(ctx, "member", "set", "capped", "--rate", "0"); err != nil {
		t.Fatal(err)
	}
	free := down()
	if free < 3*capped {
		t.Fatalf("after lifting the cap: %.1f Mbit/s (capped: %.1f)", free/1e6, capped/1e6)
	}
	t.Logf("capped %.1f Mbit/s, uncapped %.1f Mbit/s", capped/1e6, free/1e6)
}
