package metrics

import (
	"math"
	"path/filepath"
	"strconv"
	"testing"
)

func TestParseSNMPTable(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    UDPStats
		wantErr bool
	}{
		{"fixture", snmpFixture, UDPStats{InErrors: 17, RcvbufErrors: 15, SndbufErrors: 1}, false},
		{"empty", "", UDPStats{}, true},
		{"header only", "Udp: InErrors RcvbufErrors\n", UDPStats{}, true},
		{"columns reordered", "Udp: RcvbufErrors InErrors\nUdp: 4 9\n", UDPStats{InErrors: 9, RcvbufErrors: 4}, false},
		{"fewer values than names", "Udp: InErrors RcvbufErrors SndbufErrors\nUdp: 1\n", UDPStats{InErrors: 1}, false},
		{"garbage value reads 0", "Udp: InErrors RcvbufErrors\nUdp: x 3\n", UDPStats{RcvbufErrors: 3}, false},
		{"max uint64", "Udp: InErrors\nUdp: 18446744073709551615\n", UDPStats{InErrors: math.MaxUint64}, false},
		{"UdpLite ignored", "UdpLite: InErrors\nUdpLite: 5\n", UDPStats{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSNMP([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseSNMP6Table(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want UDPStats
	}{
		{"fixture", snmp6Fixture, UDPStats{InErrors: 3, RcvbufErrors: 2, SndbufErrors: 1}},
		{"empty", "", UDPStats{}},
		{"bad value skipped", "Udp6InErrors x\nUdp6RcvbufErrors 4\n", UDPStats{RcvbufErrors: 4}},
		{"extra fields skipped", "Udp6InErrors 1 2\n", UDPStats{}},
		{"UdpLite6 not counted", "UdpLite6InErrors 9\n", UDPStats{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseSNMP6([]byte(tc.in)); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseNetDevTable(t *testing.T) {
	links, err := parseNetDev([]byte(netDevFixture))
	if err != nil {
		t.Fatal(err)
	}
	want := LinkStats{Present: true, RxBytes: 5000000, RxPackets: 4000, RxErrors: 1, RxDropped: 2,
		TxBytes: 90000000, TxPackets: 70000, TxErrors: 3, TxDropped: 4}
	if got := links["exitd0"]; got != want {
		t.Fatalf("exitd0 %+v, want %+v", got, want)
	}
	if len(links) != 3 {
		t.Fatalf("%d links", len(links))
	}
	for _, bad := range []string{"", "lo: 1 2 3\n", "Inter-| Receive\n face |bytes\n", "x: " + repeatField("y", 16) + "\n"} {
		if got, err := parseNetDev([]byte(bad)); err == nil || len(got) != 0 {
			t.Errorf("%q: %v, %v", bad, got, err)
		}
	}
	if got, _ := parseNetDev([]byte("eth0:" + repeatField("7", 16) + "\n")); !got["eth0"].Present || got["eth0"].TxDropped != 7 {
		t.Errorf("no space after colon: %+v", got)
	}
}

func repeatField(v string, n int) string {
	s := ""
	for range n {
		s += " " + v
	}
	return s
}

func TestParseStatTable(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		busy, total uint64
		ncpu        int
		wantErr     bool
	}{
		{"fixture", statFixture, 160, 1000, 2, false},
		{"no per-cpu lines: one CPU", "cpu  1 0 1 8 0 0 0 0 0 0\n", 2, 10, 1, false},
		{"guest fields not counted twice", "cpu  10 0 0 10 0 0 0 0 99 99\n", 10, 20, 1, false},
		{"short cpu line", "cpu  5 5\n", 10, 10, 1, false},
		{"all idle", "cpu  0 0 0 100 0 0 0 0 0 0\ncpu0 0 0 0 100 0 0 0 0 0 0\n", 0, 100, 1, false},
		{"negative field", "cpu  -1 0 0 0\n", 0, 0, 0, true},
		{"empty", "", 0, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			busy, total, ncpu, err := parseStat([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			if !tc.wantErr && (busy != tc.busy || total != tc.total || ncpu != tc.ncpu) {
				t.Fatalf("busy %d total %d ncpu %d, want %d %d %d", busy, total, ncpu, tc.busy, tc.total, tc.ncpu)
			}
		})
	}
}

func TestParseSelfStatTable(t *testing.T) {
	cpu, rss, err := parseSelfStat([]byte(selfStatFixture))
	if err != nil || cpu != 150 || rss != 2560 {
		t.Fatalf("fixture: cpu %d rss %d %v", cpu, rss, err)
	}
	fields := func(utime, rss string) string {
		f := []string{"S"}
		for i := 4; i <= 24; i++ {
			switch i {
			case 14:
				f = append(f, utime)
			case 24:
				f = append(f, rss)
			default:
				f = append(f, strconv.Itoa(i))
			}
		}
		s := "1 (a) b)"
		for _, v := range f {
			s += " " + v
		}
		return s
	}
	if cpu, rss, err := parseSelfStat([]byte(fields("7", "-5"))); err != nil || cpu != 7+15 || rss != 0 {
		t.Fatalf("negative rss: cpu %d rss %d %v", cpu, rss, err)
	}
	if _, _, err := parseSelfStat([]byte(fields("x", "1"))); err == nil {
		t.Fatal("bad utime accepted")
	}
}

func TestParseMeminfoTable(t *testing.T) {
	got := parseMeminfo([]byte("MemTotal: 2 kB\nHugePages_Total: 3\nBad line\nEmpty:\nX: y kB\n"))
	want := map[string]uint64{"MemTotal": 2048, "HugePages_Total": 3}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

func TestReadIntTable(t *testing.T) {
	root := fakeProc(t, map[string]string{"ok": "262144\n", "neg": "-3", "bad": "12a", "empty": ""})
	for name, want := range map[string]int64{"ok": 262144, "neg": -3, "bad": -1, "empty": -1, "missing": -1} {
		if got := readInt(filepath.Join(root, name)); got != want {
			t.Errorf("%s: %d, want %d", name, got, want)
		}
	}
}
