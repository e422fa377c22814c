package tuning

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// NormalizeKey turns a sysctl key written either as "net.ipv4.ip_forward" or
// as "net/ipv4/ip_forward" into the dotted form sysctl(8) prints. In the
// slash form a dot is part of a name (an interface "eth0.100"); the dotted
// form shows such a dot as "/", as sysctl(8) does:
// net/ipv4/conf/eth0.100/rp_filter → net.ipv4.conf.eth0/100.rp_filter.
// A key is rejected when a component is empty, "." or "..", or when it holds
// whitespace or control characters, so a key can never name a path outside
// the sysctl root.
func NormalizeKey(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("empty key")
	}
	for _, r := range raw {
		if r <= ' ' || r == 0x7f {
			return "", fmt.Errorf("key %q contains whitespace or a control character", raw)
		}
	}
	key := raw
	if i := strings.IndexAny(raw, "./"); i >= 0 && raw[i] == '/' {
		key = swapSeparators(raw)
	}
	for _, c := range strings.Split(key, ".") {
		// c is in dotted form: a literal dot inside a name is "/".
		if c == "" || strings.Trim(c, "/") == "" {
			return "", fmt.Errorf("key %q has an empty or dot-only component", raw)
		}
	}
	return key, nil
}

// keyPath is the path of a normalised key relative to the sysctl root.
func keyPath(key string) string { return swapSeparators(key) }

func swapSeparators(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, s)
}

// NormalizeValue makes two renderings of a value comparable: runs of
// whitespace become one space (the kernel prints vectors tab-separated) and
// integers are printed in decimal the way the kernel parses them (base 0:
// "010" is 8, "0x10" is 16).
func NormalizeValue(v string) string {
	fields := strings.Fields(v)
	for i, f := range fields {
		if n, ok := parseKernelInt(f); ok {
			fields[i] = strconv.FormatInt(n, 10)
		}
	}
	return strings.Join(fields, " ")
}

// parseKernelInt accepts what proc_dointvec accepts: an optional minus and
// a decimal, octal (leading 0) or hex (0x) number.
func parseKernelInt(s string) (int64, bool) {
	body := strings.TrimPrefix(s, "-")
	if body == "" {
		return 0, false
	}
	hex := strings.HasPrefix(body, "0x") || strings.HasPrefix(body, "0X")
	digits := body
	if hex {
		digits = body[2:]
	}
	if digits == "" {
		return 0, false
	}
	for _, r := range digits {
		isDec := r >= '0' && r <= '9'
		isHex := (r >= 'a' && r <= 'f') || (r >= 'A' && r <= 'F')
		if !isDec && !(hex && isHex) {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// isGlob reports whether key is a systemd-sysctl glob pattern.
func isGlob(key string) bool { return strings.ContainsAny(key, "*?[") }
