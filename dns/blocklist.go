package dns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	mdns "github.com/miekg/dns"
)

// maxBlockLine is the longest blocklist line read; longer lines are bad lines.
const maxBlockLine = 4096

// blocklist is an immutable set of blocked names (lowercase, fully
// qualified); a name is blocked when it or any parent is in the set.
type blocklist struct {
	names map[string]struct{}
	bad   int // lines skipped as unparseable
}

// isHostsName reports the names a hosts file maps for the machine itself;
// hosts-format blocklists carry them and they are not meant as blocks.
func isHostsName(name string) bool {
	switch name {
	case "localhost.", "localhost.localdomain.", "local.", "broadcasthost.",
		"ip6-localhost.", "ip6-loopback.", "ip6-localnet.", "ip6-mcastprefix.",
		"ip6-allnodes.", "ip6-allrouters.", "ip6-allhosts.":
		return true
	}
	return false
}

// parseBlocklist reads a blocklist in either format, line by line:
//
//	# comment                  ignored, as is anything after '#'
//	ads.example.com            domain-list format: the name and its subdomains
//	0.0.0.0 ads.example.com    hosts format: every name after the address
//
// A line that parses as neither is skipped and counted; only a read error
// fails.
func parseBlocklist(r io.Reader) (*blocklist, error) {
	bl := &blocklist{names: make(map[string]struct{})}
	br := bufio.NewReaderSize(r, maxBlockLine)
	for {
		line, isPrefix, err := br.ReadLine()
		if errors.Is(err, io.EOF) {
			return bl, nil
		}
		if err != nil {
			return nil, err
		}
		if isPrefix { // too long: skip the rest of it
			bl.bad++
			for isPrefix && err == nil {
				_, isPrefix, err = br.ReadLine()
			}
			continue
		}
		bl.addLine(string(line))
	}
}

func (bl *blocklist) addLine(line string) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	fields := strings.Fields(line)
	switch {
	case len(fields) == 0:
		return
	case len(fields) == 1:
		if !bl.addName(fields[0]) {
			bl.bad++
		}
	default:
		if _, err := netip.ParseAddr(fields[0]); err != nil {
			bl.bad++
			return
		}
		for _, f := range fields[1:] {
			if !bl.addName(f) {
				bl.bad++
				return
			}
		}
	}
}

// addName adds one name; it reports false for something that is not a
// domain name. The hosts file's own names are accepted and ignored.
func (bl *blocklist) addName(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return false
	}
	if _, ok := mdns.IsDomainName(s); !ok || strings.Trim(s, ".") == "" {
		return false
	}
	for _, c := range []byte(s) { // host names only: no wildcards, adblock syntax, escapes
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	name := mdns.Fqdn(strings.ToLower(s))
	if isHostsName(name) {
		return true
	}
	bl.names[name] = struct{}{}
	return true
}

// blocked reports whether name (lowercase, fully qualified) or one of its
// parents is listed. It does not allocate.
func (bl *blocklist) blocked(name string) bool {
	if bl == nil || len(bl.names) == 0 {
		return false
	}
	for off, end := 0, false; !end; off, end = mdns.NextLabel(name, off) {
		if _, ok := bl.names[name[off:]]; ok {
			return true
		}
	}
	return false
}

// loadBlocklist reads the blocklist at path.
func loadBlocklist(path string) (*blocklist, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dns: blocklist: %w", err)
	}
	defer f.Close()
	bl, err := parseBlocklist(f)
	if err != nil {
		return nil, fmt.Errorf("dns: blocklist: read %s: %w", path, err)
	}
	return bl, nil
}
