package nat

// Port forwards: inbound connections to a port on the WAN go to a member.
//
// They live in their own table, "ip <table>_pf" (NAT-PMP is IPv4 only),
// replaced as a whole on every change, so the main table — and the
// connection counts its dynamic sets hold — is not touched when a member
// asks for a port:
//
//	table ip exitd_pf {
//		chain prerouting {
//			type nat hook prerouting priority dstnat; policy accept;
//			iifname "eth0" tcp dport 61000 dnat to 10.99.0.5:6881
//		}
//	}
//
// The main table's forward chain lets DNATed connections from the WAN
// into the tunnel (Config.PortForward): the member's replies are
// established flows, and the download passes the scheduler like any other.

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Forward is one port forward: Proto (unix.IPPROTO_TCP or IPPROTO_UDP)
// port Port on the WAN goes to To, a member's address and port.
type Forward struct {
	Proto uint8
	Port  uint16
	To    netip.AddrPort
}

// pfTable is the port-forward table next to table.
func pfTable(table string) *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: table + "_pf"}
}

// ApplyForwards replaces the port-forward table with fs, for connections
// arriving on wan, in one transaction. An empty fs leaves an empty table.
func (m *Manager) ApplyForwards(wan string, fs []Forward) error {
	if err := validIfname("wan", wan); err != nil {
		return fmt.Errorf("nat: port forwards: %w", err)
	}
	for _, f := range fs {
		if (f.Proto != unix.IPPROTO_TCP && f.Proto != unix.IPPROTO_UDP) || f.Port == 0 || !f.To.Addr().Is4() || f.To.Port() == 0 {
			return fmt.Errorf("nat: port forward %d/%d → %s: want TCP or UDP, ports 1-65535 and an IPv4 address", f.Proto, f.Port, f.To)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return fmt.Errorf("nat: port forwards: %w", err)
	}
	t := pfTable(m.table)
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	for _, f := range fs {
		addRule(c, t, pre, iifname(wan), l4proto(f.Proto), dport(f.Port), []expr.Any{
			&expr.Immediate{Register: 1, Data: f.To.Addr().AsSlice()},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(f.To.Port())},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nat: port forwards: %w", err)
	}
	return nil
}

// RemoveForwards deletes the port-forward table (absent is fine).
func (m *Manager) RemoveForwards() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return fmt.Errorf("nat: remove port forwards: %w", err)
	}
	t := pfTable(m.table)
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nat: remove port forwards: %w", err)
	}
	return nil
}
