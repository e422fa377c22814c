package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	snmpFixture = `Ip: Forwarding DefaultTTL InReceives InHdrErrors
Ip: 1 64 12345 356
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 1000 2 17 900 15 1 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
`
	snmp6Fixture = `Udp6InDatagrams                 	55
Udp6InErrors                    	3
Udp6RcvbufErrors                	2
Udp6SndbufErrors                	1
Ip6InHdrErrors                  	68
`
	netDevFixture = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
exitd0: 5000000    4000    1    2    0     0          0         0 90000000    70000    3    4    0     0       0          0
  wan0: 95000000   80000    0    7    0     0          0         0  6000000     5000    0    0    0     0       0          0
`
	statFixture = `cpu  100 5 50 800 40 0 5 0 0 0
cpu0 50 2 25 400 20 0 3 0 0 0
cpu1 50 3 25 400 20 0 2 0 0 0
intr 1234
`
	selfStatFixture = `4242 (exitd (main)) S 1 4242 4242 0 -1 4194560 2000 0 0 0 120 30 0 0 20 0 12 0 100 1000000 2560 18446744073709551615`
	meminfoFixture  = `MemTotal:        2048000 kB
MemFree:          100000 kB
MemAvailable:    1024000 kB
SwapTotal:             0 kB
SwapFree:              0 kB
`
)

func fakeProc(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestHostRead(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"net/snmp": snmpFixture, "net/snmp6": snmp6Fixture, "net/dev": netDevFixture,
		"sys/net/netfilter/nf_conntrack_count": "42\n", "sys/net/netfilter/nf_conntrack_max": "262144\n",
	})
	st, err := Host{Root: root, TUN: "exitd0", WAN: "wan0"}.Read()
	if err != nil {
		t.Fatal(err)
	}
	want := HostStats{
		UDP4:         UDPStats{InErrors: 17, RcvbufErrors: 15, SndbufErrors: 1},
		UDP6:         UDPStats{InErrors: 3, RcvbufErrors: 2, SndbufErrors: 1},
		IPHdrErrors4: 356, IPHdrErrors6: 68,
		TUN: LinkStats{Present: true, RxBytes: 5000000, RxPackets: 4000, RxErrors: 1, RxDropped: 2,
			TxBytes: 90000000, TxPackets: 70000, TxErrors: 3, TxDropped: 4},
		WAN: LinkStats{Present: true, RxBytes: 95000000, RxPackets: 80000, RxDropped: 7,
			TxBytes: 6000000, TxPackets: 5000},
		Conntrack: 42, ConntrackMax: 262144,
	}
	if st != want {
		t.Fatalf("got  %+v\nwant %+v", st, want)
	}
}

func TestHostReadMissing(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{"nothing", map[string]string{}, "snmp"},
		{"no Udp lines", map[string]string{"net/snmp": "Ip: a\nIp: 1\n", "net/dev": netDevFixture}, "no Udp"},
		{"empty net/dev", map[string]string{"net/snmp": snmpFixture, "net/dev": "header\n"}, "no interfaces"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := Host{Root: fakeProc(t, tc.files), TUN: "exitd0"}.Read()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if st.Conntrack != -1 || st.ConntrackMax != -1 {
				t.Fatalf("conntrack unknown must be -1: %+v", st)
			}
		})
	}
	// No IPv6: snmp6 absent is not an error.
	_, err := Host{Root: fakeProc(t, map[string]string{"net/snmp": snmpFixture, "net/dev": netDevFixture})}.Read()
	if err != nil {
		t.Fatal(err)
	}
}

func TestHostReadProc(t *testing.T) {
	root := fakeProc(t, map[string]string{"stat": statFixture, "self/stat": selfStatFixture, "meminfo": meminfoFixture})
	st, err := Host{Root: root}.ReadProc()
	if err != nil {
		t.Fatal(err)
	}
	page := uint64(os.Getpagesize())
	want := ProcStats{CPUBusy: 160, CPUTotal: 1000, SelfCPU: 150, NCPU: 2, SelfRSS: 2560 * page,
		MemTotal: 2048000 * 1024, MemAvailable: 1024000 * 1024}
	if st != want {
		t.Fatalf("got  %+v\nwant %+v", st, want)
	}
}

func TestParseErrors(t *testing.T) {
	if _, _, _, err := parseStat([]byte("intr 1\n")); err == nil {
		t.Error("stat without cpu line accepted")
	}
	if _, _, _, err := parseStat([]byte("cpu  1 x 3\n")); err == nil {
		t.Error("bad cpu field accepted")
	}
	for _, bad := range []string{"4242 no paren", "1 (x) S 1 2 3"} {
		if _, _, err := parseSelfStat([]byte(bad)); err == nil {
			t.Errorf("self/stat %q accepted", bad)
		}
	}
}

func TestHostReadsRealProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no procfs")
	}
	st, err := Host{}.ReadProc()
	if err != nil {
		t.Fatal(err)
	}
	if st.CPUTotal == 0 || st.SelfRSS == 0 || st.MemTotal == 0 || st.NCPU == 0 {
		t.Fatalf("implausible: %+v", st)
	}
	if _, err := (Host{TUN: "lo"}).Read(); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseProc(f *testing.F) {
	for _, s := range []string{snmpFixture, netDevFixture, statFixture, selfStatFixture, meminfoFixture, snmp6Fixture} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parseSNMP(b)
		parseSNMP6(b)
		parseNetDev(b)
		parseStat(b)
		parseSelfStat(b)
		parseMeminfo(b)
	})
}
