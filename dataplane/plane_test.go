package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"exitd/keys"
	"exitd/members"
	"exitd/service"
	"exitd/tunnel"
)

// testPlane is a plane over a channel TUN and bind: the real wireguard-go
// device and scheduler, no kernel.
type testPlane struct {
	*Plane
	tun   *tuntest.ChannelTUN
	binds [2]conn.Bind
	priv  keys.Key
}

func newTestPlane(t testing.TB, health *service.Health) testPlane {
	t.Helper()
	priv, err := keys.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := tuntest.NewChannelTUN()
	binds := bindtest.NewChannelBinds()
	p, err := Open(Config{Name: "tp0", MTU: 1420, Port: 1, PrivateKey: priv, EndpointsPath: ""},
		Options{Logger: slog.New(slog.DiscardHandler), Device: ch.TUN(), Bind: binds[0], NoUAPI: true, Health: health})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return testPlane{Plane: p, tun: ch, binds: binds, priv: priv}
}

func testMembers(t testing.TB, n int) []members.Member {
	t.Helper()
	ms := make([]members.Member, n)
	for i := range ms {
		k, err := keys.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = members.Member{ID: uint32(i + 2), Label: fmt.Sprintf("m%d", i), PublicKey: k.Public(), Weight: 1,
			IPv4: netip.AddrFrom4([4]byte{10, 99, 0, byte(i + 2)}), IPv6: netip.MustParseAddr(fmt.Sprintf("fd00:99::%x", i+2))}
	}
	return ms
}

// TestPacketThroughPlane: a real WireGuard member (a second wireguard-go
// device on the other end of the channel bind) sends a packet up; it
// leaves the plane's TUN. A packet to the member goes down the chain
// (health, scheduler, device) and arrives at the member's TUN.
func TestPacketThroughPlane(t *testing.T) {
	p := newTestPlane(t, service.NewHealth(time.Minute, nil))
	memberPriv, _ := keys.Generate(nil)
	m := members.Member{ID: 2, PublicKey: memberPriv.Public(), Weight: 1, IPv4: netip.MustParseAddr("10.99.0.2")}
	if err := p.Sync([]members.Member{m}); err != nil {
		t.Fatal(err)
	}
	mtun := tuntest.NewChannelTUN()
	mdev := device.NewDevice(mtun.TUN(), p.binds[1], device.NewLogger(device.LogLevelSilent, ""))
	defer mdev.Close()
	if err := mdev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=2\npublic_key=%s\nendpoint=%s\nallowed_ip=0.0.0.0/0\n",
		memberPriv.Hex(), p.priv.Public().Hex(), bindtest.ChannelEndpoint(2).DstToString())); err != nil {
		t.Fatal(err)
	}
	if err := mdev.Up(); err != nil {
		t.Fatal(err)
	}
	up := tuntest.Ping(netip.MustParseAddr("192.0.2.9"), m.IPv4)
	mtun.Outbound <- up
	select {
	case got := <-p.tun.Inbound:
		if string(got) != string(up) {
			t.Fatal("upload packet changed on the way")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upload packet did not leave the plane's TUN")
	}
	down := tuntest.Ping(m.IPv4, netip.MustParseAddr("192.0.2.9"))
	p.tun.Outbound <- down
	select {
	case got := <-mtun.Inbound:
		if string(got) != string(down) {
			t.Fatal("download packet changed on the way")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("download packet did not reach the member")
	}
	if st := p.SchedStats(); st.Down.SentPackets == 0 {
		t.Fatalf("download bypassed the scheduler: %+v", st.Down)
	}
	// Removed, the member is cut at once: the next download is not delivered.
	if err := p.Remove([]members.Member{m}); err != nil {
		t.Fatal(err)
	}
	if peers, _ := p.Dump(); len(peers) != 0 {
		t.Fatalf("%d peers after removal", len(peers))
	}
}

// failingPeers refuses the first fails calls of each kind.
type failingPeers struct {
	peerSet
	mu                sync.Mutex
	addFails, rmFails int
	addCalls, rmCalls int
}

func (f *failingPeers) AddPeers(ps []tunnel.Peer) error {
	f.mu.Lock()
	f.addCalls++
	fail := f.addCalls <= f.addFails
	f.mu.Unlock()
	if fail {
		return errors.New("injected: device refused add")
	}
	return f.peerSet.AddPeers(ps)
}

func (f *failingPeers) RemovePeers(ks ...keys.Key) error {
	f.mu.Lock()
	f.rmCalls++
	fail := f.rmCalls <= f.rmFails
	f.mu.Unlock()
	if fail {
		return errors.New("injected: device refused remove")
	}
	return f.peerSet.RemovePeers(ks...)
}

func TestAddRollsBackScheduler(t *testing.T) {
	p := newTestPlane(t, nil)
	f := &failingPeers{peerSet: p.device(), addFails: 1}
	p.peerSet = f
	ms := testMembers(t, 3)
	if err := p.Add(ms); err == nil {
		t.Fatal("refused add reported success")
	}
	if st := p.SchedStats(); st.Members != 0 {
		t.Fatalf("scheduler kept %d members of a refused add", st.Members)
	}
	if err := p.Add(ms); err != nil {
		t.Fatal(err)
	}
	if st := p.SchedStats(); st.Members != 3 {
		t.Fatalf("scheduler has %d members, want 3", st.Members)
	}
}

// TestRemoveRetriesThenFails: a removal that the device refuses once is
// retried; refused twice, it fails and leaves the scheduler as it was (the
// caller then keeps its registry unchanged).
func TestRemoveRetriesThenFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fails   int
		wantErr bool
	}{{"refused once", 1, false}, {"refused twice", 2, true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPlane(t, nil)
			ms := testMembers(t, 2)
			if err := p.Add(ms); err != nil {
				t.Fatal(err)
			}
			p.peerSet = &failingPeers{peerSet: p.device(), rmFails: tc.fails}
			err := p.Remove(ms[:1])
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			peers, _ := p.Dump()
			wantPeers, wantSched := 1, 1
			if tc.wantErr {
				wantPeers, wantSched = 2, 2
			}
			if len(peers) != wantPeers || p.SchedStats().Members != wantSched {
				t.Fatalf("device %d peers, scheduler %d members; want %d, %d", len(peers), p.SchedStats().Members, wantPeers, wantSched)
			}
		})
	}
}

func TestUpdateDisableEnableWeight(t *testing.T) {
	p := newTestPlane(t, nil)
	ms := testMembers(t, 1)
	m := ms[0]
	if err := p.Add(ms); err != nil {
		t.Fatal(err)
	}
	off := m
	off.Disabled = true
	if err := p.Update(m, off); err != nil {
		t.Fatal(err)
	}
	if peers, _ := p.Dump(); len(peers) != 0 || p.SchedStats().Members != 0 {
		t.Fatal("disabled member still in device or scheduler")
	}
	on := m
	on.Weight = 9
	if err := p.Update(off, on); err != nil {
		t.Fatal(err)
	}
	if peers, _ := p.Dump(); len(peers) != 1 || p.SchedStats().Members != 1 {
		t.Fatal("enabled member not back")
	}
	p.peerSet = &failingPeers{peerSet: p.device(), rmFails: 2}
	if err := p.Update(on, off); err == nil {
		t.Fatal("refused disable reported success")
	}
}

func TestSyncReconciles(t *testing.T) {
	p := newTestPlane(t, nil)
	ms := testMembers(t, 10)
	ms[3].Disabled = true
	stray := testMembers(t, 1)
	if err := p.Add(append(stray, ms[1])); err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(ms); err != nil {
		t.Fatal(err)
	}
	peers, _ := p.Dump()
	if len(peers) != 9 {
		t.Fatalf("%d peers, want 9", len(peers))
	}
	if _, ok := peers[ms[3].PublicKey]; ok {
		t.Fatal("disabled member in the device")
	}
	if _, ok := peers[stray[0].PublicKey]; ok {
		t.Fatal("stray peer survived")
	}
}

func TestLimitsEnforced(t *testing.T) {
	if !LimitsEnforced(SchedConfig{}) || !LimitsEnforced(SchedConfig{Discipline: "srr"}) || LimitsEnforced(SchedConfig{Discipline: "fifo"}) {
		t.Fatal("srr enforces caps, fifo does not")
	}
	if (SchedConfig{Discipline: "lifo"}).Validate() == nil {
		t.Fatal("unknown discipline accepted")
	}
}

func TestPeerOf(t *testing.T) {
	k, _ := keys.Generate(nil)
	m := members.Member{PublicKey: k.Public(), IPv4: netip.MustParseAddr("10.99.0.7"), IPv6: netip.MustParseAddr("fd00:99::7")}
	p := peerOf(m)
	if p.PublicKey != m.PublicKey || len(p.Allowed) != 2 || p.Allowed[0].String() != "10.99.0.7/32" || p.Allowed[1].String() != "fd00:99::7/128" {
		t.Fatalf("%+v", p)
	}
	if got := (members.Member{IPv6: m.IPv6}).Addrs(); len(got) != 1 {
		t.Fatalf("%v", got)
	}
}

func TestSampleRates(t *testing.T) {
	k := keys.Key{1}
	t0 := time.Unix(1000, 0)
	s := Sample{
		At: t0.Add(2 * time.Second), PrevAt: t0,
		Prev: map[keys.Key]PeerStats{k: {RxBytes: 1000, TxBytes: 5000}},
		Cur:  map[keys.Key]PeerStats{k: {RxBytes: 3000, TxBytes: 255000}},
	}
	if rx, tx := s.Rates(k); rx != 8000 || tx != 1_000_000 {
		t.Fatalf("rates %d %d", rx, tx)
	}
	if rx, tx := s.Rates(keys.Key{2}); rx != 0 || tx != 0 {
		t.Fatal("rate for unknown peer")
	}
	s.Cur[k] = PeerStats{RxBytes: 10} // counters reset (peer re-added)
	if rx, tx := s.Rates(k); rx != 0 || tx != 0 {
		t.Fatal("rate across a counter reset")
	}
	s.PrevAt = s.At
	if rx, _ := s.Rates(k); rx != 0 {
		t.Fatal("rate over zero time")
	}
}

// BenchmarkDeviceDump measures the expensive part of a member-table
// refresh on a real wireguard-go device: the UAPI dump of every peer plus
// the map the table reads it through. EXITD_BENCH_PEERS sets the peer
// count (default 2,000; the documented figure used 20,000).
func BenchmarkDeviceDump(b *testing.B) {
	peers := 2000
	if v, err := strconv.Atoi(os.Getenv("EXITD_BENCH_PEERS")); err == nil && v > 0 {
		peers = v
	}
	binds := bindtest.NewChannelBinds()
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), binds[0], device.NewLogger(device.LogLevelSilent, ""))
	defer dev.Close()
	priv, _ := keys.Generate(nil)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "private_key=%s\n", priv.Hex())
	for i := range peers {
		k, _ := keys.Generate(nil)
		fmt.Fprintf(&cfg, "public_key=%s\nallowed_ip=10.%d.%d.%d/32\n", k.Public().Hex(), 100+i>>16, (i>>8)&255, i&255)
	}
	if err := dev.IpcSet(cfg.String()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s, err := dev.IpcGet()
		if err != nil {
			b.Fatal(err)
		}
		m := make(map[string]int, peers)
		for line := range strings.Lines(s) {
			if k, v, ok := strings.Cut(line, "="); ok && k == "public_key" {
				m[v] = len(m)
			}
		}
		if len(m) != peers {
			b.Fatalf("%d peers in the dump", len(m))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/dump")
}

// device is the tunnel as a peerSet (tests wrap it).
func (p *Plane) device() peerSet { return p.tun }

// costlyPeers counts dumps and advances a fake clock by cost in each, as
// a dump of many peers takes time.
type costlyPeers struct {
	peerSet
	clock *clock
	cost  time.Duration
	dumps int
}

func (c *costlyPeers) Stats() ([]tunnel.PeerStats, error) {
	c.dumps++
	c.clock.add(c.cost)
	return c.peerSet.Stats()
}

// TestSampleBudget: a dump serves requests for statsMaxAge or ten times
// its cost, whichever is longer, and background readers for a hundred
// times its cost — so readers polling a device with many peers cannot
// spend more than a tenth (requests) or a hundredth (background) of a CPU
// on dumps. Before, every reader dumped again after 100 ms whatever the
// dump cost: a lab polling status during a 20,000-member storm kept a CPU
// busy dumping.
func TestSampleBudget(t *testing.T) {
	tests := []struct {
		name             string
		cost             time.Duration
		request, backgnd time.Duration // how long a dump serves each kind
	}{
		{"cheap dump: statsMaxAge", time.Millisecond, statsMaxAge, statsMaxAge},
		{"20,000 peers", 150 * time.Millisecond, 1500 * time.Millisecond, 15 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPlane(t, nil)
			clock := &clock{t: time.Unix(1000, 0)}
			p.now = clock.now
			c := &costlyPeers{peerSet: p.device(), clock: clock, cost: tc.cost}
			p.peerSet = c
			for _, kind := range []struct {
				name   string
				sample func() Sample
				serves time.Duration
			}{{"request", p.Sample, tc.request}, {"background", p.BackgroundSample, tc.backgnd}} {
				first := kind.sample() // dumps: the previous one is older than any budget
				want := c.dumps
				clock.add(kind.serves - tc.cost - time.Nanosecond)
				if s := kind.sample(); c.dumps != want || !s.At.Equal(first.At) {
					t.Fatalf("%s: dumped again %v after the last dump began, before its budget %v", kind.name, kind.serves-time.Nanosecond, kind.serves)
				}
				clock.add(time.Nanosecond)
				if kind.sample(); c.dumps != want+1 {
					t.Fatalf("%s: no new dump %v after the last one began", kind.name, kind.serves)
				}
				clock.add(time.Hour) // the next kind starts from a stale dump
			}
		})
	}
}

// TestDumpFeedsSample: a fresh dump (the metrics table's, every 15 s) is
// also the latest sample, so the background readers do not dump the
// device again right after it; a dump older than the latest sample does
// not replace it.
func TestDumpFeedsSample(t *testing.T) {
	p := newTestPlane(t, nil)
	clock := &clock{t: time.Unix(1000, 0)}
	p.now = clock.now
	c := &costlyPeers{peerSet: p.device(), clock: clock, cost: 150 * time.Millisecond}
	p.peerSet = c
	if _, err := p.Dump(); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Second)
	s := p.BackgroundSample()
	if c.dumps != 1 || !s.At.Equal(time.Unix(1000, 0)) {
		t.Fatalf("background sample after a dump: %d dumps, sample at %v; want the dump's", c.dumps, s.At)
	}
	// A request past its budget (10 × 150 ms) dumps; the sample moves on.
	clock.add(time.Second)
	if s := p.Sample(); c.dumps != 2 || !s.At.After(time.Unix(1001, 0)) {
		t.Fatalf("request after 2 s: %d dumps, sample at %v", c.dumps, s.At)
	}
}
