package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMemberLimit is how many members get per-member series by default.
// At ~9 series each that is ≤ 2,250 series whatever the member count.
const DefaultMemberLimit = 250

// MemberOptions configure NewMemberCollector.
type MemberOptions struct {
	// Interface is the WireGuard interface label (the common exporter's
	// "interface").
	Interface string
	// Limit bounds the members exported with per-member series: all of
	// them when at most Limit are configured, else the Limit busiest by
	// current rate. 0 means DefaultMemberLimit; negative disables
	// per-member series.
	Limit int
}

// memberCollector exports the per-member series (the names of the common
// WireGuard exporter, so its dashboards work) and the session aggregates.
type memberCollector struct {
	t     *Table
	iface string
	limit int

	sent, recv, handshake *prometheus.Desc
	drops, marks          *prometheus.Desc
	sessions, configured  *prometheus.Desc
	exported, limitDesc   *prometheus.Desc
	rxTotal, txTotal      *prometheus.Desc
	refresh, up           *prometheus.Desc
}

var _ prometheus.Collector = (*memberCollector)(nil)

// wgLabels are the common exporter's labels; friendly_name is the member's
// label.
var wgLabels = []string{"interface", "public_key", "allowed_ips", "friendly_name"}

// NewMemberCollector exports t's members.
func NewMemberCollector(t *Table, o MemberOptions) prometheus.Collector {
	if o.Limit == 0 {
		o.Limit = DefaultMemberLimit
	}
	return &memberCollector{
		t: t, iface: o.Interface, limit: o.Limit,
		sent:       prometheus.NewDesc("wireguard_sent_bytes_total", "Bytes sent to the peer (WireGuard payload, as wg show counts it). Only for the exported members, see exitd_metrics_members_exported.", wgLabels, nil),
		recv:       prometheus.NewDesc("wireguard_received_bytes_total", "Bytes received from the peer (WireGuard payload, as wg show counts it). Only for the exported members.", wgLabels, nil),
		handshake:  prometheus.NewDesc("wireguard_latest_handshake_seconds", "UNIX time of the latest handshake with the peer; 0 if none. Only for the exported members.", wgLabels, nil),
		drops:      prometheus.NewDesc("exitd_member_dropped_packets_total", "Packets the scheduler dropped for the member, by direction (down: toward the member) and reason (overflow: queue limit; codel: queue delay). Only for the exported members.", []string{"friendly_name", "public_key", "direction", "reason"}, nil),
		marks:      prometheus.NewDesc("exitd_member_ce_marked_packets_total", "Packets the scheduler marked ECN CE for the member, by direction. Only for the exported members.", []string{"friendly_name", "public_key", "direction"}, nil),
		sessions:   prometheus.NewDesc("exitd_sessions", "Members by session state: active (a session moving data in the last 15 s), idle (a session, no data), handshaking (no session, handshake messages arriving), offline.", []string{"state"}, nil),
		configured: prometheus.NewDesc("exitd_members_configured", "Members in the registry.", nil, nil),
		exported:   prometheus.NewDesc("exitd_metrics_members_exported", "Members that have per-member series in this scrape (bounded by exitd_metrics_members_limit).", nil, nil),
		limitDesc:  prometheus.NewDesc("exitd_metrics_members_limit", "The most members exported with per-member series; the busiest by current rate are chosen.", nil, nil),
		rxTotal:    prometheus.NewDesc("exitd_tunnel_received_bytes_total", "WireGuard bytes received from all members (monotonic across member removal).", nil, nil),
		txTotal:    prometheus.NewDesc("exitd_tunnel_sent_bytes_total", "WireGuard bytes sent to all members (monotonic across member removal).", nil, nil),
		refresh:    prometheus.NewDesc("exitd_metrics_member_refresh_seconds", "How long the last refresh of the member table took (device dump included).", nil, nil),
		up:         prometheus.NewDesc("exitd_metrics_member_table_up", "1 if the member table could be read in this scrape, 0 if the figures are stale.", nil, nil),
	}
}

func (c *memberCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sent, c.recv, c.handshake, c.drops, c.marks, c.sessions,
		c.configured, c.exported, c.limitDesc, c.rxTotal, c.txTotal, c.refresh, c.up} {
		ch <- d
	}
}

func (c *memberCollector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.t.Snapshot()
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.limitDesc, prometheus.GaugeValue, float64(max(c.limit, 0)))
	if s == nil {
		return
	}
	for _, st := range []struct {
		name string
		n    int
	}{{"active", s.Active}, {"idle", s.Idle}, {"handshaking", s.Handshaking}, {"offline", s.Offline}} {
		ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(st.n), st.name)
	}
	ch <- prometheus.MustNewConstMetric(c.configured, prometheus.GaugeValue, float64(s.Configured))
	ch <- prometheus.MustNewConstMetric(c.rxTotal, prometheus.CounterValue, float64(s.Totals.RxBytes))
	ch <- prometheus.MustNewConstMetric(c.txTotal, prometheus.CounterValue, float64(s.Totals.TxBytes))
	ch <- prometheus.MustNewConstMetric(c.refresh, prometheus.GaugeValue, s.RefreshCost.Seconds())
	// Members are sorted by rate: the first limit are the busiest.
	n := min(max(c.limit, 0), len(s.Members))
	ch <- prometheus.MustNewConstMetric(c.exported, prometheus.GaugeValue, float64(n))
	for i := range s.Members[:n] {
		m := &s.Members[i]
		lv := []string{c.iface, m.PublicKey, m.AllowedIPs, m.Label}
		ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(m.TxBytes), lv...)
		ch <- prometheus.MustNewConstMetric(c.recv, prometheus.CounterValue, float64(m.RxBytes), lv...)
		hs := 0.0
		if !m.LastHandshake.IsZero() {
			hs = float64(m.LastHandshake.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(c.handshake, prometheus.GaugeValue, hs, lv...)
		for _, d := range []struct {
			dir, reason string
			v           uint64
		}{{"down", "overflow", m.DownOverflow}, {"down", "codel", m.DownCoDel}, {"up", "overflow", m.UpOverflow}, {"up", "codel", m.UpCoDel}} {
			ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(d.v), m.Label, m.PublicKey, d.dir, d.reason)
		}
		ch <- prometheus.MustNewConstMetric(c.marks, prometheus.CounterValue, float64(m.DownCE), m.Label, m.PublicKey, "down")
		ch <- prometheus.MustNewConstMetric(c.marks, prometheus.CounterValue, float64(m.UpCE), m.Label, m.PublicKey, "up")
	}
}
