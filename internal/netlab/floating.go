package netlab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

/* A floating address, as keepalived moves one between the nodes of a
   cluster (exitd's lab cluster moves FloatingUnderlay4 between exits):

     old holder:  DelAddr(mlan0, 198.18.0.254/32)
     new holder:  AddAddr(mlan0, 198.18.0.254/32), Announce(mlan0, 198.18.0.254)

   Announce sends a gratuitous ARP request (sender and target both the
   address, broadcast), which makes every neighbour that already has an
   entry for the address point it at the new holder's MAC; without it a
   member keeps sending to the old holder until its entry goes stale. */

// AddAddr adds p (its address and prefix length) to dev inside the
// namespace, without DAD.
func (n *NS) AddAddr(dev string, p netip.Prefix) error {
	return addAddr(n, dev, p.Addr(), p.Bits())
}

// DelAddr removes p from dev inside the namespace.
func (n *NS) DelAddr(dev string, p netip.Prefix) error {
	ln, err := n.nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("netlab: %s: link %s: %w", n.Name, dev, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if err := n.nl.AddrDel(ln, a); err != nil {
		return fmt.Errorf("netlab: %s: del %s from %s: %w", n.Name, p, dev, err)
	}
	return nil
}

// Announce broadcasts one gratuitous ARP request for addr (IPv4 only) from
// dev, with dev's MAC as the sender: neighbours holding an entry for addr
// update it to this namespace's link.
func (n *NS) Announce(dev string, addr netip.Addr) error {
	if !addr.Is4() {
		return fmt.Errorf("netlab: %s: announce %s: IPv4 only", n.Name, addr)
	}
	ln, err := n.nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("netlab: %s: link %s: %w", n.Name, dev, err)
	}
	mac := ln.Attrs().HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("netlab: %s: announce on %s: no Ethernet address", n.Name, dev)
	}
	frame := garpFrame(mac, addr)
	return n.Run(func() error {
		// Protocol 0: a send-only socket that receives nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("netlab: %s: packet socket: %w", n.Name, err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ln.Attrs().Index, Halen: 6}
		copy(sa.Addr[:], broadcastMAC)
		if err := unix.Sendto(fd, frame, 0, sa); err != nil {
			return fmt.Errorf("netlab: %s: gratuitous ARP for %s on %s: %w", n.Name, addr, dev, err)
		}
		return nil
	})
}

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// garpFrame is an Ethernet frame carrying a gratuitous ARP request for
// addr from mac (RFC 5227 section 3: sender and target address both addr).
func garpFrame(mac net.HardwareAddr, addr netip.Addr) []byte {
	f := make([]byte, 14+28)
	copy(f[0:6], broadcastMAC)
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_ARP)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:2], 1)             // hardware: Ethernet
	binary.BigEndian.PutUint16(a[2:4], unix.ETH_P_IP) // protocol: IPv4
	a[4], a[5] = 6, 4                                 // address lengths
	binary.BigEndian.PutUint16(a[6:8], 1)             // request
	ip := addr.As4()
	copy(a[8:14], mac)    // sender MAC
	copy(a[14:18], ip[:]) // sender IP
	// a[18:24]: target MAC, zero
	copy(a[24:28], ip[:]) // target IP
	return f
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
