package tuning

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  Entry // Pos and Comment ignored
		error string
	}{
		{name: "dotted", in: "net.ipv4.ip_forward = 1", want: Entry{Key: "net.ipv4.ip_forward", Value: "1"}},
		{name: "no spaces", in: "net.ipv4.ip_forward=1", want: Entry{Key: "net.ipv4.ip_forward", Value: "1"}},
		{name: "slash form", in: "vm/min_free_kbytes = 65536", want: Entry{Key: "vm.min_free_kbytes", Value: "65536"}},
		{name: "slash form keeps dots in names", in: "net/ipv4/conf/eth0.100/rp_filter = 1", want: Entry{Key: "net.ipv4.conf.eth0/100.rp_filter", Value: "1"}},
		{name: "dotted form with slash name", in: "net.ipv4.conf.eth0/100.rp_filter = 1", want: Entry{Key: "net.ipv4.conf.eth0/100.rp_filter", Value: "1"}},
		{name: "ignore errors", in: "-net.core.default_qdisc = fq", want: Entry{Key: "net.core.default_qdisc", Value: "fq", IgnoreErrors: true}},
		{name: "ignore errors with space", in: "- net.core.default_qdisc = fq", want: Entry{Key: "net.core.default_qdisc", Value: "fq", IgnoreErrors: true}},
		{name: "exclusion", in: "-net.ipv4.conf.all.rp_filter", want: Entry{Key: "net.ipv4.conf.all.rp_filter", IgnoreErrors: true, Exclude: true}},
		{name: "multi value", in: "net.ipv4.tcp_rmem = 4096\t65536   16777216", want: Entry{Key: "net.ipv4.tcp_rmem", Value: "4096\t65536   16777216"}},
		{name: "empty value", in: "kernel.core_pattern =", want: Entry{Key: "kernel.core_pattern", Value: ""}},
		{name: "equals in value", in: "a.b = c=d", want: Entry{Key: "a.b", Value: "c=d"}},
		{name: "hash kept in value", in: "a.b = 1 # no inline comments", want: Entry{Key: "a.b", Value: "1 # no inline comments"}},
		{name: "glob", in: "net.ipv4.conf.*.rp_filter = 2", want: Entry{Key: "net.ipv4.conf.*.rp_filter", Value: "2"}},
		{name: "not an assignment", in: "net.ipv4.ip_forward", error: "not an assignment"},
		{name: "empty key", in: "= 1", error: "empty key"},
		{name: "only dash", in: "-", error: "empty key"},
		{name: "empty component", in: "net..ipv4 = 1", error: "empty or dot-only"},
		{name: "leading dot", in: ".net.ipv4 = 1", error: "empty or dot-only"},
		{name: "trailing slash", in: "net/ipv4/ = 1", error: "empty or dot-only"},
		{name: "dot-dot component", in: "net/ipv4/../../../etc/passwd = x", error: "empty or dot-only"},
		{name: "single dot component", in: "net/./ipv4 = 1", error: "empty or dot-only"},
		{name: "space in key", in: "net ipv4 = 1", error: "whitespace"},
		{name: "control char in value", in: "a.b = 1\x00", error: "control character"},
		{name: "escape in value", in: "a.b = \x1b[31m", error: "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("t.conf", []byte(tt.in+"\n"))
			if tt.error != "" {
				var le *LineError
				if err == nil || !errors.As(err, &le) || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("Parse(%q) error = %v, want a *LineError containing %q", tt.in, err, tt.error)
				}
				if le.Pos.Line != 1 || len(p.Entries) != 0 {
					t.Fatalf("bad line: pos %v, entries %v", le.Pos, p.Entries)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if len(p.Entries) != 1 {
				t.Fatalf("Parse(%q) = %d entries", tt.in, len(p.Entries))
			}
			got := p.Entries[0]
			got.Pos, got.Comment = Position{}, ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseFile(t *testing.T) {
	in := "\xef\xbb\xbf# header\r\n" +
		"\r\n" +
		"# why forwarding\r\n" +
		"; and more\r\n" +
		"net.ipv4.ip_forward = 1\r\n" +
		"garbage line\r\n" +
		"net.core.rmem_max = 1\n" +
		"\n" +
		"net.core.rmem_max = 2\n" +
		"net.ipv4.ip_forward = 0\n" +
		"= broken\n"
	p, err := Parse("f.conf", []byte(in))
	if err == nil {
		t.Fatal("want errors for the two bad lines")
	}
	errs := unjoin(err)
	if len(errs) != 2 {
		t.Fatalf("got %d errors, want 2: %v", len(errs), err)
	}
	var le *LineError
	if !errors.As(errs[0], &le) || le.Pos != (Position{"f.conf", 6}) {
		t.Fatalf("first error %v, want at f.conf:6", errs[0])
	}
	if len(p.Entries) != 4 {
		t.Fatalf("entries = %d, want 4 (parsing continues past bad lines)", len(p.Entries))
	}
	if c := p.Entries[0].Comment; c != "why forwarding and more" {
		t.Errorf("comment = %q", c)
	}
	if c := p.Entries[1].Comment; c != "" {
		t.Errorf("comment after a bad line = %q, want none", c)
	}
	wantDups := []Duplicate{
		{Key: "net.core.rmem_max", First: Position{"f.conf", 7}, Second: Position{"f.conf", 9}},
		{Key: "net.ipv4.ip_forward", First: Position{"f.conf", 5}, Second: Position{"f.conf", 10}},
	}
	if !reflect.DeepEqual(p.Duplicates, wantDups) {
		t.Errorf("duplicates = %+v, want %+v", p.Duplicates, wantDups)
	}
	s := p.Settings()
	if len(s) != 2 || s[0].Key != "net.ipv4.ip_forward" || s[0].Value != "0" || s[0].Pos.Line != 10 || s[1].Value != "2" {
		t.Errorf("Settings = %+v: want first-seen order, last value", s)
	}
	if e, ok := p.Lookup("net.ipv4.ip_forward"); !ok || e.Value != "0" {
		t.Errorf("Lookup = %+v %v", e, ok)
	}
	if _, ok := p.Lookup("nope"); ok {
		t.Error("Lookup of a missing key succeeded")
	}
	if got := p.Keys(); !reflect.DeepEqual(got, []string{"net.ipv4.ip_forward", "net.core.rmem_max"}) {
		t.Errorf("Keys = %v", got)
	}
}

func TestParseExclusionIsNotDuplicate(t *testing.T) {
	p, err := Parse("x", []byte("net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\nnet.ipv4.conf.all.rp_filter = 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Duplicates) != 0 {
		t.Errorf("duplicates = %v", p.Duplicates)
	}
	if s := p.Settings(); len(s) != 2 {
		t.Errorf("Settings = %v, want the glob and the explicit key", s)
	}
}

func TestParseLongLine(t *testing.T) {
	long := "a.b = " + strings.Repeat("x", 2<<20) + "\n"
	if _, err := Parse("long", []byte(long)); err == nil {
		t.Fatal("a line over 1 MiB must be an error, not a hang or a panic")
	}
}

func FuzzParse(f *testing.F) {
	seeds := []string{
		"net.ipv4.ip_forward = 1\n",
		"-net.core.default_qdisc = fq\n# c\n; c\n",
		"net/ipv4/conf/eth0.100/rp_filter=1",
		"-net.ipv4.conf.all.rp_filter\nnet.ipv4.conf.*.rp_filter = 2",
		"a.b = 4096\t65536 16777216\r\n",
		"net/../x = 1", "= =", "\xef\xbb\xbf-", "a..b=1", "a/./b=1",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	root := filepath.Join(string(filepath.Separator), "proc", "sys")
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _ := Parse("fuzz", data)
		for _, e := range p.Entries {
			again, err := NormalizeKey(e.Key)
			if err != nil || again != e.Key {
				t.Fatalf("key %q does not round-trip: %q %v", e.Key, again, err)
			}
			if strings.ContainsAny(e.Value, "\n\r\x00") {
				t.Fatalf("value %q holds a line break or NUL", e.Value)
			}
			path := Sysctl{Root: root}.Path(e.Key)
			if !strings.HasPrefix(path, root+string(filepath.Separator)) {
				t.Fatalf("key %q escapes the sysctl root: %s", e.Key, path)
			}
			if e.Pos.Line < 1 {
				t.Fatalf("entry without a line: %+v", e)
			}
		}
		_ = Lint(p) // must not panic on anything Parse accepts
	})
}
