package tuning

import (
	"os"
	"path/filepath"
	"testing"
)

func TestConntrackFor(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		mem  uint64
		want int
	}{
		{0, ConntrackFloor},
		{256 << 20, ConntrackFloor},
		{1 * gib, 131072},
		{2 * gib, 262144},
		{4 * gib, 524288},
		{8 * gib, 1048576},
		{16 * gib, 2097152},
		{32 * gib, ConntrackCap},
		{1024 * gib, ConntrackCap},
	}
	for _, tt := range tests {
		got := ConntrackFor(tt.mem)
		if got.Max != tt.want || got.Buckets != tt.want {
			t.Errorf("ConntrackFor(%d MiB) = %+v, want max=buckets=%d", tt.mem>>20, got, tt.want)
		}
		// Slow reference: the largest power of two within 1/16 of RAM.
		if tt.want != ConntrackFloor && tt.want != ConntrackCap {
			if uint64(got.Max)*ConntrackEntryBytes > tt.mem/16 || uint64(2*got.Max)*ConntrackEntryBytes <= tt.mem/16 {
				t.Errorf("ConntrackFor(%d): %d is not the largest power of two within 1/16 of RAM", tt.mem, got.Max)
			}
		}
	}
}

func TestConntrackExplicit(t *testing.T) {
	if c := ConntrackExplicit(1000); c.Max != ConntrackFloor || c.Buckets != ConntrackFloor {
		t.Errorf("below the floor: %+v", c)
	}
	if c := ConntrackExplicit(3000000); c.Max != 3000000 || c.Buckets != 3000000 {
		t.Errorf("explicit: %+v", c)
	}
}

func TestMemTotal(t *testing.T) {
	tests := []struct {
		name, meminfo string
		want          uint64
		ok            bool
	}{
		{"normal", "MemTotal:       24683620 kB\nMemFree: 1 kB\n", 24683620 * 1024, true},
		{"not first", "MemFree: 1 kB\nMemTotal: 2048 kB\n", 2048 * 1024, true},
		{"missing", "MemFree: 1 kB\n", 0, false},
		{"bad number", "MemTotal: lots kB\n", 0, false},
		{"bad unit", "MemTotal: 5 MB\n", 0, false},
		{"absurd", "MemTotal: 99999999999999999 kB\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := procTree(t, nil)
			if err := os.WriteFile(filepath.Join(filepath.Dir(s.Root), "meminfo"), []byte(tt.meminfo), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := s.MemTotal()
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("MemTotal = %d, %v; want %d ok=%v", got, err, tt.want, tt.ok)
			}
		})
	}
	if _, err := (Sysctl{Root: filepath.Join(t.TempDir(), "sys")}).MemTotal(); err == nil {
		t.Error("MemTotal without meminfo succeeded")
	}
}

func TestSizeConntrack(t *testing.T) {
	s := procTree(t, nil)
	if _, err := SizeConntrack(s, 0); err == nil {
		t.Fatal("sizing without meminfo succeeded")
	}
	if c, err := SizeConntrack(s, 500000); err != nil || c.Max != 500000 {
		t.Fatalf("explicit: %+v %v", c, err)
	}
	os.WriteFile(filepath.Join(filepath.Dir(s.Root), "meminfo"), []byte("MemTotal: 8388608 kB\n"), 0o644)
	if c, err := SizeConntrack(s, 0); err != nil || c.Max != 1048576 {
		t.Fatalf("from memory: %+v %v", c, err)
	}
}

func TestWithConntrack(t *testing.T) {
	p, err := Parse("x", []byte("net.netfilter.nf_conntrack_max = 10000000\nnet.ipv4.ip_forward = 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	q := p.WithConntrack(Conntrack{Max: 131072, Buckets: 131072})
	if e, _ := p.Lookup(KeyConntrackMax); e.Value != "10000000" {
		t.Fatal("WithConntrack modified its receiver")
	}
	keys := q.Keys()
	want := []string{"net.ipv4.ip_forward", KeyBuckets, KeyConntrackMax}
	if len(keys) != 3 || keys[0] != want[0] || keys[1] != want[1] || keys[2] != want[2] {
		t.Fatalf("keys = %v, want %v", keys, want)
	}
	for _, k := range want[1:] {
		if e, _ := q.Lookup(k); e.Value != "131072" || !e.IgnoreErrors || e.Comment == "" {
			t.Errorf("%s = %+v", k, e)
		}
	}
}
