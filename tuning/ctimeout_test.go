package tuning

import (
	"errors"
	"testing"
	"time"
)

func TestLongestConntrackTimeout(t *testing.T) {
	f := newFake(map[string]string{
		"net.netfilter.nf_conntrack_tcp_timeout_established": "432000",
		"net.netfilter.nf_conntrack_udp_timeout":             "30",
		"net.netfilter.nf_conntrack_tcp_timeout_time_wait":   "120",
	})
	got, err := LongestConntrackTimeout(f)
	if err != nil || got != 5*24*time.Hour {
		t.Fatalf("got %v %v, want 120h", got, err)
	}
	f.set("net.netfilter.nf_conntrack_generic_timeout", "999999")
	if got, _ := LongestConntrackTimeout(f); got != 999999*time.Second {
		t.Fatalf("generic timeout not counted: %v", got)
	}
	f.set("net.netfilter.nf_conntrack_udp_timeout", "soon")
	if got, err := LongestConntrackTimeout(f); err != nil || got != 999999*time.Second {
		t.Fatalf("one bad value must not hide the rest: %v %v", got, err)
	}
	if _, err := LongestConntrackTimeout(newFake(map[string]string{})); err == nil {
		t.Fatal("no conntrack keys: no error")
	}
	e := newFake(map[string]string{"net.netfilter.nf_conntrack_udp_timeout": "30"})
	e.readErr["net.netfilter.nf_conntrack_udp_timeout"] = errors.New("EIO")
	if _, err := LongestConntrackTimeout(e); err == nil {
		t.Fatal("unreadable keys: no error")
	}
}
