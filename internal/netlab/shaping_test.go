package netlab

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestLabShaping checks the TBFs are installed as asked and hold an iperf3
// run roughly to their rate in each direction. It is a short measurement
// on a shared machine, so the band is generous.
func TestLabShaping(t *testing.T) {
	const down, up = 50e6, 20e6
	l := newLab(t, Options{DownRate: down, UpRate: up, OffloadsOff: true})
	ctx := t.Context()
	m := l.Members[0]

	for _, c := range []struct {
		ns   *NS
		dev  string
		want string
	}{
		{l.Exit, ExitUnderlayIface, "rate 50Mbit burst 25000b"},
		{l.Hub, HubExitPort, "rate 20Mbit burst 16Kb"},
	} {
		out, err := c.ns.Exec(ctx, "tc", "qdisc", "show", "dev", c.dev)
		if err != nil || !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), c.want) {
			t.Errorf("%s %s qdisc = %q (%v), want tbf %s", c.ns.Role, c.dev, out, err, c.want)
		}
		out, err = c.ns.Exec(ctx, "ethtool", "-k", c.dev)
		for _, off := range []string{"generic-segmentation-offload: off", "generic-receive-offload: off", "tcp-segmentation-offload: off"} {
			if err != nil || !strings.Contains(string(out), off) {
				t.Errorf("%s %s: want %q in ethtool -k (%v)", c.ns.Role, c.dev, off, err)
			}
		}
	}
	if out, err := m.Exec(ctx, "tc", "qdisc", "show", "dev", MemberIface); err != nil || strings.Contains(string(out), "tbf") {
		t.Errorf("member link shaped: %q (%v)", out, err)
	}

	if _, err := m.StartIperfServer(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		opts IperfOptions
		rate float64
	}{
		// Download: the exit sends towards the member through mlan0.
		{"down", IperfOptions{Server: m.Addr4, Duration: 2 * time.Second, Interval: 500 * time.Millisecond}, down},
		// Upload: the member sends (server -R) through the hub's exit port.
		{"up", IperfOptions{Server: m.Addr4, Duration: 2 * time.Second, Reverse: true}, up},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := l.Exit.Iperf(ctx, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			ratio := r.ReceivedBps / c.rate
			t.Logf("%s: %.1f Mbit/s received of %.0f (%.2f), %d intervals, %d retransmits",
				c.name, r.ReceivedBps/1e6, c.rate/1e6, ratio, len(r.Intervals), r.Retransmits)
			if ratio < 0.6 || ratio > 1.1 {
				t.Errorf("goodput %.1f Mbit/s is %.2f of the %.0f Mbit/s TBF, want 0.6..1.1", r.ReceivedBps/1e6, ratio, c.rate/1e6)
			}
			if len(r.Intervals) == 0 || r.Reverse != c.opts.Reverse {
				t.Errorf("report: %d intervals, reverse %v", len(r.Intervals), r.Reverse)
			}
		})
	}
}

// TestIperfClientError surfaces iperf3's own error text.
func TestIperfClientError(t *testing.T) {
	l := newLab(t, Options{})
	_, err := l.Exit.Iperf(t.Context(), IperfOptions{Server: netip.MustParseAddr(Internet4), Port: 9, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "unable to connect") {
		t.Fatalf("iperf3 to a closed port: %v", err)
	}
}
