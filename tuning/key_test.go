package tuning

import "testing"

func TestNormalizeKey(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"net.ipv4.ip_forward", "net.ipv4.ip_forward", true},
		{"net/ipv4/ip_forward", "net.ipv4.ip_forward", true},
		{"net/ipv4/conf/eth0.100/rp_filter", "net.ipv4.conf.eth0/100.rp_filter", true},
		{"kernel.sysrq", "kernel.sysrq", true},
		{"fs.file-max", "fs.file-max", true},
		{"x", "x", true},
		{"", "", false},
		{"net..ipv4", "", false},
		{"net.ipv4.", "", false},
		{"/net/ipv4", "", false},
		{"net/../etc", "", false},
		{"net/ipv4/ip_forward\t", "", false},
		{"net.ipv4.ip\x7fforward", "", false},
	}
	for _, tt := range tests {
		got, err := NormalizeKey(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("NormalizeKey(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestKeyPath(t *testing.T) {
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":              "net/ipv4/ip_forward",
		"net.ipv4.conf.eth0/100.rp_filter": "net/ipv4/conf/eth0.100/rp_filter",
	} {
		if got := keyPath(key); got != want {
			t.Errorf("keyPath(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestNormalizeValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"1", "1"},
		{"1\n", "1"},
		{"  1  ", "1"},
		{"4096\t131072\t6291456", "4096 131072 6291456"},
		{"4096   131072 6291456", "4096 131072 6291456"},
		{"010", "8"},   // the kernel parses base 0
		{"0x10", "16"}, // hex
		{"-1", "-1"},   // negative
		{"08", "08"},   // not a number the kernel accepts; left alone
		{"0b1", "0b1"}, // Go syntax the kernel does not know
		{"1_000", "1_000"},
		{"fq_codel", "fq_codel"},
		{"32768 61000", "32768 61000"},
		{"", ""},
		{"-", "-"},
		{"0x", "0x"},
	}
	for _, tt := range tests {
		if got := NormalizeValue(tt.in); got != tt.want {
			t.Errorf("NormalizeValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
