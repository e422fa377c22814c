package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultTable is the name of the inet table when Config.Table is empty.
// The split layout's ip and ip6 tables are named after it: "exitd_nat".
const DefaultTable = "exitd"

// Mode chooses how member traffic is source-NATed out of the WAN.
type Mode int

const (
	// Masquerade rewrites the source to the WAN interface's address, with
	// fully random source ports.
	Masquerade Mode = iota
	// SNAT rewrites IPv4 sources to Config.Pool4 (and IPv6 sources to
	// Config.Pool6 when set, else masquerades IPv6), persistent per member.
	SNAT
)

// String returns "masquerade" or "snat".
func (m Mode) String() string {
	switch m {
	case Masquerade:
		return "masquerade"
	case SNAT:
		return "snat"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Config is the whole ruleset's input. The zero value of an optional field
// disables what it configures; Validate says what is required.
type Config struct {
	// Table is the inet table's name; empty means DefaultTable. The split
	// layout's ip and ip6 tables are Table + "_nat".
	Table string
	// Tun is the members' interface, WAN the uplink. Both are matched by
	// name, so the rules survive the TUN being re-created.
	Tun, WAN string
	// Member4 and Member6 are the member prefixes. A zero prefix disables
	// that family: every packet of it from Tun is then dropped as spoofed.
	Member4, Member6 netip.Prefix
	// Gateway4 and Gateway6 are the exit's own addresses inside the member
	// prefixes, where members may reach DNS and echo. Required with the
	// matching member prefix.
	Gateway4, Gateway6 netip.Addr
	// Mode is Masquerade or SNAT.
	Mode Mode
	// Pool4 is the first and last IPv4 address of the SNAT pool (SNAT mode,
	// required when Member4 is set). Pool6 is the optional IPv6 pool.
	Pool4, Pool6 [2]netip.Addr
	// Ports is the SNAT source port range for TCP and UDP; zero keeps the
	// source port where possible.
	Ports [2]uint16
	// Isolation drops member-to-member traffic; without it members may
	// reach each other through Tun.
	Isolation bool
	// Block lists extra destinations members must not reach, IPv4 and IPv6
	// mixed, added to the built-in deny sets.
	Block []netip.Prefix
	// WANPrefixes are the WAN interface's own connected prefixes (its
	// on-link neighbours, the provider's VPC range), blocked like Block.
	// The caller fills them, e.g. from ConnectedPrefixes(WAN), at start and
	// on every reload.
	WANPrefixes []netip.Prefix
	// ServiceTCP are extra TCP ports, and ServiceUDP extra UDP port ranges,
	// on the gateway addresses members may reach besides DNS (53) and
	// echo: the SOCKS proxy and its UDP relay range. Only from Tun.
	ServiceTCP []uint16
	ServiceUDP [][2]uint16
	// CaptureDNS redirects members' plain DNS (UDP and TCP port 53) to any
	// destination but the gateway to the gateway's resolver (DNAT in a
	// prerouting chain), so a client that ignores its DNS line does not
	// leak names either. DNS over TLS/HTTPS is not touched.
	CaptureDNS bool
	// Allow punches holes into the deny set (built-ins, Block and
	// WANPrefixes), for an operator who wants a neighbour reachable. It may
	// not open loopback or the member prefixes.
	Allow []netip.Prefix
	// PortForward lets connections the port-forward table (ApplyForwards)
	// DNATs from the WAN into the tunnel: new flows towards the TUN are
	// otherwise dropped.
	PortForward bool
	// Limits are the per-member connection quotas and new-connection rate
	// limits (quota.go); the zero value is off.
	Limits ConnLimits
	// Layout is where the NAT chains live: LayoutAuto (the zero value)
	// probes the kernel, LayoutInet insists on the inet table, LayoutSplit
	// forces the ip + ip6 fallback.
	Layout Layout
}

// DenySet is the deny set this config's ruleset enforces: the built-in
// lists plus Block and WANPrefixes, minus Allow. User-space forwarders
// (SOCKS, DNS) take its Denied method so they agree with the kernel.
func (c Config) DenySet() *DenySet {
	block := append(append([]netip.Prefix(nil), c.Block...), c.WANPrefixes...)
	return NewDenySet(block, c.Allow)
}

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("invalid config")

func (c Config) table() string {
	if c.Table == "" {
		return DefaultTable
	}
	return c.Table
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("nat: %w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (c Config) validate() error {
	if err := validTableName(c.table()); err != nil {
		return err
	}
	if err := validIfname("tun", c.Tun); err != nil {
		return err
	}
	if err := validIfname("wan", c.WAN); err != nil {
		return err
	}
	if c.Tun == c.WAN {
		return fmt.Errorf("tun and wan are the same interface %q", c.Tun)
	}
	if !c.Member4.IsValid() && !c.Member6.IsValid() {
		return errors.New("no member prefix: set member4, member6 or both")
	}
	if err := validMember("member4", c.Member4, c.Gateway4, true); err != nil {
		return err
	}
	if err := validMember("member6", c.Member6, c.Gateway6, false); err != nil {
		return err
	}
	for _, p := range c.ServiceTCP {
		if p == 0 || p == 53 {
			return fmt.Errorf("service TCP port %d: want 1-65535, not 53 (always open)", p)
		}
	}
	for _, r := range c.ServiceUDP {
		if r[0] == 0 || r[1] < r[0] {
			return fmt.Errorf("service UDP range %d-%d is empty", r[0], r[1])
		}
	}
	switch c.Mode {
	case Masquerade:
		if c.Pool4 != ([2]netip.Addr{}) || c.Pool6 != ([2]netip.Addr{}) || c.Ports != ([2]uint16{}) {
			return errors.New("pool and ports need mode snat")
		}
	case SNAT:
		if c.Member4.IsValid() && c.Pool4 == ([2]netip.Addr{}) {
			return errors.New("mode snat needs pool4 for member4")
		}
		if c.Pool4 != ([2]netip.Addr{}) {
			if err := validPool("pool4", c.Pool4, true); err != nil {
				return err
			}
		}
		if c.Pool6 != ([2]netip.Addr{}) {
			if err := validPool("pool6", c.Pool6, false); err != nil {
				return err
			}
		}
		if c.Ports != ([2]uint16{}) {
			if c.Ports[0] == 0 || c.Ports[1] == 0 {
				return fmt.Errorf("ports %d-%d: port 0 in range", c.Ports[0], c.Ports[1])
			}
			if c.Ports[0] > c.Ports[1] {
				return fmt.Errorf("ports %d-%d: reversed", c.Ports[0], c.Ports[1])
			}
		}
	default:
		return fmt.Errorf("unknown mode %d", int(c.Mode))
	}
	if err := c.Limits.validate(c.Member4, c.Member6); err != nil {
		return err
	}
	if c.Layout < LayoutAuto || c.Layout > LayoutSplit {
		return fmt.Errorf("unknown table layout %d", int(c.Layout))
	}
	for _, list := range []struct {
		what string
		ps   []netip.Prefix
	}{{"block", c.Block}, {"wan prefix", c.WANPrefixes}, {"allow", c.Allow}} {
		// An invalid WAN prefix is how a caller that could not read the
		// WAN's connected prefixes fails closed.
		for _, p := range list.ps {
			if err := validPrefix(list.what, p); err != nil {
				return err
			}
		}
	}
	for _, p := range c.Allow {
		for _, closed := range []struct {
			what string
			p    netip.Prefix
		}{{"loopback", loopback4}, {"loopback", loopback6}, {"member4", c.Member4}, {"member6", c.Member6}} {
			if closed.p.IsValid() && p.Overlaps(closed.p) {
				return fmt.Errorf("allow %s: would open %s %s", p, closed.what, closed.p)
			}
		}
	}
	return nil
}

func validPrefix(what string, p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("%s: invalid prefix", what)
	}
	if p.Addr().Is4In6() {
		return fmt.Errorf("%s %s: IPv4-mapped IPv6 prefix; write it as IPv4", what, p)
	}
	if p != p.Masked() {
		return fmt.Errorf("%s %s: host bits set (did you mean %s?)", what, p, p.Masked())
	}
	return nil
}

// validTableName follows nft's identifier rules, within NFT_NAME_MAXLEN
// (255 bytes) once the split layout's "_nat" is appended.
func validTableName(s string) error {
	if n := 255 - len(natSuffix); len(s) > n {
		return fmt.Errorf("table name is %d bytes, more than %d (the NAT tables append %q)", len(s), n, natSuffix)
	}
	for i, r := range s {
		alpha := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if alpha || i > 0 && (r >= '0' && r <= '9' || r == '_' || r == '-') {
			continue
		}
		return fmt.Errorf("table name %q: want a letter then letters, digits, '_' or '-'", s)
	}
	return nil
}

// validIfname follows the kernel's dev_valid_name.
func validIfname(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s: empty interface name", what)
	case len(s) > 15:
		return fmt.Errorf("%s %q: interface name longer than 15 bytes", what, s)
	case s == "." || s == "..":
		return fmt.Errorf("%s %q: not an interface name", what, s)
	case strings.ContainsAny(s, "/: \t\n\v\f\r\x00"):
		return fmt.Errorf("%s %q: interface name contains '/', ':', NUL or whitespace", what, s)
	}
	return nil
}

func validMember(what string, p netip.Prefix, gw netip.Addr, v4 bool) error {
	gwName := "gateway4"
	if !v4 {
		gwName = "gateway6"
	}
	if !p.IsValid() {
		if gw.IsValid() {
			return fmt.Errorf("%s %s without %s", gwName, gw, what)
		}
		return nil
	}
	if v4 != p.Addr().Is4() || p.Addr().Is4In6() {
		return fmt.Errorf("%s %s: wrong address family", what, p)
	}
	if p != p.Masked() {
		return fmt.Errorf("%s %s: host bits set (did you mean %s?)", what, p, p.Masked())
	}
	if p.Bits() < 8 || p.Bits() >= p.Addr().BitLen() {
		return fmt.Errorf("%s %s: prefix length must be at least 8 and leave room for members", what, p)
	}
	if !gw.IsValid() {
		return fmt.Errorf("%s %s needs %s", what, p, gwName)
	}
	if gw.Zone() != "" || !p.Contains(gw) {
		return fmt.Errorf("%s %s is not in %s %s", gwName, gw, what, p)
	}
	if gw == p.Addr() {
		return fmt.Errorf("%s %s is the network address of %s", gwName, gw, what)
	}
	return nil
}

func validPool(what string, pool [2]netip.Addr, v4 bool) error {
	for _, a := range pool {
		if !a.IsValid() {
			return fmt.Errorf("%s: both first and last address are needed", what)
		}
		if a.Is4() != v4 || a.Is4In6() || a.Zone() != "" {
			return fmt.Errorf("%s %s: wrong address family", what, a)
		}
	}
	if pool[1].Less(pool[0]) {
		return fmt.Errorf("%s %s-%s: reversed", what, pool[0], pool[1])
	}
	return nil
}
