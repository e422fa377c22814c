package nat

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"exitd/internal/testenv"

	"golang.org/x/sys/unix"
)

// TestLabPortForward: a port on the router's WAN address reaches the
// member's listener while the forward is in the table, and is refused
// (the router's own closed port) once it is gone.
func TestLabPortForward(t *testing.T) {
	testenv.RequireRoot(t)
	l := newLab(t)
	cfg := l.cfg
	cfg.PortForward = true
	if err := l.m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	testenv.Do(t, l.member, func() {
		var err error
		if ln, err = net.Listen("tcp4", netip.AddrPortFrom(labMember, 7000).String()); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	accepted := make(chan netip.Addr, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			c.Close()
		}
	}()
	dial := func() error {
		var err error
		testenv.Do(t, l.target, func() {
			var c net.Conn
			c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(labWAN, 61000).String(), 3*time.Second)
			if err == nil {
				c.Close()
			}
		})
		return err
	}
	fwd := []Forward{{Proto: unix.IPPROTO_TCP, Port: 61000, To: netip.AddrPortFrom(labMember, 7000)}}
	if err := l.m.ApplyForwards(cfg.WAN, fwd); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err != nil {
		t.Fatalf("dial the forwarded port: %v", err)
	}
	select {
	case from := <-accepted:
		if from != labTarget {
			t.Errorf("member saw the connection from %s, want the internet host %s", from, labTarget)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the member's listener accepted nothing")
	}
	// Without the main table's accept the forward chain drops it.
	noPF := cfg
	noPF.PortForward = false
	if err := l.m.Apply(noPF); err != nil {
		t.Fatal(err)
	}
	before := counter(t, l.m, CounterForwardPolicyDrop)
	if err := dial(); err == nil {
		t.Fatal("forwarded without PortForward in the main table")
	}
	if got := counter(t, l.m, CounterForwardPolicyDrop); got <= before {
		t.Errorf("fwd_policy_drop %d → %d: the SYN was not dropped by the forward chain", before, got)
	}
	if err := l.m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	// Gone from the pf table: the router's own closed port answers.
	if err := l.m.ApplyForwards(cfg.WAN, nil); err != nil {
		t.Fatal(err)
	}
	if err := dial(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after the forward was removed: %v, want connection refused", err)
	}
	if err := l.m.RemoveForwards(); err != nil {
		t.Fatal(err)
	}
	if err := l.m.RemoveForwards(); err != nil {
		t.Fatalf("removing an absent table: %v", err)
	}
	if err := l.m.ApplyForwards(cfg.WAN, []Forward{{Proto: unix.IPPROTO_TCP, Port: 1, To: netip.MustParseAddrPort("[fd00::1]:5")}}); err == nil {
		t.Error("an IPv6 forward was accepted")
	}
}
