package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NATCounter is one nftables named counter.
type NATCounter struct{ Packets, Bytes uint64 }

// NATSource reads the nftables table.
type NATSource interface {
	// NATDrops returns the drop counters by reason (spoof, leak,
	// isolation, input, forward_policy).
	NATDrops() (map[string]NATCounter, error)
	// NATPresent reports whether the table is installed.
	NATPresent() (bool, error)
	// NATRestorations counts the times the table was restored after
	// someone else deleted or edited it.
	NATRestorations() uint64
}

type natCollector struct {
	src                               NATSource
	packets, bytes, present, restored *prometheus.Desc
}

// NewNATCollector exports the nftables drop counters.
func NewNATCollector(src NATSource) prometheus.Collector {
	r := []string{"reason"}
	return &natCollector{src: src,
		packets:  prometheus.NewDesc("exitd_nft_dropped_packets_total", "Packets exitd's nftables table dropped, by reason: spoof (source not the member's address), leak (destination blocked: private, metadata, management), isolation (member to member), input (to the node itself), forward_policy (anything else). Replacing the table resets them.", r, nil),
		bytes:    prometheus.NewDesc("exitd_nft_dropped_bytes_total", "Bytes exitd's nftables table dropped, by reason.", r, nil),
		present:  prometheus.NewDesc("exitd_nft_table_present", "1 if exitd's nftables table is installed; 0 means members' traffic is not NATed or filtered.", nil, nil),
		restored: prometheus.NewDesc("exitd_nft_restorations_total", "Times exitd restored its nftables table after someone else deleted or edited it.", nil, nil),
	}
}

func (c *natCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.packets
	ch <- c.bytes
	ch <- c.present
	ch <- c.restored
}

func (c *natCollector) Collect(ch chan<- prometheus.Metric) {
	if ok, err := c.src.NATPresent(); err == nil {
		v := 0.0
		if ok {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.present, prometheus.GaugeValue, v)
	}
	ch <- prometheus.MustNewConstMetric(c.restored, prometheus.CounterValue, float64(c.src.NATRestorations()))
	drops, err := c.src.NATDrops()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.packets, err)
		return
	}
	for reason, v := range drops {
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(v.Packets), reason)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(v.Bytes), reason)
	}
}

// HostReader is what the host collector reads; Host implements it.
type HostReader interface {
	Read() (HostStats, error)
}

var _ HostReader = Host{}

type hostCollector struct {
	src                               HostReader
	udpErrs, linkBytes, linkDrops     *prometheus.Desc
	ipHdrErrs                         *prometheus.Desc
	linkErrs, conntrack, conntrackMax *prometheus.Desc
}

// NewHostCollector exports the namespace's UDP, link and conntrack figures.
func NewHostCollector(src HostReader) prometheus.Collector {
	link := []string{"link", "direction"}
	return &hostCollector{src: src,
		ipHdrErrs:    prometheus.NewDesc("exitd_ip_header_errors_total", "IP packets the node's kernel dropped for a malformed header, by family (members' malformed packets included).", []string{"family"}, nil),
		udpErrs:      prometheus.NewDesc("exitd_udp_errors_total", "UDP errors of the node's network namespace (all sockets, members' UDP/443 included), by family and kind: receive (InErrors), receive_buffer (RcvbufErrors: packets lost because a socket's buffer was full), send_buffer (SndbufErrors).", []string{"family", "kind"}, nil),
		linkBytes:    prometheus.NewDesc("exitd_link_bytes_total", "Bytes through the TUN and WAN interfaces (link: tun or wan; direction: rx or tx, as the interface counts).", link, nil),
		linkDrops:    prometheus.NewDesc("exitd_link_dropped_packets_total", "Packets the TUN or WAN interface dropped (queue full, no buffer).", link, nil),
		linkErrs:     prometheus.NewDesc("exitd_link_errors_total", "Errors on the TUN or WAN interface.", link, nil),
		conntrack:    prometheus.NewDesc("exitd_conntrack_entries", "Connection-tracking entries in use in the node's namespace.", nil, nil),
		conntrackMax: prometheus.NewDesc("exitd_conntrack_entries_limit", "Size of the connection-tracking table (nf_conntrack_max); new flows are dropped when entries reach it.", nil, nil),
	}
}

func (c *hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.udpErrs, c.ipHdrErrs, c.linkBytes, c.linkDrops, c.linkErrs, c.conntrack, c.conntrackMax} {
		ch <- d
	}
}

func (c *hostCollector) Collect(ch chan<- prometheus.Metric) {
	st, _ := c.src.Read() // partial figures are still worth exporting
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	counter(c.ipHdrErrs, st.IPHdrErrors4, "ipv4")
	counter(c.ipHdrErrs, st.IPHdrErrors6, "ipv6")
	for _, u := range []struct {
		fam string
		s   UDPStats
	}{{"ipv4", st.UDP4}, {"ipv6", st.UDP6}} {
		counter(c.udpErrs, u.s.InErrors, u.fam, "receive")
		counter(c.udpErrs, u.s.RcvbufErrors, u.fam, "receive_buffer")
		counter(c.udpErrs, u.s.SndbufErrors, u.fam, "send_buffer")
	}
	for _, l := range []struct {
		name string
		s    LinkStats
	}{{"tun", st.TUN}, {"wan", st.WAN}} {
		if !l.s.Present {
			continue
		}
		counter(c.linkBytes, l.s.RxBytes, l.name, "rx")
		counter(c.linkBytes, l.s.TxBytes, l.name, "tx")
		counter(c.linkDrops, l.s.RxDropped, l.name, "rx")
		counter(c.linkDrops, l.s.TxDropped, l.name, "tx")
		counter(c.linkErrs, l.s.RxErrors, l.name, "rx")
		counter(c.linkErrs, l.s.TxErrors, l.name, "tx")
	}
	if st.Conntrack >= 0 {
		ch <- prometheus.MustNewConstMetric(c.conntrack, prometheus.GaugeValue, float64(st.Conntrack))
	}
	if st.ConntrackMax >= 0 {
		ch <- prometheus.MustNewConstMetric(c.conntrackMax, prometheus.GaugeValue, float64(st.ConntrackMax))
	}
}

// KernelProfile is the latest check of the kernel profile.
type KernelProfile struct {
	At time.Time
	// Keys counts the profile's keys by status (ok, drift, absent, ...).
	Keys map[string]int
	// CriticalFailures counts safety-critical keys holding unsafe values.
	CriticalFailures int
	// Drift lists the keys not as wanted, "key=in-force (want wanted,
	// status)", for status and load views.
	Drift []string
}

// KernelSource returns the latest check; ok is false before the first.
type KernelSource interface {
	KernelProfile() (p KernelProfile, ok bool)
}

type kernelCollector struct {
	src                  KernelSource
	keys, critical, when *prometheus.Desc
}

// NewKernelCollector exports kernel profile drift.
func NewKernelCollector(src KernelSource) prometheus.Collector {
	return &kernelCollector{src: src,
		keys:     prometheus.NewDesc("exitd_kernel_profile_keys", "Keys of the bundled kernel profile by status at the last check (ok, drift, absent, rejected, read-only, error, skipped); anything but ok is drift from the profile (see `exitd tune check`).", []string{"status"}, nil),
		critical: prometheus.NewDesc("exitd_kernel_profile_critical_failures", "Safety-critical kernel keys holding unsafe values (e.g. forwarding off, loose rp_filter); fix with `exitd tune apply`.", nil, nil),
		when:     prometheus.NewDesc("exitd_kernel_profile_checked_timestamp_seconds", "UNIX time of the last kernel profile check.", nil, nil),
	}
}

func (c *kernelCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.keys
	ch <- c.critical
	ch <- c.when
}

func (c *kernelCollector) Collect(ch chan<- prometheus.Metric) {
	p, ok := c.src.KernelProfile()
	if !ok {
		return
	}
	for status, n := range p.Keys {
		ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(n), status)
	}
	ch <- prometheus.MustNewConstMetric(c.critical, prometheus.GaugeValue, float64(p.CriticalFailures))
	ch <- prometheus.MustNewConstMetric(c.when, prometheus.GaugeValue, float64(p.At.UnixNano())/1e9)
}

// NewBuildInfo exports exitd_build_info{version, goversion} = 1.
func NewBuildInfo(version string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "exitd_build_info",
		Help:        "exitd's version and the Go version it was built with; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	}, func() float64 { return 1 })
}
