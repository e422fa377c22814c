package netlab

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"zero", Options{}, ""},
		{"many members", Options{Members: 40, ExtraMemberAddrs: 1000}, ""},
		{"shaped", Options{DownRate: 50e6, UpRate: 10e6, Burst: MinBurst, QueueLatency: time.Millisecond}, ""},
		{"prefix", Options{Prefix: "abcdefgh"}, ""},
		{"negative members", Options{Members: -1}, "members -1 out of range"},
		{"too many members", Options{Members: MaxMembers + 1}, "out of range"},
		{"negative extra", Options{ExtraMemberAddrs: -1}, "extra member addresses -1"},
		{"too many extra", Options{ExtraMemberAddrs: MaxExtraAddrs + 1}, "extra member addresses"},
		{"tiny burst", Options{DownRate: 1e6, Burst: 1540}, "burst 1540 bytes below 16384"},
		{"negative latency", Options{QueueLatency: -time.Second}, "negative queue latency"},
		{"long prefix", Options{Prefix: "abcdefghi"}, "longer than 8"},
		{"three exits", Options{Exits: 3}, ""},
		{"negative exits", Options{Exits: -1}, "exits -1 out of range"},
		{"too many exits", Options{Exits: MaxExits + 1}, "exits 9 out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("validate error = %v, want it to contain %q", err, tc.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "netlab: "):
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestOptionsDefaultMembers(t *testing.T) {
	o := Options{}
	if err := o.validate(); err != nil || o.Members != 1 || o.Exits != 1 {
		t.Fatalf("validate() = %v, Members = %d, Exits = %d; want nil, 1, 1", err, o.Members, o.Exits)
	}
}

func TestBurstFor(t *testing.T) {
	tests := []struct {
		burst int
		rate  uint64
		want  int
	}{
		{0, 1e6, MinBurst}, // 4 ms of 1 Mbit/s is 500 B
		{0, 50e6, 25000},   // 4 ms of 50 Mbit/s
		{0, 10e9, 5000000}, // 4 ms of 10 Gbit/s
		{MinBurst * 4, 50e6, MinBurst * 4},
	}
	for _, tc := range tests {
		o := Options{Burst: tc.burst}
		if got := o.burstFor(tc.rate); got != tc.want {
			t.Errorf("burst %d rate %d: burstFor = %d, want %d", tc.burst, tc.rate, got, tc.want)
		}
	}
}

// TestNewRejectsBadOptions needs no root: validation comes first.
func TestNewRejectsBadOptions(t *testing.T) {
	l, err := New(context.Background(), Options{Burst: 100})
	if err == nil || l != nil || !strings.Contains(err.Error(), "burst") {
		t.Fatalf("New = %v, %v; want nil and a burst error", l, err)
	}
}
