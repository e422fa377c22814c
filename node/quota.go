package node

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"exitd/config"
	"exitd/members"
	"exitd/nat"
)

// ctMaxPath is the size of the kernel's connection tracking table.
const ctMaxPath = "/proc/sys/net/netfilter/nf_conntrack_max"

// defaultCTMax stands in for nf_conntrack_max before the conntrack module
// is loaded (the first ruleset loads it): the kernel's default on a 4 GiB
// machine.
const defaultCTMax = 262144

// readCTMax reads nf_conntrack_max from path.
func readCTMax(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s: not a number: %q", path, b)
	}
	return v, nil
}

// connLimits are the ruleset's fair-state limits: the node-wide quota
// (fixed, off, or derived from the table size ctMax and the number of
// members), the members' own quotas, and the new-connection rate.
func connLimits(c config.Conntrack, ms []members.Member, ctMax int) nat.ConnLimits {
	var l nat.ConnLimits
	l.Rate, l.Burst = c.Rate()
	switch {
	case c.QuotaAuto():
		l.Quota = nat.AutoQuota(ctMax, len(ms))
	case !c.QuotaOff():
		l.Quota = c.MaxConnsPerMember
	}
	for _, m := range ms {
		if m.MaxConns != 0 {
			l.Overrides = append(l.Overrides, nat.MemberQuota{Addrs: m.Addrs(), Max: m.MaxConns})
		}
	}
	return l
}

// ruleset is the ruleset for c with the registry's members: natConfig plus
// the connection quotas.
func (n *Node) ruleset(c *config.Config) nat.Config {
	nc := natConfig(c)
	ctMax, err := readCTMax(n.ctMaxPath)
	if err != nil {
		ctMax = defaultCTMax
	}
	nc.Limits = connLimits(c.Conntrack, n.reg.List(), ctMax)
	return nc
}

// applyRuleset re-applies the ruleset after a member's own quota changed;
// the caller holds n.mu.
func (n *Node) applyRuleset() error {
	nc := n.ruleset(n.config())
	if err := n.nat.Apply(nc); err != nil {
		return err
	}
	n.setNATApplied(nc)
	return nil
}
