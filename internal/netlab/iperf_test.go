package netlab

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseIperf(t *testing.T) {
	r, err := ParseIperf(readTestdata(t, "iperf_p2.json"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Streams != 2 || r.Reverse || len(r.Intervals) != 2 {
		t.Fatalf("streams %d reverse %v intervals %d; want 2 false 2", r.Streams, r.Reverse, len(r.Intervals))
	}
	iv := r.Intervals[0]
	if len(iv.Streams) != 2 || iv.Streams[0] != 15189187411.251455 || iv.Sum != 30472717601.454784 {
		t.Fatalf("interval 0 = %+v", iv)
	}
	if iv.Start != 0 || iv.End != 500154*time.Microsecond {
		t.Fatalf("interval 0 span %v..%v", iv.Start, iv.End)
	}
	if r.Intervals[1].Start != iv.End {
		t.Fatalf("interval 1 starts at %v, want %v", r.Intervals[1].Start, iv.End)
	}
	if r.SentBps != 24277737950.0122 || r.ReceivedBps != 24174792615.96611 || r.Retransmits != 16256 {
		t.Fatalf("end = sent %v received %v retransmits %d", r.SentBps, r.ReceivedBps, r.Retransmits)
	}
}

func TestParseIperfNoSum(t *testing.T) {
	// Without an interval "sum", the sum and span come from the streams.
	in := `{"start":{"test_start":{"num_streams":2,"reverse":1}},
	  "intervals":[{"streams":[{"start":1,"end":2,"bits_per_second":3},{"start":1,"end":2,"bits_per_second":4}]}],
	  "end":{"sum_received":{"bits_per_second":7}}}`
	r, err := ParseIperf([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	iv := r.Intervals[0]
	if !r.Reverse || iv.Sum != 7 || iv.Start != time.Second || iv.End != 2*time.Second || r.ReceivedBps != 7 || r.SentBps != 0 {
		t.Fatalf("result %+v", r)
	}
}

func TestParseIperfErrors(t *testing.T) {
	r, err := ParseIperf(readTestdata(t, "iperf_error.json"))
	if err == nil || !strings.Contains(err.Error(), "unable to connect to server") {
		t.Fatalf("error = %v, want iperf3's connect error", err)
	}
	if r == nil || len(r.Intervals) != 0 {
		t.Fatalf("partial result %+v", r)
	}
	for _, bad := range []string{"", "not json", `{"intervals": 3}`} {
		if _, err := ParseIperf([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "netlab: parse iperf3 json") {
			t.Errorf("ParseIperf(%q) error = %v", bad, err)
		}
	}
}

func TestIperfArgs(t *testing.T) {
	srv := netip.MustParseAddr(ExitUnderlay4)
	tests := []struct {
		name    string
		opts    IperfOptions
		want    []string // must appear, in order, as adjacent args
		wantErr string
	}{
		{"defaults", IperfOptions{Server: srv, Duration: 2 * time.Second},
			[]string{"-c 198.18.0.1", "-p 5201", "-J", "-t 2", "-i 1.000", "-P 1"}, ""},
		{"all", IperfOptions{Server: srv, Port: 9, Duration: 3 * time.Second, Interval: 100 * time.Millisecond,
			Streams: 8, Reverse: true, Bind: netip.MustParseAddr("198.18.128.1"), Bitrate: 5e6, Omit: time.Second},
			[]string{"-p 9", "-t 3", "-i 0.100", "-P 8", "-R", "-B 198.18.128.1", "-b 5000000", "-O 1"}, ""},
		{"no server", IperfOptions{Duration: time.Second}, nil, "no server"},
		{"short", IperfOptions{Server: srv, Duration: 500 * time.Millisecond}, nil, "whole number of seconds"},
		{"fractional", IperfOptions{Server: srv, Duration: 1500 * time.Millisecond}, nil, "whole number of seconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args, err := tc.opts.args()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			joined := " " + strings.Join(args, " ") + " "
			for _, w := range tc.want {
				if !strings.Contains(joined, " "+w+" ") {
					t.Errorf("args %q lack %q", args, w)
				}
			}
			if !tc.opts.Reverse && slices.Contains(args, "-R") {
				t.Errorf("args %q reverse without Reverse", args)
			}
		})
	}
}

func TestTCPListens(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1451 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:0050 0100007F:D1C2 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
`
	tests := []struct {
		port int
		want bool
	}{
		{5201, true}, // 0x1451, LISTEN
		{80, false},  // 0x0050, ESTABLISHED only
		{81, false},
	}
	for _, tc := range tests {
		if got := tcpListens([]byte(table), tc.port); got != tc.want {
			t.Errorf("tcpListens(%d) = %v, want %v", tc.port, got, tc.want)
		}
	}
	table6 := `  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1451 00000000000000000000000000000000:0000 0A 00000000:00000000`
	if !tcpListens([]byte(table6), 5201) {
		t.Errorf("tcpListens missed an IPv6 listener")
	}
}

func FuzzParseIperf(f *testing.F) {
	f.Add(readTestdata(f, "iperf_p2.json"))
	f.Add(readTestdata(f, "iperf_error.json"))
	f.Add([]byte(`{"intervals":[{"streams":[{"start":1e308,"end":-1e308}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseIperf(b)
		if err == nil && r == nil {
			t.Fatal("nil result without error")
		}
		if r != nil && math.IsNaN(r.SentBps) {
			t.Fatal("NaN rate")
		}
	})
}

// TestServerBusy: iperf3's refusal while the server finishes the previous
// test is retried (a fairness run failed on it); other errors are not.
func TestServerBusy(t *testing.T) {
	busy := fmt.Errorf("netlab: m1: iperf3 -c x: %w", errors.Join(errors.New("exit status 1"),
		errors.New("netlab: iperf3: the server is busy running a test. try again later")))
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{busy, true},
		{errors.New("netlab: iperf3: unable to connect to server: Connection refused"), false},
	} {
		if got := serverBusy(tc.err); got != tc.want {
			t.Errorf("serverBusy(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
