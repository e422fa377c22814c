package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// Values that parse themselves: TOML gives their text to UnmarshalText (or
// UnmarshalTOML for lists), so the structs the rest of exitd sees hold
// only parsed values — no raw strings beside them. Range and family checks
// that need the key's context stay in finish (validate.go).

// Rate is a rate in bits per second, written "95mbit", "1gbit", "500kbit"
// or a plain number; "" or absent means 0 (none).
type Rate uint64

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = 0
		return nil
	}
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = Rate(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler (bits per second).
func (r Rate) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "%d", uint64(r)), nil }

// PaceRate is the download pacing rate: "auto", "" or absent (the zero
// value: the WAN link's reported speed, less 5 %), "off" or "0" (no
// pacing), or a rate as Rate reads it.
type PaceRate struct {
	BitsPerSecond uint64 // set rate; 0 with Off false means auto
	Off           bool
}

// Auto reports whether the rate comes from the WAN link's speed.
func (r PaceRate) Auto() bool { return !r.Off && r.BitsPerSecond == 0 }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *PaceRate) UnmarshalText(b []byte) error {
	switch s := strings.ToLower(strings.TrimSpace(string(b))); s {
	case "", "auto":
		*r = PaceRate{}
	case "off", "0":
		*r = PaceRate{Off: true}
	default:
		v, err := ParseRate(s)
		if err != nil {
			return fmt.Errorf("%w, \"auto\" or \"off\"", err)
		}
		if v == 0 {
			*r = PaceRate{Off: true}
			return nil
		}
		*r = PaceRate{BitsPerSecond: v}
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (r PaceRate) MarshalText() ([]byte, error) {
	switch {
	case r.Off:
		return []byte("off"), nil
	case r.BitsPerSecond == 0:
		return []byte("auto"), nil
	}
	return fmt.Appendf(nil, "%d", r.BitsPerSecond), nil
}

// AddrRange is "first-last" or a prefix (its addresses); the zero value
// is unset.
type AddrRange [2]netip.Addr

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *AddrRange) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = AddrRange{}
		return nil
	}
	v, err := ParseAddrRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (r AddrRange) MarshalText() ([]byte, error) {
	if !r[0].IsValid() {
		return nil, nil
	}
	return []byte(r[0].String() + "-" + r[1].String()), nil
}

// IsSet reports whether the range was given.
func (r AddrRange) IsSet() bool { return r[0].IsValid() }

// PortRange is "first-last" or one port; the zero value is unset.
type PortRange [2]uint16

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *PortRange) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = PortRange{}
		return nil
	}
	v, err := ParsePortRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (r PortRange) MarshalText() ([]byte, error) {
	if r[0] == 0 {
		return nil, nil
	}
	return fmt.Appendf(nil, "%d-%d", r[0], r[1]), nil
}

// PrefixList is a list of prefixes or single addresses (an address means
// its /32 or /128), host bits cleared.
type PrefixList []netip.Prefix

// UnmarshalTOML implements toml.Unmarshaler: v is the decoded array.
func (l *PrefixList) UnmarshalTOML(v any) error {
	items, ok := v.([]any)
	if !ok {
		return fmt.Errorf("want a list of prefixes such as [\"192.0.2.0/24\"], got %T", v)
	}
	out := make(PrefixList, 0, len(items))
	for _, it := range items {
		s, ok := it.(string)
		if !ok {
			return fmt.Errorf("want prefixes as strings such as \"192.0.2.0/24\", got %v", it)
		}
		p, err := parsePrefixOrAddr(s)
		if err != nil {
			return err
		}
		out = append(out, p)
	}
	*l = out
	return nil
}

// parsePrefixOrAddr parses "192.0.2.0/24" or "192.0.2.1" (as /32).
func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("want a prefix such as 192.0.2.0/24, got %q", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix; write it as IPv4", s)
	}
	return p.Masked(), nil
}
