package tuning

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Severity of a lint finding.
type Severity string

// Severities: error — fix before using the profile; warning — mis-sized or
// harmful; info — useless or obsolete, remove when convenient.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
	SeverityInfo    Severity = "info"
)

func (s Severity) rank() int {
	switch s {
	case SeverityError:
		return 0
	case SeverityWarning:
		return 1
	}
	return 2
}

// Category says what kind of problem a finding is.
type Category string

// Categories, matching the critique of rev 1.6 in docs/tuning.md.
const (
	CategoryUnsafe      Category = "unsafe"
	CategoryBreaksUsers Category = "breaks-users"
	CategoryMisSized    Category = "mis-sized"
	CategoryNoEffect    Category = "no-effect"
	CategoryObsolete    Category = "obsolete"
	CategorySyntax      Category = "syntax"
	CategoryDuplicate   Category = "duplicate"
)

// Finding is one problem in a profile.
type Finding struct {
	Severity Severity `json:"severity"`
	Category Category `json:"category"`
	Key      string   `json:"key,omitempty"`
	Value    string   `json:"value,omitempty"`
	Pos      Position `json:"pos"`
	// Why explains the consequence in an operator's words.
	Why string `json:"why"`
	// Safe is the value to use instead, or what to do with the line.
	Safe string `json:"safe"`
}

// Lint checks the winning assignment of every key in p, plus duplicate
// keys. Findings are sorted by severity, then position.
func Lint(p *Profile) []Finding {
	var out []Finding
	for _, e := range p.Settings() {
		for _, r := range lintRules {
			if !r.match(e.Key) {
				continue
			}
			if f, ok := r.check(e, p); ok {
				f.Key, f.Value, f.Pos = e.Key, e.Value, e.Pos
				out = append(out, f)
				break // one finding per line: the first rule that fires
			}
		}
	}
	for _, d := range p.Duplicates {
		e, _ := p.Lookup(d.Key)
		out = append(out, Finding{
			Severity: SeverityInfo, Category: CategoryDuplicate, Key: d.Key, Value: e.Value, Pos: d.Second,
			Why:  fmt.Sprintf("Set more than once (lines %d and %d); only the last value, %q, takes effect.", d.First.Line, d.Second.Line, e.Value),
			Safe: "keep one line",
		})
	}
	sortFindings(out)
	return out
}

// LintFile parses data and lints it; lines that do not parse become
// syntax findings.
func LintFile(name string, data []byte) []Finding {
	p, err := Parse(name, data)
	out := Lint(p)
	var le *LineError
	for _, e := range unjoin(err) {
		f := Finding{Severity: SeverityError, Category: CategorySyntax, Pos: Position{File: name},
			Why: e.Error(), Safe: `write "key = value", or start the line with "#" to comment it out`}
		if errors.As(e, &le) {
			f.Pos, f.Why = le.Pos, "The line is not a valid setting ("+le.Reason+"); systemd-sysctl skips it."
		}
		out = append(out, f)
	}
	sortFindings(out)
	return out
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(a.Severity.rank(), b.Severity.rank()),
			strings.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
		)
	})
}

// LintSummary counts findings per severity.
func LintSummary(fs []Finding) map[Severity]int {
	c := make(map[Severity]int)
	for _, f := range fs {
		c[f.Severity]++
	}
	return c
}

// keyMatches matches a dotted key against a pattern whose "*" components
// match any one component.
func keyMatches(pattern, key string) bool {
	pc, kc := strings.Split(pattern, "."), strings.Split(key, ".")
	if len(pc) != len(kc) {
		return false
	}
	for i := range pc {
		if pc[i] != "*" && pc[i] != kc[i] {
			return false
		}
	}
	return true
}

// humanBytes renders n bytes as KiB/MiB/GiB.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
