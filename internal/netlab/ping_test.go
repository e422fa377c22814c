package netlab

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePing(t *testing.T) {
	us := time.Microsecond
	tests := []struct {
		file           string
		sent, received int
		min, p50, max  time.Duration
		loss           float64
	}{
		{"ping_ok.txt", 3, 3, 48 * us, 56 * us, 104 * us, 0},
		{"ping6_ok.txt", 3, 3, 34 * us, 40 * us, 59 * us, 0},
		{"ping_loss.txt", 2, 0, 0, 0, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			r, err := ParsePing(readTestdata(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if r.Sent != tc.sent || r.Received != tc.received || len(r.RTTs) != tc.received {
				t.Fatalf("sent %d received %d rtts %d; want %d %d", r.Sent, r.Received, len(r.RTTs), tc.sent, tc.received)
			}
			if r.Min != tc.min || r.P50 != tc.p50 || r.Max != tc.max || r.P99 != tc.max {
				t.Fatalf("min/p50/p99/max = %v/%v/%v/%v; want %v/%v/%v/%v", r.Min, r.P50, r.P99, r.Max, tc.min, tc.p50, tc.max, tc.max)
			}
			if r.Loss() != tc.loss {
				t.Fatalf("loss = %v, want %v", r.Loss(), tc.loss)
			}
		})
	}
}

func TestParsePingErrors(t *testing.T) {
	tests := []struct {
		name, out, wantErr string
	}{
		{"unreachable", string(readTestdata(t, "ping_unreachable.txt")), "no statistics line"},
		{"empty", "", "no statistics line"},
		{"bad rtt", "64 bytes from 1.2.3.4: icmp_seq=1 ttl=64 time=1.2.3 ms\n1 packets transmitted, 1 received", "bad rtt"},
		{"huge count", "99999999999999999999 packets transmitted, 1 received", "bad statistics"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePing([]byte(tc.out))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParsePing error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestParsePingPercentiles checks nearest-rank percentiles on 100 replies
// of 1..100 ms in shuffled order.
func TestParsePingPercentiles(t *testing.T) {
	var b strings.Builder
	for i := range 100 {
		ms := (i*37)%100 + 1
		b.WriteString("64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=")
		b.WriteString(strconv.Itoa(ms))
		b.WriteString(" ms\n")
	}
	b.WriteString("100 packets transmitted, 100 received, 0% packet loss, time 99ms\n")
	r, err := ParsePing([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	if r.Min != ms || r.P50 != 50*ms || r.P99 != 99*ms || r.Max != 100*ms {
		t.Fatalf("min/p50/p99/max = %v/%v/%v/%v; want 1ms/50ms/99ms/100ms", r.Min, r.P50, r.P99, r.Max)
	}
}

func TestPercentile(t *testing.T) {
	s := []time.Duration{1, 2, 3, 4}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.25, 1}, {0.5, 2}, {0.51, 3}, {0.99, 4}, {1, 4}} {
		if got := percentile(s, tc.q); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestPingLossNoProbes(t *testing.T) {
	if l := (&PingResult{}).Loss(); l != 1 {
		t.Fatalf("Loss with nothing sent = %v, want 1", l)
	}
}

func FuzzParsePing(f *testing.F) {
	for _, name := range []string{"ping_ok.txt", "ping6_ok.txt", "ping_loss.txt", "ping_unreachable.txt"} {
		f.Add(readTestdata(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParsePing(b)
		if err != nil {
			return
		}
		if len(r.RTTs) > 0 && (r.Min > r.P50 || r.P50 > r.P99 || r.P99 > r.Max) {
			t.Fatalf("unordered stats %+v", r)
		}
	})
}
