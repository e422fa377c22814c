package e2e

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"exitd/internal/netlab"
)

// conntrackFrom counts the conntrack entries in ns whose original source
// is addr (a member's inner address).
func conntrackFrom(t *testing.T, ns *netlab.NS, addr string) int {
	t.Helper()
	ip := net.ParseIP(addr)
	family := netlink.InetFamily(unix.AF_INET)
	if ip.To4() == nil {
		family = unix.AF_INET6
	}
	n := 0
	if err := ns.Run(func() error {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, family)
		if err != nil {
			return err
		}
		for _, f := range flows {
			if f.Forward.SrcIP.Equal(ip) {
				n++
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("conntrack list: %v", err)
	}
	return n
}
