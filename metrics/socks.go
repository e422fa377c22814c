package metrics

import "github.com/prometheus/client_golang/prometheus"

// SOCKSStats are the proxy's counters as the collector exports them.
type SOCKSStats struct {
	SessionsActive                               int64
	SessionsTotal, ConnectsOK, ConnectsFailed    uint64
	UDPAssociations, HandshakeErrors             uint64
	BytesUp, BytesDown                           uint64
	UDPDatagramsUp, UDPDatagramsDown, UDPDropped uint64
	// Refused counts refused sessions by reason (ruleset, limit, rate,
	// auth, nofd).
	Refused map[string]uint64
}

// SOCKSSource reads the proxy; ok is false when it does not run.
type SOCKSSource interface {
	SOCKSStats() (s SOCKSStats, ok bool)
}

type socksCollector struct {
	src                                            SOCKSSource
	active, sessions, connects, udp, handshake, by *prometheus.Desc
	refused, datagrams                             *prometheus.Desc
}

// NewSOCKSCollector exports the proxy's exitd_socks_* metrics.
func NewSOCKSCollector(src SOCKSSource) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("exitd_socks_"+name, help, labels, nil)
	}
	return &socksCollector{src: src,
		active:    d("sessions", "SOCKS sessions open now, any phase."),
		sessions:  d("sessions_total", "SOCKS client connections accepted."),
		connects:  d("connects_total", "CONNECT requests by result (ok: relayed; failed: resolution or dial failed).", "result"),
		udp:       d("udp_associations_total", "UDP ASSOCIATE requests granted."),
		handshake: d("handshake_errors_total", "Malformed, timed-out or unsupported requests."),
		by:        d("bytes_total", "Payload bytes relayed, by direction (up: from clients).", "direction"),
		refused:   d("refused_total", "Sessions refused, by reason (ruleset, limit, rate, auth, nofd).", "reason"),
		datagrams: d("udp_datagrams_total", "UDP datagrams relayed or dropped.", "direction"),
	}
}

func (c *socksCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.active, c.sessions, c.connects, c.udp, c.handshake, c.by, c.refused, c.datagrams} {
		ch <- d
	}
}

func (c *socksCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.src.SOCKSStats()
	if !ok {
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(s.SessionsActive))
	counter(c.sessions, s.SessionsTotal)
	counter(c.connects, s.ConnectsOK, "ok")
	counter(c.connects, s.ConnectsFailed, "failed")
	counter(c.udp, s.UDPAssociations)
	counter(c.handshake, s.HandshakeErrors)
	counter(c.by, s.BytesUp, "up")
	counter(c.by, s.BytesDown, "down")
	for reason, v := range s.Refused {
		counter(c.refused, v, reason)
	}
	counter(c.datagrams, s.UDPDatagramsUp, "up")
	counter(c.datagrams, s.UDPDatagramsDown, "down")
	counter(c.datagrams, s.UDPDropped, "dropped")
}
