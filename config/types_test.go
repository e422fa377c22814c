package config

import (
	"net/netip"
	"strings"
	"testing"
)

// TestSelfParsingTypes: the config struct holds only parsed values; each
// type parses its own text, "" means unset, and prints back.
func TestSelfParsingTypes(t *testing.T) {
	var r Rate
	if err := r.UnmarshalText([]byte("95mbit")); err != nil || r != 95_000_000 {
		t.Fatalf("rate %d %v", r, err)
	}
	if err := r.UnmarshalText(nil); err != nil || r != 0 {
		t.Fatalf("empty rate %d %v", r, err)
	}
	if err := r.UnmarshalText([]byte("fast")); err == nil {
		t.Fatal("bad rate accepted")
	}
	var a AddrRange
	if err := a.UnmarshalText([]byte("198.51.100.10-198.51.100.20")); err != nil || !a.IsSet() || a[1] != netip.MustParseAddr("198.51.100.20") {
		t.Fatalf("range %v %v", a, err)
	}
	if b, _ := a.MarshalText(); string(b) != "198.51.100.10-198.51.100.20" {
		t.Fatalf("range text %s", b)
	}
	if err := a.UnmarshalText(nil); err != nil || a.IsSet() {
		t.Fatalf("empty range %v %v", a, err)
	}
	var p PortRange
	if err := p.UnmarshalText([]byte("1024-65535")); err != nil || p != (PortRange{1024, 65535}) {
		t.Fatalf("ports %v %v", p, err)
	}
	if err := p.UnmarshalText([]byte("9-1")); err == nil {
		t.Fatal("reversed ports accepted")
	}
	var l PrefixList
	if err := l.UnmarshalTOML([]any{"192.0.2.7/24", "2001:db8::1"}); err != nil || len(l) != 2 ||
		l[0].String() != "192.0.2.0/24" || l[1].String() != "2001:db8::1/128" {
		t.Fatalf("list %v %v", l, err)
	}
	for name, v := range map[string]any{"not a list": "192.0.2.0/24", "a number": []any{int64(5)},
		"garbage": []any{"nope"}, "mapped": []any{"::ffff:10.0.0.0/104"}} {
		if err := l.UnmarshalTOML(v); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestPaceRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want PaceRate
		auto bool
		text string
	}{
		{"", PaceRate{}, true, "auto"},
		{"auto", PaceRate{}, true, "auto"},
		{"AUTO", PaceRate{}, true, "auto"},
		{"off", PaceRate{Off: true}, false, "off"},
		{"0", PaceRate{Off: true}, false, "off"},
		{"95mbit", PaceRate{BitsPerSecond: 95_000_000}, false, "95000000"},
	} {
		var r PaceRate
		if err := r.UnmarshalText([]byte(tc.in)); err != nil || r != tc.want || r.Auto() != tc.auto {
			t.Errorf("%q: %+v auto %v err %v, want %+v", tc.in, r, r.Auto(), err, tc.want)
		}
		if b, _ := r.MarshalText(); string(b) != tc.text {
			t.Errorf("%q marshals to %q, want %q", tc.in, b, tc.text)
		}
	}
	for _, bad := range []string{"fast", "10kbit", "-5mbit", "1tbit"} {
		r := PaceRate{BitsPerSecond: 7}
		if err := r.UnmarshalText([]byte(bad)); err == nil || !strings.Contains(err.Error(), `"auto" or "off"`) {
			t.Errorf("%q: err %v", bad, err)
		}
	}
}
