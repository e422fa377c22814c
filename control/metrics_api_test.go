package control

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"exitd/report"
)

// metricsFake serves the observability endpoints; the member methods of
// the embedded nil Backend are never called here.
type metricsFake struct {
	Backend
	gotN     int
	gotSort  string
	gotSince time.Time
}

func (f *metricsFake) Load(context.Context) (Load, error) {
	return Load{RateOut: 1e6, Active: 2, Configured: 3, Conntrack: 5, ConntrackMax: 10,
		Scheduler: &SchedulerLoad{Discipline: "srr"}, Warnings: []string{"w"}}, nil
}

func (f *metricsFake) Top(_ context.Context, n int, sort string) (Top, error) {
	f.gotN, f.gotSort = n, sort
	return Top{Sort: sort, Members: []TopMember{{Label: "alice", RateOut: 5e5, State: "active"}}}, nil
}

func (f *metricsFake) Samples(_ context.Context, since time.Time) ([]report.Sample, error) {
	f.gotSince = since
	if since.IsZero() {
		return []report.Sample{{TimeMs: 1000, BytesOut: 7}, {TimeMs: 16000, IntervalMs: 15000, BytesOut: 9}}, nil
	}
	return nil, nil
}

func serveBackend(t *testing.T, b Backend) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "c.sock")
	s, err := Listen(ServerOptions{Path: path, Backend: b, Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return NewClient(path)
}

func TestMetricsEndpoints(t *testing.T) {
	f := &metricsFake{}
	c := serveBackend(t, f)
	ctx := context.Background()
	l, err := c.Load(ctx)
	if err != nil || l.RateOut != 1e6 || l.Scheduler.Discipline != "srr" || l.Warnings[0] != "w" {
		t.Fatalf("load %+v %v", l, err)
	}
	top, err := c.Top(ctx, 5, SortQueue)
	if err != nil || f.gotN != 5 || f.gotSort != SortQueue || top.Members[0].Label != "alice" {
		t.Fatalf("top %+v %v (n %d sort %s)", top, err, f.gotN, f.gotSort)
	}
	ss, err := c.Samples(ctx, time.Time{})
	if err != nil || len(ss) != 2 || ss[1].BytesOut != 9 || ss[1].IntervalMs != 15000 {
		t.Fatalf("samples %+v %v", ss, err)
	}
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ss, err = c.Samples(ctx, since)
	if err != nil || len(ss) != 0 || !f.gotSince.Equal(since) {
		t.Fatalf("samples since: %v %v (got since %v)", ss, err, f.gotSince)
	}
}

func TestParseTopQuery(t *testing.T) {
	tests := []struct {
		q       string
		n       int
		sort    string
		wantErr string
	}{
		{"", 20, SortRate, ""},
		{"n=1&sort=drops", 1, SortDrops, ""},
		{"n=1000&sort=queue", 1000, SortQueue, ""},
		{"n=0", 0, "", "n must be"},
		{"n=1001", 0, "", "n must be"},
		{"n=x", 0, "", "n must be"},
		{"sort=label", 0, "", "sort must be"},
	}
	for _, tc := range tests {
		t.Run(tc.q, func(t *testing.T) {
			v, _ := url.ParseQuery(tc.q)
			n, sort, err := ParseTopQuery(v)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || n != tc.n || sort != tc.sort {
				t.Fatalf("got %d %q %v", n, sort, err)
			}
		})
	}
}

func TestMetricsEndpointErrors(t *testing.T) {
	ctx := context.Background()
	c := serveBackend(t, &metricsFake{})
	if _, err := c.Top(ctx, 0, ""); code(err) != CodeInvalidRequest {
		t.Fatalf("top n=0: %v", err)
	}
	var out []report.Sample
	if err := c.do(ctx, "GET", "/v1/samples?since=yesterday", nil, &out); code(err) != CodeInvalidRequest || !strings.Contains(err.Error(), "RFC 3339") {
		t.Fatalf("bad since: %v", err)
	}
	// A backend without the observability part answers not_found.
	plain := serveBackend(t, struct{ Backend }{})
	if _, err := plain.Load(ctx); code(err) != CodeNotFound {
		t.Fatalf("plain backend load: %v", err)
	}
	if _, err := plain.Samples(ctx, time.Time{}); code(err) != CodeNotFound {
		t.Fatalf("plain backend samples: %v", err)
	}
}
