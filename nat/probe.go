package nat

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// ErrInetNATUnsupported means the kernel cannot attach a NAT chain to an inet
// table (Linux before 5.2 without a backport). Apply returns it only with
// LayoutInet; LayoutAuto falls back to LayoutSplit instead.
var ErrInetNATUnsupported = errors.New("kernel has no inet-family NAT (needs Linux 5.2 or a backport)")

// probeTable is created and deleted inside one transaction by the probe.
const probeTable = "exitd_probe"

// layoutLocked resolves the layout Apply asked for into the one to
// program: LayoutInet or LayoutSplit. Only LayoutSplit skips the probe.
func (m *Manager) layoutLocked(want Layout) (Layout, error) {
	if want == LayoutSplit {
		return LayoutSplit, nil
	}
	refused, err := m.probeLocked()
	switch {
	case err != nil:
		return 0, err
	case refused == nil:
		return LayoutInet, nil
	case want == LayoutAuto:
		return LayoutSplit, nil
	}
	return 0, refused
}

// probeLocked asks the kernel itself rather than parsing a version (RHEL
// backports features into old version numbers): one transaction adds a
// scratch inet table with a NAT chain and deletes it again. The ruleset is
// unchanged either way; an old kernel rejects the chain with EOPNOTSUPP (or
// ENOENT: no such chain type for the family). It returns that refusal,
// wrapping ErrInetNATUnsupported, as refused, and any other failure as err.
// The answer is cached; a failure is not.
func (m *Manager) probeLocked() (refused, err error) {
	if m.probed {
		return m.inetNATRefused, nil
	}
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: probeTable}
	c.AddTable(t)
	c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("probe inet nat: %w", err)
		}
		m.inetNATRefused = fmt.Errorf("%w: %w", ErrInetNATUnsupported, err)
		m.log.Warn("nat: the kernel refuses NAT chains in inet tables", "err", err)
	}
	m.probed = true
	return m.inetNATRefused, nil
}
