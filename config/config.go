// Package config loads and validates exitd's TOML configuration. Decoding is
// strict: an unknown key or a bad value is an error naming the file, the line
// and the key, so an operator never runs a node whose config was silently
// half-read.
//
// It imports no other exitd package; the daemon maps the validated values
// onto each part's own options.
package config

import (
	"net/netip"
	"time"
)

// Defaults an operator can rely on.
const (
	DefaultStateDir   = "/var/lib/exitd"
	DefaultPort       = 443
	DefaultTunName    = "exit0"
	DefaultMTU        = 1420
	DefaultSocket     = "/run/exitd/control.sock"
	DefaultNAT        = "masquerade"
	DefaultNATTables  = "auto" // [wan] nat_tables: probe the kernel for inet NAT
	DefaultDiscipline = "srr"
	DefaultQuarantine = 24 * time.Hour
	// DefaultSampleInterval is the Dante report's 15 s.
	DefaultSampleInterval = 15 * time.Second
	// DefaultMetricsListen is where /metrics is served when [metrics]
	// listen is empty or absent; MetricsOff turns the endpoint off.
	DefaultMetricsListen = "127.0.0.1:9586"
)

// Config is the whole file. Field tags are the TOML names operators write;
// they are part of exitd's interface and must not change.
type Config struct {
	StateDir       string      `toml:"state_dir"`
	PublicEndpoint string      `toml:"public_endpoint"`
	Listen         Listen      `toml:"listen"`
	Tunnel         Tunnel      `toml:"tunnel"`
	WAN            WAN         `toml:"wan"`
	Filter         Filter      `toml:"filter"`
	Control        Control     `toml:"control"`
	Scheduler      Scheduler   `toml:"scheduler"`
	Members        Members     `toml:"members"`
	Metrics        Metrics     `toml:"metrics"`
	DNS            DNS         `toml:"dns"`
	SOCKS          SOCKS       `toml:"socks"`
	Conntrack      Conntrack   `toml:"conntrack"`
	PortForward    PortForward `toml:"portforward"`
	Cluster        Cluster     `toml:"cluster"`
	Log            Log         `toml:"log"`

	// Path is the file the config was read from ("" for an embedded one).
	Path string `toml:"-"`
}

// Listen is the members' UDP side.
type Listen struct {
	Port int `toml:"port"`
}

// Tunnel is the TUN device and the member address plan.
type Tunnel struct {
	Name string `toml:"name"`
	MTU  int    `toml:"mtu"`
	// Prefix4 and Prefix6 are the member prefixes ("ipv4", "ipv6"); a zero
	// value means the family is off.
	Prefix4 netip.Prefix `toml:"ipv4"`
	Prefix6 netip.Prefix `toml:"ipv6"`
}

// Prefixes are the member prefixes in use (IPv4 first): the one list of
// member address space (conntrack flushes, cleanup, the ruleset).
func (t Tunnel) Prefixes() []netip.Prefix {
	var ps []netip.Prefix
	for _, p := range []netip.Prefix{t.Prefix4, t.Prefix6} {
		if p.IsValid() {
			ps = append(ps, p)
		}
	}
	return ps
}

// Gateway4 is the node's own address in the member IPv4 prefix: its first
// address.
func (t Tunnel) Gateway4() netip.Addr { return firstHost(t.Prefix4) }

// Gateway6 is the node's own address in the member IPv6 prefix.
func (t Tunnel) Gateway6() netip.Addr { return firstHost(t.Prefix6) }

func firstHost(p netip.Prefix) netip.Addr {
	if !p.IsValid() {
		return netip.Addr{}
	}
	return p.Masked().Addr().Next()
}

// WAN is the physical side members' traffic leaves by.
type WAN struct {
	Interface string `toml:"interface"`
	NAT       string `toml:"nat"`
	// Pool and Ports are the SNAT source addresses and ports; only with
	// NAT == "snat" (Ports optional).
	Pool  AddrRange `toml:"snat_pool"`
	Ports PortRange `toml:"snat_ports"`
	// NATTables is where the NAT chains live: "auto" (default: in the
	// inet table when the kernel allows it, else in ip and ip6 tables),
	// "inet" (refuse to start on a kernel without inet-family NAT, which
	// needs Linux 5.2 or a backport) or "split" (always ip and ip6 NAT
	// tables beside the inet filter table).
	NATTables string `toml:"nat_tables"`
}

// Filter is the leak and isolation policy.
type Filter struct {
	MemberIsolation *bool `toml:"member_isolation"`
	// Blocked ("block") adds destinations (prefixes or addresses) members
	// must not reach to the built-in deny list (private, loopback,
	// link-local, multicast, NAT64, the clouds' metadata addresses, the
	// WAN's own connected prefixes).
	Blocked PrefixList `toml:"block"`
	// Allowed ("allow") punches holes into the deny list (built-ins and
	// Blocked), for a neighbour members must reach. It may not open
	// loopback (127.0.0.0/8, ::1) or the member prefixes.
	Allowed PrefixList `toml:"allow"`
}

// Isolation reports whether members are kept from reaching each other
// (default true).
func (f Filter) Isolation() bool { return f.MemberIsolation == nil || *f.MemberIsolation }

// Control is the local API.
type Control struct {
	Socket string `toml:"socket"`
	// Group is the group, besides root, allowed on the socket (default "exitd").
	Group string `toml:"group"`
}

// Scheduler is the fair scheduler in front of wireguard-go.
type Scheduler struct {
	Discipline string `toml:"discipline"`
	// Egress paces downloads (toward members): auto (default, the WAN
	// link's speed less 5 %), off, or a rate; Ingress paces uploads, bits
	// per second (0 = no pacing). docs/scheduler.md, "Choosing egress_rate".
	Egress      PaceRate `toml:"egress_rate"`
	Ingress     Rate     `toml:"ingress_rate"`
	ByteLimit   int      `toml:"byte_limit"`
	PacketLimit int      `toml:"packet_limit"`
}

// Members is the registry's policy.
type Members struct {
	// Quarantine is how long a freed member address stays unused.
	Quarantine Duration `toml:"address_quarantine"`
}

// Metrics is the Prometheus endpoint and the load report's sampler.
type Metrics struct {
	// Listen is host:port for /metrics. Empty (the default) means
	// DefaultMetricsListen, 127.0.0.1:9586, where a busy port only warns;
	// MetricsOff ("off") serves nothing. An empty listen is not "off".
	Listen string `toml:"listen"`
	// SampleInterval is the load report's sampling period (default 15s).
	SampleInterval Duration `toml:"sample_interval"`
}

// MetricsOff is the [metrics] listen value that disables the endpoint.
const MetricsOff = "off"

// Address is where /metrics is served ("" when off) and whether the
// operator chose it: an explicit address that cannot be bound fails the
// start, the default only warns.
func (m Metrics) Address() (addr string, explicit bool) {
	switch m.Listen {
	case MetricsOff:
		return "", false
	case "":
		return DefaultMetricsListen, false
	}
	return m.Listen, true
}

// Log is the daemon's logging.
type Log struct {
	Level string `toml:"level"`
}

// Duration is a time.Duration written as "24h" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }
