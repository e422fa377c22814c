package harness

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

// udp4 builds an IPv4 packet carrying a UDP datagram.
func udp4(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	p[8], p[9] = 64, 17
	copy(p[12:16], src.AsSlice())
	copy(p[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(p[20:22], sport)
	binary.BigEndian.PutUint16(p[22:24], dport)
	binary.BigEndian.PutUint16(p[24:26], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

func TestEchoFlow(t *testing.T) {
	exit, inet := netip.MustParseAddr(netlab.ExitWAN4), netip.MustParseAddr(netlab.Internet4)
	good := udp4(exit, inet, 40000, 5000, []byte("x"))
	src, dport, ok := echoFlow(good, inet)
	if !ok || src != netip.AddrPortFrom(exit, 40000) || dport != 5000 {
		t.Fatalf("echoFlow = %v %d %v", src, dport, ok)
	}
	frag := bytes.Clone(good)
	frag[6] = 0x20 // more fragments
	tcp := bytes.Clone(good)
	tcp[9] = 6
	tests := []struct {
		name string
		p    []byte
	}{
		{"another destination", udp4(exit, exit, 40000, 5000, nil)},
		{"a privileged port (DNS)", udp4(exit, inet, 40000, 53, nil)},
		{"the last port below the range", udp4(exit, inet, 40000, FlowPortFirst-1, nil)},
		{"a fragment", frag},
		{"TCP", tcp},
		{"truncated", good[:25]},
		{"IPv6", append([]byte{0x60}, good[1:]...)},
		{"empty", nil},
	}
	for _, tc := range tests {
		if _, _, ok := echoFlow(tc.p, inet); ok {
			t.Errorf("%s: answered", tc.name)
		}
	}
	if _, d, ok := echoFlow(udp4(exit, inet, 1, FlowPortLast, nil), inet); !ok || d != FlowPortLast {
		t.Error("the last port of the range is not answered")
	}
}

func TestPutAnswer(t *testing.T) {
	b := putAnswer(make([]byte, 64), 5000, 40000, []byte("hi"))
	want := []byte{0x13, 0x88, 0x9c, 0x40, 0, 10, 0, 0, 'h', 'i'}
	if !bytes.Equal(b, want) {
		t.Fatalf("% x, want % x", b, want)
	}
}

func TestFlowAt(t *testing.T) {
	tests := []struct{ k, sock, port int }{
		{0, 0, FlowPortFirst},
		{FlowPorts - 1, 0, FlowPortLast},
		{FlowPorts, 1, FlowPortFirst},
		{3*FlowPorts + 7, 3, FlowPortFirst + 7},
	}
	for _, tc := range tests {
		if s, p := flowAt(tc.k); s != tc.sock || p != tc.port {
			t.Errorf("flowAt(%d) = %d, %d; want %d, %d", tc.k, s, p, tc.sock, tc.port)
		}
	}
	if FlowPorts != 64512 {
		t.Errorf("FlowPorts %d", FlowPorts)
	}
}

func TestSinkCountsDropped(t *testing.T) {
	if d := (SinkCounts{In: 10, Out: 4}).Dropped(); d != 6 {
		t.Errorf("%d", d)
	}
	// Read between the two counters, Out can be ahead.
	if d := (SinkCounts{In: 4, Out: 5}).Dropped(); d != 0 {
		t.Errorf("%d", d)
	}
}

func TestParseNftCounters(t *testing.T) {
	// `nft -j list table ip exitlab_sink`, nft 1.0.6, abridged.
	out := `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
{"table": {"family": "ip", "name": "exitlab_sink", "handle": 3}},
{"counter": {"family": "ip", "name": "replies", "table": "exitlab_sink", "handle": 1, "packets": 7, "bytes": 280}},
{"counter": {"family": "ip", "name": "flows_in", "table": "exitlab_sink", "handle": 2, "packets": 12, "bytes": 480}},
{"chain": {"family": "ip", "table": "exitlab_sink", "name": "early", "handle": 4}}]}`
	m, err := ParseNftCounters([]byte(out))
	if err != nil || len(m) != 2 || m["replies"] != 7 || m["flows_in"] != 12 {
		t.Fatalf("%v %v", m, err)
	}
	if _, err := ParseNftCounters([]byte(`{"nftables": []}`)); err == nil {
		t.Error("no counters: no error")
	}
	if _, err := ParseNftCounters([]byte(`nope`)); err == nil {
		t.Error("not JSON: no error")
	}
}

func TestRulesText(t *testing.T) {
	echo := echoRules()
	for _, want := range []string{"table ip exitlab_echo", "priority raw", "notrack", "udp dport 1024-65535 drop"} {
		if !strings.Contains(echo, want) {
			t.Errorf("echo rules lack %q:\n%s", want, echo)
		}
	}
	sink := sinkRules(netip.MustParseAddr("203.0.113.2"), netip.MustParseAddr("10.99.0.2"))
	for _, want := range []string{
		"priority filter - 10", "priority filter + 10",
		`ip saddr 203.0.113.2 ip daddr 10.99.0.2 udp sport 1024-65535 counter name "replies" drop`,
		`ip saddr 10.99.0.2 ct state new counter name "flows_in"`,
		`ip saddr 10.99.0.2 ct state new counter name "flows_out"`,
	} {
		if !strings.Contains(sink, want) {
			t.Errorf("sink rules lack %q:\n%s", want, sink)
		}
	}
}

// TestEchoAnswersTwice: flows from the exit namespace to the internet
// host are each answered at once and again after the delay, and Close
// removes the host's table.
func TestEchoAnswersTwice(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "nft")
	lab := netlab.NewT(t, netlab.Options{})
	ctx := context.Background()
	e, err := StartUDPEcho(ctx, lab.Internet, EchoOptions{Delay: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s, err := NewFlowSender(lab.Exit, netip.MustParseAddr(netlab.Internet4), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 500
	for sent := 0; sent < n; {
		k, err := s.Send(n - sent)
		if err != nil {
			t.Fatal(err)
		}
		sent += k
	}
	if s.Opened() != n || s.Cap() != 2*FlowPorts {
		t.Fatalf("opened %d of cap %d", s.Opened(), s.Cap())
	}
	if err := netlab.WaitFor(ctx, 10*time.Second, func() bool {
		c := e.Counts()
		return c.Received == n && c.Repeated == n
	}); err != nil {
		t.Fatalf("%+v after %d flows: %v", e.Counts(), n, err)
	}
	if e.Pending() != 0 {
		t.Errorf("%d second answers pending", e.Pending())
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := lab.Internet.Exec(ctx, "nft", "list", "tables"); err != nil || strings.Contains(string(out), echoTable) {
		t.Errorf("after Close: %s %v", out, err)
	}
}
