package dataplane

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"exitd/keys"
	"exitd/service"
	"exitd/tunnel"
)

func key(t *testing.T) keys.Key {
	t.Helper()
	k, err := keys.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

func TestEndpointsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.json")
	if eps, err := loadEndpoints(path); err != nil || eps != nil {
		t.Fatalf("missing file: %v %v", eps, err)
	}
	a, b := key(t), key(t)
	want := map[keys.Key]netip.AddrPort{
		a: netip.MustParseAddrPort("198.18.1.1:51820"),
		b: netip.MustParseAddrPort("[2001:2:0:2::5]:40000"),
	}
	if err := saveEndpoints(path, want); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v %v", st.Mode(), err)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("temp file left behind")
	}
	got, err := loadEndpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[a] != want[a] || got[b] != want[b] {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestLoadEndpointsBadInput(t *testing.T) {
	dir := t.TempDir()
	good := key(t)
	tests := []struct {
		name    string
		content string
		want    int
		wantErr bool
	}{
		{"garbage", "not json", 0, true},
		{"bad entries skipped", `{"endpoints": {"` + good.String() + `": "198.18.1.1:1", "nokey": "198.18.1.2:1", "` + key(t).String() + `": "no-port"}}`, 1, false},
		{"empty", `{}`, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			os.WriteFile(p, []byte(tc.content), 0o600)
			got, err := loadEndpoints(p)
			if (err != nil) != tc.wantErr || len(got) != tc.want {
				t.Fatalf("got %v, %v", got, err)
			}
		})
	}
}

// clock is a manual clock (Health, the sampler, the endpoint save).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestWatchedTUNStages(t *testing.T) {
	clk := &clock{t: time.Unix(0, 0)}
	h := service.NewHealth(time.Second, clk.now)
	ch := tuntest.NewChannelTUN()
	w := watchTUN(ch.TUN(), h.Stage("tun-read"), h.Stage("tun-write"))
	bufs := [][]byte{make([]byte, 2000)}
	sizes := []int{0}
	ping := tuntest.Ping(netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1"))

	// Waiting in Read for a long time is healthy.
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := w.Read(bufs, sizes, 0); err != nil {
			t.Error(err)
		}
	}()
	clk.add(time.Hour)
	if err := h.Check(); err != nil {
		t.Fatalf("waiting reader: %v", err)
	}
	ch.Outbound <- ping
	<-done
	// The reader returned with a packet and never came back: stuck.
	clk.add(2 * time.Second)
	if err := h.Check(); err == nil || !strings.Contains(err.Error(), "tun-read") {
		t.Fatalf("reader that stopped reading: %v", err)
	}
	// Calling Read again is progress.
	go w.Read(bufs, sizes, 0)
	if err := pollHealthy(h); err != nil {
		t.Fatalf("reader back: %v", err)
	}
	defer w.Close() // the waiting reader returns an error, not a packet

	// Write: busy inside, idle after.
	got := make(chan []byte)
	go func() { got <- <-ch.Inbound }()
	if _, err := w.Write([][]byte{append([]byte(nil), ping...)}, 0); err != nil {
		t.Fatal(err)
	}
	<-got
	clk.add(time.Hour)
	if err := h.Check(); err != nil {
		t.Fatalf("after write: %v", err)
	}
}

// pollHealthy waits (bounded) for a goroutine to reach its wait point.
func pollHealthy(h *service.Health) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := h.Check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond) // polling another goroutine's progress
	}
}

// blockingBind's Send blocks until released: a wedged UDP egress.
type blockingBind struct {
	conn.Bind
	release chan struct{}
}

func (b *blockingBind) Send([][]byte, conn.Endpoint) error { <-b.release; return nil }

func TestWatchedBindStuckSend(t *testing.T) {
	clk := &clock{t: time.Unix(0, 0)}
	h := service.NewHealth(time.Second, clk.now)
	binds := bindtest.NewChannelBinds()
	bb := &blockingBind{Bind: binds[0], release: make(chan struct{})}
	w := &watchedBind{Bind: bb, send: h.Stage("udp-send"), recv: h.Stage("udp-receive")}
	sent := make(chan struct{})
	go func() {
		w.Send([][]byte{{1}}, bindtest.ChannelEndpoint(1))
		close(sent)
	}()
	if err := netlabFreeWait(func() bool { clk.add(100 * time.Millisecond); return h.Check() != nil }); err != nil {
		t.Fatal("a send blocked for seconds was not reported")
	}
	if err := h.Check(); !strings.Contains(err.Error(), "udp-send") {
		t.Fatalf("wrong stage: %v", err)
	}
	close(bb.release)
	<-sent
	if err := h.Check(); err != nil {
		t.Fatalf("after the send returned: %v", err)
	}
}

func netlabFreeWait(cond func() bool) error {
	for range 1000 {
		if cond() {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return errors.New("timeout")
}

func TestWatchedBindReceive(t *testing.T) {
	clk := &clock{t: time.Unix(0, 0)}
	h := service.NewHealth(time.Second, clk.now)
	binds := bindtest.NewChannelBinds()
	w := &watchedBind{Bind: binds[0], send: h.Stage("udp-send"), recv: h.Stage("udp-receive")}
	fns, _, err := w.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, _, err := binds[1].Open(0); err != nil {
		t.Fatal(err)
	}
	// binds[1] sends to its IPv4 target, which binds[0]'s first function receives.
	if err := binds[1].Send([][]byte{[]byte("hello")}, bindtest.ChannelEndpoint(2)); err != nil {
		t.Fatal(err)
	}
	n, err := fns[0]([][]byte{make([]byte, 100)}, []int{0}, make([]conn.Endpoint, 1))
	if err != nil || n != 1 {
		t.Fatalf("receive: %d %v", n, err)
	}
	if err := h.Check(); err != nil {
		t.Fatalf("just received: %v", err)
	}
	clk.add(2 * time.Second) // processing what it received, never back for more
	if err := h.Check(); err == nil || !strings.Contains(err.Error(), "udp-receive") {
		t.Fatalf("receiver that stopped receiving: %v", err)
	}
}

func TestWatchedAllocs(t *testing.T) {
	h := service.NewHealth(time.Second, nil)
	ch := tuntest.NewChannelTUN()
	w := watchTUN(ch.TUN(), h.Stage("r"), h.Stage("w"))
	pkt := [][]byte{tuntest.Ping(netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1"))}
	go func() {
		for range ch.Inbound {
		}
	}()
	raw := testing.AllocsPerRun(100, func() { ch.TUN().Write(pkt, 0) }) // the channel TUN copies
	if n := testing.AllocsPerRun(100, func() { w.Write(pkt, 0) }); n != raw {
		t.Errorf("watched Write: %v allocs, the device alone %v", n, raw)
	}
}

// fakeService records the fd store traffic.
type fakeService struct {
	mu       sync.Mutex
	stored   []string
	removed  []string
	files    map[string][]*os.File
	storeErr error
}

func (f *fakeService) StoreFile(name string, _ syscall.Conn) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.storeErr != nil {
		return f.storeErr
	}
	f.stored = append(f.stored, name)
	return nil
}

func (f *fakeService) RemoveFiles(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, name)
	return nil
}

func (f *fakeService) TakeFiles(name string) []*os.File {
	fs := f.files[name]
	delete(f.files, name)
	return fs
}

func (f *fakeService) WatchdogInterval() time.Duration { return 30 * time.Second }

func devNull(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// One *os.File per descriptor: two would close the number twice.
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	nf := os.NewFile(uintptr(fd), name)
	t.Cleanup(func() { nf.Close() }) // closing twice is safe on one *os.File
	return nf
}

func TestTakeFiles(t *testing.T) {
	extra := devNull(t, "tun")
	svc := &fakeService{files: map[string][]*os.File{
		tunnel.HandoverTUN:  {devNull(t, "tun"), extra},
		tunnel.HandoverUDP4: {devNull(t, "udp4")},
		tunnel.HandoverUDP6: {devNull(t, "udp6")},
	}}
	p := &Plane{store: svc}
	var o tunnel.Options
	p.takeFiles(&o)
	if o.TUN == nil || len(o.UDP) != 2 || o.UDP[0].Name() != "udp4" || o.UDP[1].Name() != "udp6" {
		t.Fatalf("options %+v", o)
	}
	if _, err := extra.Stat(); err == nil {
		t.Error("a second inherited TUN was not closed")
	}
	// Without a service manager nothing is adopted.
	var none tunnel.Options
	(&Plane{}).takeFiles(&none)
	if none.TUN != nil || none.UDP != nil {
		t.Fatal("adopted without a service")
	}
}

// steppingClock advances by step on every reading, as if each stretch of
// work between two readings took step.
type steppingClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *steppingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// TestRejoinPaced: the rejoin's initiations go out rejoinChunk at a time,
// each chunk followed by a pause of rejoinSpacing times what it took (at
// least rejoinMinPause), none after the last. Before, all of them went out
// at once: 20,000 answers came back in one burst.
func TestRejoinPaced(t *testing.T) {
	tests := []struct {
		name  string
		keys  int
		step  time.Duration // what sending a chunk takes
		pause time.Duration
		n     int // pauses
	}{
		{"one chunk: no pause", rejoinChunk, time.Millisecond, 0, 0},
		{"three chunks, slow sends", 2*rejoinChunk + 1, 10 * time.Millisecond, 20 * time.Millisecond, 2},
		{"fast sends: the floor", 2 * rejoinChunk, time.Microsecond, rejoinMinPause, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPlane(t, nil)
			p.now = (&steppingClock{t: time.Unix(1000, 0), step: tc.step}).now
			var pauses []time.Duration
			p.after = func(d time.Duration) <-chan time.Time {
				pauses = append(pauses, d)
				c := make(chan time.Time, 1)
				c <- time.Time{}
				return c
			}
			ks := make([]keys.Key, tc.keys) // not peers: Initiate skips them
			for i := range ks {
				ks[i][0], ks[i][1] = byte(i), byte(i>>8)
			}
			p.bg.Add(1)
			p.routineRejoin(ks)
			if len(pauses) != tc.n {
				t.Fatalf("%d pauses %v, want %d", len(pauses), pauses, tc.n)
			}
			for _, d := range pauses {
				if d != tc.pause {
					t.Fatalf("pauses %v, want each %v", pauses, tc.pause)
				}
			}
		})
	}
}

// TestRejoinStopsAtClose: Close ends a rejoin that is pausing and waits
// for it.
func TestRejoinStopsAtClose(t *testing.T) {
	p := newTestPlane(t, nil)
	paused := make(chan struct{})
	p.after = func(time.Duration) <-chan time.Time {
		close(paused)
		return nil // never fires
	}
	p.bg.Add(1)
	go p.routineRejoin(make([]keys.Key, 2*rejoinChunk))
	<-paused
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Close returned: the routine ended (bg.Wait), or this would hang.
}

// endpointPeers is a device whose peers' endpoints the test sets.
type endpointPeers struct {
	peerSet
	mu  sync.Mutex
	eps map[keys.Key]string
}

func (e *endpointPeers) set(k keys.Key, ep string) {
	e.mu.Lock()
	e.eps[k] = ep
	e.mu.Unlock()
}

func (e *endpointPeers) Stats() ([]tunnel.PeerStats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []tunnel.PeerStats
	for k, ep := range e.eps {
		out = append(out, tunnel.PeerStats{PublicKey: k, Endpoint: ep})
	}
	return out, nil
}

// TestPersistEndpoints: the periodic save merges endpoints only from a
// renewed background sample (with 20,000 members, merging every 2 s cost
// more than the dumps), the final one from a fresh sample; removed members
// are forgotten, members not seen keep their old endpoint.
func TestPersistEndpoints(t *testing.T) {
	p := newTestPlane(t, nil)
	p.cfg.EndpointsPath = filepath.Join(t.TempDir(), "endpoints.json")
	clock := &clock{t: time.Unix(1000, 0)}
	p.now = clock.now
	a, b, c := key(t), key(t), key(t)
	dev := &endpointPeers{peerSet: p.device(), eps: map[keys.Key]string{a: "198.18.0.1:1000", b: "198.18.0.2:2000"}}
	p.peerSet = dev
	p.lastEndpoints = map[keys.Key]netip.AddrPort{c: netip.MustParseAddrPort("198.18.0.3:3000")} // from the last run
	members := map[keys.Key]bool{a: true, b: true, c: true}
	known := func(k keys.Key) bool { return members[k] }
	saved := func() map[keys.Key]netip.AddrPort {
		t.Helper()
		eps, err := loadEndpoints(p.cfg.EndpointsPath)
		if err != nil {
			t.Fatal(err)
		}
		return eps
	}

	p.PersistEndpoints(known, false)
	if got := saved(); len(got) != 3 || got[a].Port() != 1000 || got[c].Port() != 3000 {
		t.Fatalf("first save %v, want a, b and c (not seen, kept)", got)
	}
	// a roams; the background sample is not renewed yet: nothing is merged.
	dev.set(a, "198.18.0.9:1001")
	clock.add(statsMaxAge / 2)
	p.PersistEndpoints(known, false)
	if got := saved(); got[a].Port() != 1000 {
		t.Fatalf("merged from the same sample again: %v", got)
	}
	// Renewed: merged.
	clock.add(statsMaxAge)
	p.PersistEndpoints(known, false)
	if got := saved(); got[a].Port() != 1001 {
		t.Fatalf("renewed sample not merged: %v", got)
	}
	// b is removed and a roams again; the final save reads a fresh
	// sample even though the background one is still current.
	delete(members, b)
	dev.set(a, "198.18.0.9:1002")
	p.sampler.mu.Lock()
	p.sampler.cost = time.Second // background samples now last 100 s
	p.sampler.mu.Unlock()
	clock.add(statsMaxAge)
	p.PersistEndpoints(known, false)
	if got := saved(); got[a].Port() != 1001 || len(got) != 3 {
		t.Fatalf("periodic save within the background budget merged: %v", got)
	}
	clock.add(10 * time.Second) // past the request budget (10 × 1 s)
	p.PersistEndpoints(known, true)
	if got := saved(); got[a].Port() != 1002 || len(got) != 2 || got[c].Port() != 3000 {
		t.Fatalf("final save %v, want a's newest endpoint, c kept, b forgotten", got)
	}
}

// TestSyncAtStartSetsEndpoints: the start's Sync adds each peer with its
// last known endpoint in the same transaction (before, the peer existed
// for a moment without one; a packet for the member then made wireguard-go
// try a handshake to nowhere and hold the rejoin's initiation back 5 s —
// a 5.5 s stall in the package upgrade test). Later Syncs (reloads) leave
// live endpoints alone.
func TestSyncAtStartSetsEndpoints(t *testing.T) {
	p := newTestPlane(t, nil)
	p.cfg.EndpointsPath = filepath.Join(t.TempDir(), "endpoints.json")
	ms := testMembers(t, 2)
	ep := netip.MustParseAddrPort("127.0.0.1:40001")
	if err := saveEndpoints(p.cfg.EndpointsPath, map[keys.Key]netip.AddrPort{ms[0].PublicKey: ep}); err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(ms); err != nil {
		t.Fatal(err)
	}
	got, err := p.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[ms[0].PublicKey].Endpoint == "" || got[ms[1].PublicKey].Endpoint != "" {
		t.Fatalf("after the start's Sync: %+v; want the first member's endpoint set, the second's not", got)
	}
	first := got[ms[0].PublicKey].Endpoint
	if err := saveEndpoints(p.cfg.EndpointsPath, map[keys.Key]netip.AddrPort{
		ms[0].PublicKey: netip.MustParseAddrPort("127.0.0.1:40002"), ms[1].PublicKey: ep}); err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(ms); err != nil {
		t.Fatal(err)
	}
	got, _ = p.Dump()
	if got[ms[0].PublicKey].Endpoint != first || got[ms[1].PublicKey].Endpoint != "" {
		t.Fatalf("a later Sync repointed peers: %+v", got)
	}
}
