package config

import (
	"exitd/bounds"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// fieldError is a validation failure of one key; Parse adds file and line.
type fieldError struct{ key, msg string }

func (e *fieldError) Error() string { return e.key + ": " + e.msg }

func bad(key, format string, args ...any) error {
	return &fieldError{key: key, msg: fmt.Sprintf(format, args...)}
}

// maxIfName is IFNAMSIZ-1.
const maxIfName = 15

// finish fills defaults and validates every field, in file order.
func (c *Config) finish() error {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if !filepath.IsAbs(c.StateDir) {
		return bad("state_dir", "must be an absolute path, got %q", c.StateDir)
	}
	if c.PublicEndpoint != "" {
		if err := checkEndpoint(c.PublicEndpoint); err != nil {
			return bad("public_endpoint", "%v", err)
		}
	}
	if c.Listen.Port == 0 {
		c.Listen.Port = DefaultPort
	}
	if c.Listen.Port < 1 || c.Listen.Port > 65535 {
		return bad("listen.port", "must be 1-65535, got %d", c.Listen.Port)
	}
	if err := c.Tunnel.finish(); err != nil {
		return err
	}
	if err := c.WAN.finish(); err != nil {
		return err
	}
	if err := c.Filter.finish(c.Tunnel); err != nil {
		return err
	}
	if c.Control.Socket == "" {
		c.Control.Socket = DefaultSocket
	}
	if !filepath.IsAbs(c.Control.Socket) {
		return bad("control.socket", "must be an absolute path, got %q", c.Control.Socket)
	}
	if len(c.Control.Socket) > 107 {
		return bad("control.socket", "path longer than 107 bytes cannot be a unix socket")
	}
	if c.Control.Group == "" {
		c.Control.Group = "exitd"
	}
	if err := c.Scheduler.finish(); err != nil {
		return err
	}
	if c.Members.Quarantine.Duration == 0 {
		c.Members.Quarantine.Duration = DefaultQuarantine
	}
	if c.Members.Quarantine.Duration < 0 {
		return bad("members.address_quarantine", "must not be negative")
	}
	if l := c.Metrics.Listen; l != "" && l != MetricsOff {
		if _, _, err := net.SplitHostPort(l); err != nil {
			return bad("metrics.listen", "want host:port or \"off\", got %q", l)
		}
	}
	switch d := c.Metrics.SampleInterval.Duration; {
	case d == 0:
		c.Metrics.SampleInterval.Duration = DefaultSampleInterval
	case d < time.Second || d > time.Hour:
		return bad("metrics.sample_interval", "must be 1s to 1h, got %s", d)
	}
	if err := c.DNS.finish(); err != nil {
		return err
	}
	if err := c.SOCKS.finish(); err != nil {
		return err
	}
	if err := c.Conntrack.finish(); err != nil {
		return err
	}
	if err := c.PortForward.finish(c.Listen.Port); err != nil {
		return err
	}
	if err := c.Cluster.finish(); err != nil {
		return err
	}
	if c.PortForward.Enabled && !c.Tunnel.Prefix4.IsValid() {
		return bad("portforward.enabled", "NAT-PMP is IPv4 only: it needs tunnel.ipv4")
	}
	switch strings.ToLower(c.Log.Level) {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
		c.Log.Level = strings.ToLower(c.Log.Level)
	default:
		return bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	return nil
}

func checkEndpoint(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port (IPv6 as [addr]:port), got %q", s)
	}
	if host == "" {
		return fmt.Errorf("missing host in %q", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port must be 1-65535, got %q", port)
	}
	return nil
}

func (t *Tunnel) finish() error {
	if t.Name == "" {
		t.Name = DefaultTunName
	}
	if err := checkIfName(t.Name); err != nil {
		return bad("tunnel.name", "%v", err)
	}
	if t.MTU == 0 {
		t.MTU = DefaultMTU
	}
	if t.MTU < 1280 || t.MTU > 9000 {
		return bad("tunnel.mtu", "must be 1280-9000 (IPv6 needs 1280), got %d", t.MTU)
	}
	if !t.Prefix4.IsValid() && !t.Prefix6.IsValid() {
		return bad("tunnel.ipv4", "set tunnel.ipv4 and/or tunnel.ipv6: members need addresses (e.g. ipv4 = \"10.99.0.0/16\")")
	}
	if p := t.Prefix4; p.IsValid() {
		if !p.Addr().Is4() {
			return bad("tunnel.ipv4", "want an IPv4 prefix such as 10.99.0.0/16, got %q", p)
		}
		if p.Bits() > 30 || p.Bits() < 8 {
			return bad("tunnel.ipv4", "prefix length must be /8 to /30, got /%d", p.Bits())
		}
		if p != p.Masked() {
			return bad("tunnel.ipv4", "%q has host bits set; did you mean %s?", p, p.Masked())
		}
	}
	if p := t.Prefix6; p.IsValid() {
		if !p.Addr().Is6() || p.Addr().Is4In6() {
			return bad("tunnel.ipv6", "want an IPv6 prefix such as fd00:99::/64, got %q", p)
		}
		if p.Bits() > 120 || p.Bits() < 48 {
			return bad("tunnel.ipv6", "prefix length must be /48 to /120, got /%d", p.Bits())
		}
		if p != p.Masked() {
			return bad("tunnel.ipv6", "%q has host bits set; did you mean %s?", p, p.Masked())
		}
	}
	return nil
}

func checkIfName(n string) error {
	if n == "" || len(n) > maxIfName {
		return fmt.Errorf("interface name must be 1-%d characters, got %q", maxIfName, n)
	}
	for _, r := range n {
		if r <= ' ' || r == '/' || r == ':' || r > '~' {
			return fmt.Errorf("interface name %q contains %q", n, r)
		}
	}
	return nil
}

func (w *WAN) finish() error {
	if w.Interface == "" {
		return bad("wan.interface", "required: the interface members' traffic leaves by (e.g. \"eth0\")")
	}
	if err := checkIfName(w.Interface); err != nil {
		return bad("wan.interface", "%v", err)
	}
	if w.NAT == "" {
		w.NAT = DefaultNAT
	}
	switch w.NAT {
	case "masquerade":
		if w.Pool.IsSet() || w.Ports[0] != 0 {
			return bad("wan.snat_pool", "only used with nat = \"snat\"")
		}
	case "snat":
		if !w.Pool.IsSet() {
			return bad("wan.snat_pool", "required with nat = \"snat\" (e.g. \"198.51.100.10-198.51.100.20\")")
		}
	default:
		return bad("wan.nat", "must be \"masquerade\" or \"snat\", got %q", w.NAT)
	}
	switch w.NATTables {
	case "":
		w.NATTables = DefaultNATTables
	case "auto", "inet", "split":
	default:
		return bad("wan.nat_tables", "must be \"auto\", \"inet\" or \"split\", got %q", w.NATTables)
	}
	return nil
}

func (f *Filter) finish(t Tunnel) error {
	closed := append([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}, t.Prefixes()...)
	for i, p := range f.Allowed {
		for _, c := range closed {
			if p.Overlaps(c) {
				what := "the member prefix"
				if c.Addr().IsLoopback() {
					what = "loopback"
				}
				return bad("filter.allow", "%q would open %s %s; allow may not", f.Allowed[i], what, c)
			}
		}
	}
	return nil
}

// Rate limits the scheduler accepts, in bits per second.
const (
	minRate = bounds.MinRate
	maxRate = bounds.MaxRate
)

func (s *Scheduler) finish() error {
	switch s.Discipline {
	case "":
		s.Discipline = DefaultDiscipline
	case "srr", "fifo":
	default:
		return bad("scheduler.discipline", "must be \"srr\" or \"fifo\", got %q", s.Discipline)
	}
	if s.ByteLimit < 0 || s.ByteLimit > 1<<30 {
		return bad("scheduler.byte_limit", "must be 0 (auto) to 1073741824, got %d", s.ByteLimit)
	}
	if s.PacketLimit < 0 || s.PacketLimit > 1<<20 {
		return bad("scheduler.packet_limit", "must be 0 (auto) to 1048576, got %d", s.PacketLimit)
	}
	return nil
}

// ParseRate reads a tc-style rate: "95mbit", "1gbit", "500kbit", "100mbps"
// (bytes per second), or plain bits per second.
func ParseRate(s string) (uint64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	v, err := strconv.ParseFloat(num, 64)
	if num == "" || err != nil {
		return 0, fmt.Errorf("rate %q: want a number with a unit such as 95mbit", s)
	}
	mult, ok := map[string]float64{
		"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9,
		"bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9,
	}[unit]
	if !ok {
		return 0, fmt.Errorf("rate %q: unknown unit %q (use bit, kbit, mbit, gbit, or bps/kbps/mbps/gbps for bytes)", s, unit)
	}
	r := v * mult
	if r < minRate || r > maxRate {
		return 0, fmt.Errorf("rate %q: must be between 64kbit and 400gbit", s)
	}
	return uint64(r), nil
}

// ParseAddrRange reads "A-B" (or a single address, or a prefix) into an
// inclusive IPv4 or IPv6 range with A <= B.
func ParseAddrRange(s string) ([2]netip.Addr, error) {
	var r [2]netip.Addr
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		r[0] = p.Addr()
		r[1] = lastAddr(p)
		return r, nil
	}
	lo, hi, found := strings.Cut(s, "-")
	a, err := netip.ParseAddr(strings.TrimSpace(lo))
	if err != nil {
		return r, fmt.Errorf("want an address range such as 198.51.100.10-198.51.100.20, got %q", s)
	}
	b := a
	if found {
		if b, err = netip.ParseAddr(strings.TrimSpace(hi)); err != nil {
			return r, fmt.Errorf("want an address range such as 198.51.100.10-198.51.100.20, got %q", s)
		}
	}
	if a.Is4() != b.Is4() || a.Zone() != "" || b.Zone() != "" {
		return r, fmt.Errorf("range %q mixes address families or has a zone", s)
	}
	if b.Less(a) {
		return r, fmt.Errorf("range %q ends before it starts", s)
	}
	r[0], r[1] = a, b
	return r, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	host := len(b)*8 - p.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// ParsePortRange reads "1024-65535" (or one port) into an inclusive range.
func ParsePortRange(s string) ([2]uint16, error) {
	var r [2]uint16
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	if err != nil || a == 0 {
		return r, fmt.Errorf("want a port range such as 1024-65535, got %q", s)
	}
	b := a
	if found {
		if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 16); err != nil || b == 0 {
			return r, fmt.Errorf("want a port range such as 1024-65535, got %q", s)
		}
	}
	if b < a {
		return r, fmt.Errorf("port range %q ends before it starts", s)
	}
	r[0], r[1] = uint16(a), uint16(b)
	return r, nil
}
