package tuning

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// SysctlDirs returns the directories systemd-sysctl reads, in priority
// order: of two files with the same name, the one in the earlier directory
// wins.
func SysctlDirs() []string {
	return []string{"/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"}
}

// SysctlConf is read after every sysctl.d file.
const SysctlConf = "/etc/sysctl.conf"

// Setting is the assignment of a key that wins at boot.
type Setting struct {
	Entry
	// Overridden lists earlier assignments of the same key, in the order
	// they were read.
	Overridden []Entry `json:"overridden,omitempty"`
}

// Effective is what systemd-sysctl will set at boot under a root.
type Effective struct {
	Root string `json:"root"`
	// Files are the files read, in order, as absolute paths on the target
	// system; Masked are names masked by a symlink to /dev/null.
	Files  []string `json:"files"`
	Masked []string `json:"masked,omitempty"`
	// Settings, sorted by key; glob keys appear as written.
	Settings []Setting `json:"settings"`
	// Problems holds unreadable files and lines that do not parse.
	Problems []string `json:"problems,omitempty"`
}

// ResolveEffective reads /etc/sysctl.conf and the sysctl.d directories
// under root in systemd-sysctl's order: *.conf files from all of SysctlDirs(),
// a name in an earlier directory hiding the same name in later ones, sorted
// by file name; then /etc/sysctl.conf (unless a sysctl.d entry is a symlink
// to it, as 99-sysctl.conf is on Debian and RHEL). A later assignment of a
// key wins. It fails only when root cannot be read at all.
func ResolveEffective(root string) (*Effective, error) {
	if _, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("tuning: effective: %w", err)
	}
	eff := &Effective{Root: root}
	byName := make(map[string]string) // file name → path on the target
	for _, dir := range SysctlDirs() {
		ents, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				eff.Problems = append(eff.Problems, fmt.Sprintf("%s: %v", dir, err))
			}
			continue
		}
		for _, de := range ents {
			if !strings.HasSuffix(de.Name(), ".conf") || de.IsDir() {
				continue
			}
			if _, seen := byName[de.Name()]; !seen {
				byName[de.Name()] = path.Join(dir, de.Name())
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	order := make([]string, 0, len(names)+1)
	confLinked := false
	for _, n := range names {
		p := byName[n]
		target, masked := resolveLink(root, p)
		if masked {
			eff.Masked = append(eff.Masked, p)
			continue
		}
		if target == SysctlConf {
			confLinked = true
		}
		order = append(order, p)
	}
	if !confLinked {
		order = append(order, SysctlConf)
	}
	merged := make(map[string]*Setting)
	for _, p := range order {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
		if err != nil {
			if !(p == SysctlConf && errors.Is(err, fs.ErrNotExist)) {
				eff.Problems = append(eff.Problems, fmt.Sprintf("%s: %v", p, err))
			}
			continue
		}
		eff.Files = append(eff.Files, p)
		prof, perr := Parse(p, data)
		for _, e := range unjoin(perr) {
			eff.Problems = append(eff.Problems, e.Error())
		}
		for _, e := range prof.Entries {
			if e.Exclude {
				continue
			}
			if s, ok := merged[e.Key]; ok {
				s.Overridden = append(s.Overridden, s.Entry)
				s.Entry = e
				continue
			}
			merged[e.Key] = &Setting{Entry: e}
		}
	}
	for _, s := range merged {
		eff.Settings = append(eff.Settings, *s)
	}
	slices.SortFunc(eff.Settings, func(a, b Setting) int { return strings.Compare(a.Key, b.Key) })
	return eff, nil
}

// resolveLink follows symlinks of the target-system path p inside root. It
// returns the final target-system path, and masked when the chain ends at
// /dev/null.
func resolveLink(root, p string) (target string, masked bool) {
	for range 8 {
		link, err := os.Readlink(filepath.Join(root, filepath.FromSlash(p)))
		if err != nil {
			return p, false
		}
		if !path.IsAbs(link) {
			link = path.Join(path.Dir(p), link)
		}
		p = path.Clean(link)
		if p == "/dev/null" {
			return p, true
		}
	}
	return p, false
}

// Lookup returns the setting that decides key at boot: an explicit
// assignment, else the last glob that matches it (systemd-sysctl lets
// explicit keys beat globs).
func (e *Effective) Lookup(key string) (Setting, bool) {
	var glob *Setting
	for i := range e.Settings {
		s := &e.Settings[i]
		if s.Key == key {
			return *s, true
		}
		if isGlob(s.Key) {
			if ok, _ := path.Match(keyPath(s.Key), keyPath(key)); ok {
				if glob == nil || later(s.Pos, glob.Pos, e.Files) {
					glob = s
				}
			}
		}
	}
	if glob != nil {
		return *glob, true
	}
	return Setting{}, false
}

func later(a, b Position, files []string) bool {
	ia, ib := slices.Index(files, a.File), slices.Index(files, b.File)
	if ia != ib {
		return ia > ib
	}
	return a.Line > b.Line
}

// Conflict is a key of a profile that will not hold after boot.
type Conflict struct {
	Key    string `json:"key"`
	Wanted string `json:"wanted"`
	// Value and Pos are what wins at boot; Value is "" and Pos zero when no
	// file sets the key (the kernel default stays until `exitd tune apply`).
	Value    string   `json:"value"`
	Pos      Position `json:"pos"`
	Unset    bool     `json:"unset,omitempty"`
	Critical bool     `json:"critical"`
	// Safe: for a critical key, whether the winning value is still safe
	// (an unset key is not: the kernel default stays until `tune apply`).
	Safe bool `json:"safe"`
}

// Fights reports whether c is a safety-critical key that a file sets to an
// unsafe value: it wins at boot and again whenever systemd-sysctl re-runs
// (package installs do), undoing `exitd tune apply`.
func (c Conflict) Fights() bool { return c.Critical && !c.Safe && !c.Unset }

// Against returns the keys of p whose winning boot-time value differs from
// p's, e.g. a hardening 99-*.conf with ip_forward = 0.
func (e *Effective) Against(p *Profile) []Conflict {
	var out []Conflict
	for _, want := range p.Settings() {
		s, ok := e.Lookup(want.Key)
		if ok && NormalizeValue(s.Value) == NormalizeValue(want.Value) {
			continue
		}
		c := Conflict{Key: want.Key, Wanted: want.Value, Safe: true, Unset: !ok}
		if ok {
			c.Value, c.Pos = s.Value, s.Pos
		}
		if crit, isCrit := criticalKeys[want.Key]; isCrit {
			c.Critical = true
			c.Safe = ok && crit.safe(s.Value)
		}
		out = append(out, c)
	}
	return out
}
