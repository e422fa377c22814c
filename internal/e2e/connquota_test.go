package e2e

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"exitd/control"
	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

// Fair state: one member opening flows as fast as it can must not take
// the conntrack table from the others. Member A opens 60,000 UDP flows in
// 3 s while member B opens 100 TCP connections. With a quota of 2,000, A
// is held at it (its drops counted, shown by exitctl status) and all of
// B's connections succeed; with quotas off the same flood leaves A with
// tens of thousands of tracked flows, so the test can fail. (Filling the
// kernel's whole table — 262,144 entries, a global sysctl a test may not
// change — so that B's connections fail takes a minute of CPU through
// userspace WireGuard on 2 vCPUs; `exitlab conn-bench` shows that.)
func TestConnQuotaProtectsOthers(t *testing.T) {
	testenv.RequireRoot(t)
	t.Run("quota on", func(t *testing.T) {
		r := connQuotaRun(t, "[conntrack]\nmax_conns_per_member = 2000\nnew_conn_rate = -1\n")
		if r.bOK != connQuotaDials {
			t.Errorf("B: %d of %d connections succeeded with quotas on", r.bOK, connQuotaDials)
		}
		a := r.status.atLimit("a")
		if a == nil || a.QuotaDrops < uint64(r.sent)/2 || a.Conns > 2000+100 {
			t.Fatalf("A (%d flows sent) in status: %+v, want held at its quota of 2000 with its drops counted", r.sent, a)
		}
		if r.status.Conntrack.Quota != 2000 {
			t.Errorf("status quota %d, want 2000", r.status.Conntrack.Quota)
		}
		if b := r.status.atLimit("b"); b != nil {
			t.Errorf("B was dropped: %+v", b)
		}
		t.Logf("quota on: A sent %d flows, %d dropped at its quota, %d tracked; B %d/%d; conntrack %d of %d",
			r.sent, a.QuotaDrops, a.Conns, r.bOK, connQuotaDials, r.fill, r.ctMax)
	})
	t.Run("quota off", func(t *testing.T) {
		r := connQuotaRun(t, "[conntrack]\nmax_conns_per_member = -1\nnew_conn_rate = -1\n")
		if r.status.Conntrack.Quota != 0 || r.status.atLimit("a") != nil {
			t.Errorf("quotas off, yet status says quota %d, A %+v", r.status.Conntrack.Quota, r.status.atLimit("a"))
		}
		if r.fill < r.sent/2 {
			t.Errorf("quotas off: A's %d flows left only %d tracked connections; the quota-on run proves nothing", r.sent, r.fill)
		}
		t.Logf("quota off: A sent %d flows; B %d/%d; conntrack %d of %d", r.sent, r.bOK, connQuotaDials, r.fill, r.ctMax)
	})
}

const connQuotaDials = 100

type connQuotaResult struct {
	sent, bOK   int
	fill, ctMax int
	status      quotaStatus
}

type quotaStatus struct{ control.Status }

func (s quotaStatus) atLimit(label string) *control.MemberConns {
	if s.Conntrack == nil {
		return nil
	}
	for i, m := range s.Conntrack.AtLimit {
		if m.Label == label {
			return &s.Conntrack.AtLimit[i]
		}
	}
	return nil
}

// connQuotaRun floods from A and then dials from B, with extra appended
// to exitd's config.
func connQuotaRun(t *testing.T, extra string) connQuotaResult {
	l := netlab.NewT(t, netlab.Options{Members: 2})
	ctx := context.Background()
	internet := netip.MustParseAddr(netlab.Internet4)
	web, err := l.Internet.ServeHTTP(ctx, netip.AddrPortFrom(internet, 8080))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { web.Close() })

	n, err := harness.StartNode(ctx, l, harness.NodeOptions{Bin: bins, Dir: shortTempDir(t), Extra: extra})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Proc.Stop() })
	a, err := n.AddMember(ctx, l.Members[0], "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.AddMember(ctx, l.Members[1], "b")
	if err != nil {
		t.Fatal(err)
	}
	if got := dialMany(t, b.NS, netip.AddrPortFrom(internet, 8080), 5); got != 5 {
		t.Fatalf("B reaches the internet host %d of 5 times before the flood", got)
	}
	var r connQuotaResult
	r.ctMax = readNetSysctl(t, l.Exit, "netfilter/nf_conntrack_max")
	r.sent = floodFlows(t, a.NS, internet, 60_000, 20_000)
	r.fill = readNetSysctl(t, l.Exit, "netfilter/nf_conntrack_count")
	r.bOK = dialMany(t, b.NS, netip.AddrPortFrom(internet, 8080), connQuotaDials)
	// The per-member view is a cached walk of the table, at most 5 s old:
	// wait for one taken after the flood (it counts B's connections).
	if err := netlab.WaitFor(ctx, 15*time.Second, func() bool {
		st, err := control.NewClient(n.Socket).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r.status = quotaStatus{st}
		return st.Conntrack != nil && st.Conntrack.Members > 0
	}); err != nil {
		t.Fatalf("status never showed members' tracked connections: %+v", r.status.Conntrack)
	}
	return r
}

// readNetSysctl reads /proc/sys/net/<key> inside ns.
func readNetSysctl(t *testing.T, ns *netlab.NS, key string) int {
	t.Helper()
	var v int
	if err := ns.Run(func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys/net", key))
		if err != nil {
			return err
		}
		v, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	}); err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return v
}

// floodFlows opens n UDP flows from ns to dst (one datagram from one
// socket to each of n ports from 1024 on) at perSecond flows a second,
// and returns n.
func floodFlows(t *testing.T, ns *netlab.NS, dst netip.Addr, n, perSecond int) int {
	t.Helper()
	var fd int
	if err := ns.Run(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	payload := []byte("exitd-flow")
	perTick := perSecond / 100
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	for opened := 0; opened < n; {
		<-ticker.C // pace: perTick new flows per 10 ms
		for i := 0; i < perTick && opened < n; i++ {
			// ENOBUFS (the device queue is full) loses a flow; the
			// assertions allow for it.
			unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Addr: dst.As4(), Port: 1024 + opened})
			opened++
		}
	}
	return n
}

// dialMany opens n TCP connections from ns to dst at once (2 s timeout
// each) and returns how many were established.
func dialMany(t *testing.T, ns *netlab.NS, dst netip.AddrPort, n int) int {
	t.Helper()
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c net.Conn
			err := ns.Run(func() error {
				var err error
				c, err = net.DialTimeout("tcp", dst.String(), 2*time.Second)
				return err
			})
			if err == nil {
				ok.Add(1)
				c.Close()
			} else if !errors.Is(err, os.ErrDeadlineExceeded) && !strings.Contains(err.Error(), "timeout") {
				t.Logf("dial %s: %v", dst, err)
			}
		}()
	}
	wg.Wait()
	return int(ok.Load())
}
