package tuning

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Position is where an entry was written.
type Position struct {
	File string `json:"file"`
	Line int    `json:"line"`
}

func (p Position) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Entry is one assignment of a sysctl file.
type Entry struct {
	// Key is normalised (see NormalizeKey); it may be a glob pattern.
	Key string `json:"key"`
	// Value is the text after "=", trimmed; multi-values keep their
	// separators. Compare values with NormalizeValue.
	Value string `json:"value"`
	// IgnoreErrors is set by a leading "-": failure to write it is not an
	// error (systemd-sysctl semantics).
	IgnoreErrors bool `json:"ignore_errors,omitempty"`
	// Exclude is a "-key" line without "=": it exempts key from globs in
	// earlier lines and sets nothing.
	Exclude bool `json:"exclude,omitempty"`
	// Comment is the comment block directly above the entry, without the
	// comment markers, lines joined with a space.
	Comment string   `json:"comment,omitempty"`
	Pos     Position `json:"pos"`
}

// Duplicate records a key assigned more than once; the later value wins.
type Duplicate struct {
	Key    string   `json:"key"`
	First  Position `json:"first"`
	Second Position `json:"second"`
}

// Profile is a parsed sysctl file (or several merged).
type Profile struct {
	Name string `json:"name"`
	// Entries holds every assignment in file order, duplicates included.
	Entries    []Entry     `json:"entries"`
	Duplicates []Duplicate `json:"duplicates,omitempty"`
}

// LineError is one line Parse could not read.
type LineError struct {
	Pos    Position
	Reason string
}

func (e *LineError) Error() string { return fmt.Sprintf("tuning: %s: %s", e.Pos, e.Reason) }

// Parse reads data in sysctl.conf / sysctl.d syntax, as systemd-sysctl does:
// blank lines and lines starting with "#" or ";" are comments; an entry is
// "key = value" with the key in dotted or slash form; a leading "-" makes
// errors when applying it ignorable; "-key" alone excludes key from globs.
// There are no inline comments: a "#" after "=" is part of the value.
//
// Like systemd-sysctl, Parse keeps going past a bad line: the profile it
// returns holds every good entry, and the error joins one *LineError per
// bad line. Duplicate keys are recorded in Profile.Duplicates, not errors.
func Parse(name string, data []byte) (*Profile, error) {
	p := &Profile{Name: name}
	var errs []error
	seen := make(map[string]Position)
	var comment []string
	sc := bufio.NewScanner(bytes.NewReader(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		pos := Position{File: name, Line: line}
		text := strings.TrimSpace(sc.Text())
		switch {
		case text == "":
			comment = nil
			continue
		case text[0] == '#' || text[0] == ';':
			comment = append(comment, strings.TrimSpace(text[1:]))
			continue
		}
		e, err := parseLine(text, pos)
		if err != nil {
			errs = append(errs, &LineError{Pos: pos, Reason: err.Error()})
			comment = nil
			continue
		}
		e.Comment = strings.Join(comment, " ")
		comment = nil
		if first, dup := seen[e.Key]; dup && !e.Exclude {
			p.Duplicates = append(p.Duplicates, Duplicate{Key: e.Key, First: first, Second: pos})
		}
		if !e.Exclude {
			seen[e.Key] = pos
		}
		p.Entries = append(p.Entries, e)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("tuning: read %s: %w", name, err))
	}
	return p, errors.Join(errs...)
}

func parseLine(text string, pos Position) (Entry, error) {
	e := Entry{Pos: pos}
	if strings.HasPrefix(text, "-") {
		e.IgnoreErrors = true
		text = strings.TrimSpace(text[1:])
	}
	rawKey, value, hasValue := strings.Cut(text, "=")
	rawKey = strings.TrimSpace(rawKey)
	if !hasValue {
		if !e.IgnoreErrors {
			return e, errors.New(`not an assignment: expected "key = value"`)
		}
		e.Exclude = true
	}
	key, err := NormalizeKey(rawKey)
	if err != nil {
		return e, err
	}
	value = strings.TrimSpace(value)
	for _, r := range value {
		if (r < ' ' && r != '\t') || r == 0x7f {
			return e, fmt.Errorf("value of %s contains a control character", key)
		}
	}
	e.Key, e.Value = key, value
	return e, nil
}

// Settings returns one entry per key: the last assignment (which wins),
// ordered by the key's first assignment (the order it is applied in).
// Exclusion lines are dropped.
func (p *Profile) Settings() []Entry {
	index := make(map[string]int)
	var out []Entry
	for _, e := range p.Entries {
		if e.Exclude {
			continue
		}
		if i, ok := index[e.Key]; ok {
			out[i] = e
			continue
		}
		index[e.Key] = len(out)
		out = append(out, e)
	}
	return out
}

// Lookup returns the winning (last) assignment of key.
func (p *Profile) Lookup(key string) (Entry, bool) {
	for i := len(p.Entries) - 1; i >= 0; i-- {
		if e := p.Entries[i]; e.Key == key && !e.Exclude {
			return e, true
		}
	}
	return Entry{}, false
}

// Keys returns the distinct keys of the profile in application order.
func (p *Profile) Keys() []string {
	var keys []string
	for _, e := range p.Settings() {
		keys = append(keys, e.Key)
	}
	return keys
}
