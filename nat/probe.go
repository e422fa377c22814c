package nat

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// ErrInetNATUnsupported means the kernel cannot attach a NAT chain to an inet
// table (Linux before 5.2 without a backport). The fallback, not implemented
// here, is the same ruleset split into an ip and an ip6 table; see
// docs/nat.md.
var ErrInetNATUnsupported = errors.New("kernel has no inet-family NAT (needs Linux 5.2 or a backport)")

// probeTable is created and deleted inside one transaction by the probe.
const probeTable = "exitd_probe"

// probeLocked asks the kernel itself rather than parsing a version (RHEL
// backports features into old version numbers): one transaction adds a
// scratch inet table with a NAT chain and deletes it again. The ruleset is
// unchanged either way; an old kernel rejects the chain with EOPNOTSUPP.
// The answer is cached.
func (m *Manager) probeLocked() error {
	if m.probed {
		return nil
	}
	c, err := m.conn()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: probeTable}
	c.AddTable(t)
	c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%w: %w", ErrInetNATUnsupported, err)
		}
		return fmt.Errorf("probe inet nat: %w", err)
	}
	m.probed = true
	return nil
}
