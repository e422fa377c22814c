package config

import (
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is a config problem at a place in a file.
type Error struct {
	File string // path, or "config" when parsed from memory
	Line int    // 1-based; 0 when unknown
	Key  string // dotted key, e.g. "tunnel.mtu"; may be empty
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates data; name is used in error messages.
func Parse(name string, data []byte) (*Config, error) {
	if name == "" {
		name = "config"
	}
	lines := newLineIndex(string(data))
	var c Config
	md, err := toml.NewDecoder(strings.NewReader(string(data))).Decode(&c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := pe.Message
			if msg == "" {
				msg = pe.Error()
			}
			return nil, &Error{File: name, Line: pe.Position.Line, Key: pe.LastKey, Msg: prefixMessage(pe.LastKey, msg)}
		}
		return nil, decodeError(name, lines, err)
	}
	// The decoder matches names case-insensitively; exitd's keys are exact.
	if k, ok := caseMismatch(md.Keys()); ok {
		return nil, &Error{File: name, Line: lines.find(k), Key: k, Msg: "unknown key (keys are lower case)" + suggest(k)}
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0].String()
		return nil, &Error{File: name, Line: lines.find(k), Key: k, Msg: "unknown key" + suggest(k)}
	}
	c.Path = name
	if err := c.finish(); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			return nil, &Error{File: name, Line: lines.find(fe.key), Key: fe.key, Msg: fe.msg}
		}
		return nil, &Error{File: name, Msg: err.Error()}
	}
	return &c, nil
}

// decodeError turns the library's plain-text type errors
// (`toml: line 9 (last key "listen.port"): incompatible types: ...`) into an
// *Error with line and key.
func decodeError(name string, lines lineIndex, err error) *Error {
	m := typeErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	if line == 0 {
		line = lines.find(m[2])
	}
	return &Error{File: name, Line: line, Key: m[2], Msg: prefixMessage(m[2], m[3])}
}

var typeErrRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// known lists every key, for "did you mean" hints.
func knownKeys() []string {
	return tomlKeys(reflect.TypeFor[Config](), "")
}

// tomlKeys lists the dotted TOML keys of struct type t's tagged fields:
// a nested table's keys under its name, an array of tables (and any other
// value) as its own key. Derived from the tags, so a new table cannot be
// forgotten by the case and typo checks.
func tomlKeys(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if ft := f.Type; ft.Kind() == reflect.Struct && !implementsText(ft) {
			out = append(out, tomlKeys(ft, prefix+name+".")...)
			continue
		}
		out = append(out, prefix+name)
	}
	return out
}

// implementsText reports whether values of t parse themselves from TOML
// text (Duration, PaceRate, ...): they are keys, not tables.
func implementsText(t reflect.Type) bool {
	var u encoding.TextUnmarshaler
	return reflect.PointerTo(t).Implements(reflect.TypeOf(&u).Elem())
}

// caseMismatch returns the first decoded key that is not spelled exactly
// as exitd's (e.g. "Listen.Port" or "LOG").
func caseMismatch(keys []toml.Key) (string, bool) {
	exact := map[string]bool{}
	for _, k := range knownKeys() {
		exact[k] = true
		if dot := strings.IndexByte(k, '.'); dot > 0 {
			exact[k[:dot]] = true
		}
	}
	for _, k := range keys {
		ks := k.String()
		if !exact[ks] && exact[strings.ToLower(ks)] {
			return ks, true
		}
	}
	return "", false
}

func suggest(k string) string {
	table, last := "", strings.ToLower(k)
	if dot := strings.LastIndex(k, "."); dot >= 0 {
		table, last = strings.ToLower(k[:dot]), strings.ToLower(k[dot+1:])
	}
	best, bestD := "", 3 // suggest only within two edits
	for _, kk := range knownKeys() {
		kt, kl := "", kk
		if dot := strings.LastIndex(kk, "."); dot >= 0 {
			kt, kl = kk[:dot], kk[dot+1:]
		}
		if kk == k {
			continue
		}
		d := editDistance(last, kl)
		if kt != table {
			d++ // prefer a key of the same table
		}
		if d < bestD {
			best, bestD = kk, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance, for short keys.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// lineIndex maps dotted keys to the line that sets them.
type lineIndex map[string]int

func newLineIndex(src string) lineIndex {
	idx := lineIndex{}
	table := ""
	for i, raw := range strings.Split(src, "\n") {
		l := strings.TrimSpace(raw)
		if l == "" || l[0] == '#' {
			continue
		}
		if strings.HasPrefix(l, "[") {
			name := strings.Trim(strings.SplitN(l, "#", 2)[0], " \t[]")
			table = strings.ReplaceAll(name, " ", "")
			if _, ok := idx[table]; !ok {
				idx[table] = i + 1
			}
			continue
		}
		eq := strings.IndexByte(l, '=')
		if eq <= 0 {
			continue
		}
		k := strings.Trim(strings.ReplaceAll(strings.TrimSpace(l[:eq]), " ", ""), `"`)
		if table != "" {
			k = table + "." + k
		}
		if _, ok := idx[k]; !ok {
			idx[k] = i + 1
		}
	}
	return idx
}

func (idx lineIndex) find(key string) int {
	for k := key; k != ""; {
		if l, ok := idx[k]; ok {
			return l
		}
		dot := strings.LastIndex(k, ".")
		if dot < 0 {
			break
		}
		k = k[:dot]
	}
	return 0
}

var prefixErrRE = regexp.MustCompile(`^netip\.ParsePrefix\(("[^"]*")\): (.*)$`)

// prefixMessage rewrites netip's parse errors for the member prefixes
// into what an operator should write.
func prefixMessage(key, msg string) string {
	m := prefixErrRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	switch {
	case strings.HasSuffix(key, "ipv4"):
		return fmt.Sprintf("want an IPv4 prefix such as 10.99.0.0/16, got %s (%s)", m[1], m[2])
	case strings.HasSuffix(key, "ipv6"):
		return fmt.Sprintf("want an IPv6 prefix such as fd00:99::/64, got %s (%s)", m[1], m[2])
	}
	return fmt.Sprintf("want a prefix such as 192.0.2.0/24, got %s (%s)", m[1], m[2])
}
