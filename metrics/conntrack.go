package metrics

import "github.com/prometheus/client_golang/prometheus"

// MemberConns is one member's use of the conntrack table.
type MemberConns struct {
	Label, PublicKey string
	Conns            int    // tracked connections, both families
	QuotaDrops       uint64 // new connections dropped at the member's quota
	RateDrops        uint64 // ... at its new-connection rate
}

// ConntrackSource is members' share of the conntrack table (a cached view:
// scrapes do not walk the table).
type ConntrackSource interface {
	// MemberConns returns the members with tracked connections or drops,
	// and the quota per member and family (0: off).
	MemberConns() (members []MemberConns, quota int)
}

type conntrackCollector struct {
	src                        ConntrackSource
	conns, drops, quota, total *prometheus.Desc
}

// NewConntrackCollector exports connections per member and the fair-state
// drops. Members with neither have no series, so 20,000 idle members cost
// nothing.
func NewConntrackCollector(src ConntrackSource) prometheus.Collector {
	l := []string{"member", "public_key"}
	return &conntrackCollector{src: src,
		conns: prometheus.NewDesc("exitd_member_conntrack_entries", "The member's tracked connections (both families), from a walk of the table at most every 5 s.", l, nil),
		drops: prometheus.NewDesc("exitd_member_conn_dropped_total", "The member's new connections dropped by reason: quota (over its tracked-connection quota) or rate (over its new-connection rate). Replacing the ruleset resets them.",
			append(l, "reason"), nil),
		quota: prometheus.NewDesc("exitd_conntrack_member_quota", "Each member's quota of tracked connections per address family (0: off; members may have their own).", nil, nil),
		total: prometheus.NewDesc("exitd_conntrack_member_entries", "Tracked connections from member addresses.", nil, nil),
	}
}

func (c *conntrackCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.conns
	ch <- c.drops
	ch <- c.quota
	ch <- c.total
}

func (c *conntrackCollector) Collect(ch chan<- prometheus.Metric) {
	ms, quota := c.src.MemberConns()
	ch <- prometheus.MustNewConstMetric(c.quota, prometheus.GaugeValue, float64(quota))
	total := 0
	for _, m := range ms {
		total += m.Conns
		if m.Conns > 0 {
			ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(m.Conns), m.Label, m.PublicKey)
		}
		if m.QuotaDrops > 0 {
			ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(m.QuotaDrops), m.Label, m.PublicKey, "quota")
		}
		if m.RateDrops > 0 {
			ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(m.RateDrops), m.Label, m.PublicKey, "rate")
		}
	}
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(total))
}
