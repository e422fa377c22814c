package members

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"exitd/keys"
)

// ImportPeer is one [Peer] of a wg-quick server config, as `exitctl member
// import` migrates it.
type ImportPeer struct {
	Line      int // line of its [Peer] header
	PublicKey keys.Key
	// Label comes from a comment naming the peer ("# Name = alice",
	// "### begin alice ###", "# alice"), made to fit CheckLabel; "" when
	// there is none.
	Label string
	// Addrs are the peer's AllowedIPs; a member's own addresses are the
	// /32 and /128 among them.
	Addrs []netip.Prefix
	// PresharedKey reports a PresharedKey line: exitd does not use preshared
	// keys, so the member must drop it from their config.
	PresharedKey bool
}

// Addr4 and Addr6 are the peer's single-host addresses, if any.
func (p ImportPeer) Addr4() netip.Addr { return p.host(true) }

// Addr6 is the peer's first /128 AllowedIP.
func (p ImportPeer) Addr6() netip.Addr { return p.host(false) }

func (p ImportPeer) host(v4 bool) netip.Addr {
	for _, a := range p.Addrs {
		if a.Addr().Is4() == v4 && a.IsSingleIP() {
			return a.Addr()
		}
	}
	return netip.Addr{}
}

// maxImportLine bounds one line of an imported file.
const maxImportLine = 64 << 10

// ParseWGQuick reads the [Peer] sections of a wg-quick (or `wg showconf`)
// file. As wg-quick does, it treats everything after '#' as a comment and
// keys case-insensitively; [Interface] settings are ignored. A peer without
// a valid PublicKey, a bad AllowedIPs entry, an unknown [Peer] key or a
// repeated public key is an error naming the line.
func ParseWGQuick(r io.Reader) ([]ImportPeer, error) {
	var (
		out      []ImportPeer
		cur      *ImportPeer
		comments []string // since the last setting or header
		seen     = map[keys.Key]int{}
		lineNo   int
	)
	finish := func() error {
		if cur == nil {
			return nil
		}
		if cur.PublicKey.IsZero() {
			return fmt.Errorf("line %d: [Peer] without a PublicKey", cur.Line)
		}
		if prev, ok := seen[cur.PublicKey]; ok {
			return fmt.Errorf("line %d: public key %s already used by the [Peer] on line %d", cur.Line, cur.PublicKey, prev)
		}
		seen[cur.PublicKey] = cur.Line
		out = append(out, *cur)
		cur = nil
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxImportLine)
	for sc.Scan() {
		lineNo++
		raw := strings.TrimSpace(sc.Text())
		text, comment, hasComment := strings.Cut(raw, "#")
		text = strings.TrimSpace(text)
		if text == "" {
			if hasComment {
				comments = append(comments, comment)
			} else {
				comments = nil // a name comment sits right above or inside its [Peer]
			}
			continue
		}
		if strings.HasPrefix(text, "[") {
			if err := finish(); err != nil {
				return nil, err
			}
			section := strings.ToLower(strings.TrimSpace(strings.Trim(text, "[]")))
			if !strings.HasSuffix(text, "]") {
				return nil, fmt.Errorf("line %d: bad section header %q", lineNo, text)
			}
			if section == "peer" {
				cur = &ImportPeer{Line: lineNo, Label: labelFromComments(comments)}
			}
			comments = nil
			continue
		}
		key, value, ok := strings.Cut(text, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want Key = Value, got %q", lineNo, text)
		}
		key, value = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(value)
		if cur == nil {
			comments = nil
			continue // [Interface] or no section yet
		}
		if cur.Label == "" {
			cur.Label = labelFromComments(comments)
		}
		comments = nil
		switch key {
		case "publickey":
			k, err := keys.Parse(value)
			if err != nil || k.IsZero() {
				return nil, fmt.Errorf("line %d: PublicKey: %w", lineNo, ErrInvalidKey)
			}
			cur.PublicKey = k
		case "allowedips":
			for _, f := range strings.Split(value, ",") {
				f = strings.TrimSpace(f)
				if f == "" {
					continue
				}
				p, err := parseAllowed(f)
				if err != nil {
					return nil, fmt.Errorf("line %d: AllowedIPs %q: %v", lineNo, f, err)
				}
				cur.Addrs = append(cur.Addrs, p)
			}
		case "presharedkey":
			cur.PresharedKey = true
		case "endpoint", "persistentkeepalive":
		default:
			return nil, fmt.Errorf("line %d: unknown [Peer] key %q", lineNo, key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", lineNo+1, err)
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return out, nil
}

// parseAllowed accepts a prefix or a bare address (a host route).
func parseAllowed(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("not an address or prefix")
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// labelFromComments finds a peer's name in the comments above or at the top
// of its section: "Name = x" (or friendly_name, label, client, user),
// "### begin x ###" (PiVPN), or a single word.
func labelFromComments(comments []string) string {
	for _, c := range comments {
		c = strings.TrimSpace(strings.Trim(strings.TrimSpace(c), "#"))
		lc := strings.ToLower(c)
		if strings.HasPrefix(lc, "begin ") {
			return sanitizeLabel(strings.TrimSpace(c[len("begin "):]))
		}
		if k, v, ok := cutAny(c, "=:"); ok {
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "name", "friendly_name", "friendlyname", "label", "client", "user", "peer":
				return sanitizeLabel(strings.TrimSpace(v))
			}
			continue
		}
		if c != "" && !strings.ContainsAny(c, " \t[]") {
			return sanitizeLabel(c)
		}
	}
	return ""
}

func cutAny(s, seps string) (before, after string, ok bool) {
	if i := strings.IndexAny(s, seps); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// sanitizeLabel maps s onto CheckLabel's alphabet: other characters become
// '-', the result is at most maxLabel long; "" when nothing is left.
func sanitizeLabel(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= maxLabel {
			break
		}
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == '-' || r == '@'
		if !ok {
			r = '-'
		}
		b.WriteRune(r)
	}
	out := strings.Trim(b.String(), "-")
	if CheckLabel(out) != nil {
		return ""
	}
	return out
}

// ExportWGQuick renders members as wg-quick [Peer] sections (what a wg-quick
// server needs), each named by a "# Name = label" comment that ParseWGQuick
// reads back. Disabled members are written commented out.
func ExportWGQuick(ms []Member) string {
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteByte('\n')
		}
		var allowed []string
		if m.IPv4.IsValid() {
			allowed = append(allowed, netip.PrefixFrom(m.IPv4, 32).String())
		}
		if m.IPv6.IsValid() {
			allowed = append(allowed, netip.PrefixFrom(m.IPv6, 128).String())
		}
		pre := ""
		if m.Disabled {
			b.WriteString("# disabled in exitd\n")
			pre = "#"
		}
		fmt.Fprintf(&b, "%s[Peer]\n%s# Name = %s\n%sPublicKey = %s\n%sAllowedIPs = %s\n",
			pre, pre, m.Label, pre, m.PublicKey, pre, strings.Join(allowed, ", "))
	}
	return b.String()
}
