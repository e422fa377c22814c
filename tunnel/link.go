package tunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// configureLink gives the TUN its addresses, MTU and queue length and brings
// it up. Adding an address that is already there (an adopted TUN) is fine.
func configureLink(name string, mtu int, addrs []netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tunnel: find link %s: %w", name, err)
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("tunnel: set MTU %d on %s: %w", mtu, name, err)
	}
	if err := netlink.LinkSetTxQLen(link, 1000); err != nil {
		return fmt.Errorf("tunnel: set txqueuelen on %s: %w", name, err)
	}
	for _, p := range addrs {
		a := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD // the TUN is point-to-multipoint; DAD only delays
		}
		if err := netlink.AddrAdd(link, a); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("tunnel: add address %s to %s: %w", p, name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tunnel: set %s up: %w", name, err)
	}
	return nil
}

// DeleteLink removes a leftover TUN by name; a missing link is not an error.
func DeleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("tunnel: find link %s: %w", name, err)
	}
	if link.Type() != "tuntap" {
		return fmt.Errorf("tunnel: %s is a %s, not a TUN; refusing to delete it", name, link.Type())
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("tunnel: delete %s: %w", name, err)
	}
	return nil
}
