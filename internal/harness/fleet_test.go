package harness

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

func TestEchoRequest(t *testing.T) {
	src, dst := netip.MustParseAddr("10.96.0.7"), netip.MustParseAddr(netlab.Internet4)
	p := echoRequest(src, dst, 513)
	if checksum(p[:20]) != 0 || checksum(p[20:]) != 0 {
		t.Fatalf("checksums do not verify: % x", p)
	}
	if got, _ := netip.AddrFromSlice(p[12:16]); got != src {
		t.Errorf("source %v", got)
	}
	if got, _ := netip.AddrFromSlice(p[16:20]); got != dst {
		t.Errorf("destination %v", got)
	}
	if p[20] != 8 || binary.BigEndian.Uint16(p[24:]) != 513 {
		t.Errorf("type %d id %d", p[20], binary.BigEndian.Uint16(p[24:]))
	}
	if isEchoReply(p) {
		t.Error("a request counted as a reply")
	}
	if !isEchoReply(echoReply(p)) {
		t.Error("the reply is not recognised")
	}
	if isEchoReply(p[:27]) {
		t.Error("a truncated packet counted as a reply")
	}
}

func TestChecksum(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want uint16
	}{
		{"empty", nil, 0xffff},
		{"RFC 1071 example", []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, ^uint16(0xddf2)},
		{"odd length pads a zero", []byte{0x01}, ^uint16(0x0100)},
		{"carry folds", []byte{0xff, 0xff, 0x00, 0x01}, ^uint16(0x0001)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := checksum(tc.in); got != tc.want {
				t.Fatalf("checksum(% x) = %#04x, want %#04x", tc.in, got, tc.want)
			}
		})
	}
}

// TestFleet runs a small fleet against an in-process wireguard-go peer in
// the exit namespace whose TUN answers every echo request: each member
// handshakes from its own source address, gets its pings answered, and
// Close leaves no goroutine behind.
func TestFleet(t *testing.T) {
	testenv.RequireRoot(t)
	const n = 4
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lab, err := netlab.New(ctx, netlab.Options{Members: 1, ExtraMemberAddrs: n})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()

	peerPriv, peerPub := keyPair(t)
	privs := make([][32]byte, n)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "private_key=%x\nlisten_port=443\n", peerPriv)
	for i := range privs {
		var pub [32]byte
		privs[i], pub = keyPair(t)
		fmt.Fprintf(&cfg, "public_key=%x\nallowed_ip=%s/32\n", pub, memberInner(i))
	}
	peer := startEchoPeer(t, lab, cfg.String())

	before := runtime.NumGoroutine()
	f, err := NewFleet(ctx, lab, peerPub, netip.MustParseAddrPort(netlab.ExitUnderlay4+":443"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range privs {
		if err := f.Add(privs[i], memberInner(i)); err != nil {
			t.Fatal(err)
		}
	}
	var extra [32]byte
	if err := f.Add(extra, memberInner(n)); err == nil || !strings.Contains(err.Error(), "extra source addresses") {
		t.Errorf("Add beyond the lab's extra addresses: %v", err)
	}
	if f.Len() != n {
		t.Errorf("Len %d, want %d", f.Len(), n)
	}
	since := time.Now()
	f.StartPinging(200 * time.Millisecond)
	if got := f.WaitPings(ctx, since, 20*time.Second); got != n {
		t.Fatalf("%d of %d members had a ping answered", got, n)
	}

	// The peer saw each member from the member's own extra address.
	uapi, err := peer.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, l := range strings.Split(uapi, "\n") {
		if v, ok := strings.CutPrefix(l, "endpoint="); ok {
			seen[netip.MustParseAddrPort(v).Addr()] = true
		}
	}
	for _, a := range lab.Members[0].ExtraAddrs {
		if !seen[a] {
			t.Errorf("no member came from %v; peer endpoints %v", a, seen)
		}
	}

	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := f.Add(privs[0], memberInner(0)); err == nil {
		t.Error("Add after Close succeeded")
	}
	if err := netlab.WaitFor(ctx, 10*time.Second, func() bool { return runtime.NumGoroutine() <= before }); err != nil {
		t.Errorf("goroutines: %d before the fleet, %d after Close", before, runtime.NumGoroutine())
	}
}

func memberInner(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 96, 0, byte(2 + i)}) }

func keyPair(t *testing.T) (priv, pub [32]byte) {
	t.Helper()
	rand.Read(priv[:])
	priv[0] &= 248
	priv[31] = priv[31]&127 | 64
	p, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	copy(pub[:], p)
	return priv, pub
}

// startEchoPeer starts a wireguard-go device listening in the exit
// namespace with the UAPI config cfg; its TUN answers echo requests.
func startEchoPeer(t *testing.T, lab *netlab.Lab, cfg string) *device.Device {
	t.Helper()
	dev := device.NewDevice(newEchoTUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(dev.Close)
	if err := dev.IpcSet(cfg); err != nil {
		t.Fatal(err)
	}
	// Up opens the bind's sockets on this thread, inside the namespace.
	if err := lab.Exit.Run(dev.Up); err != nil {
		t.Fatal(err)
	}
	return dev
}

// echoTUN turns every IPv4 echo request written to it into a reply read
// from it: exitd's TUN and the internet host in one.
type echoTUN struct {
	replies   chan []byte
	events    chan tun.Event
	closed    chan struct{}
	closeOnce sync.Once
}

var _ tun.Device = (*echoTUN)(nil)

func newEchoTUN() *echoTUN {
	// No EventUp: wireguard-go would bring the device up from its event
	// goroutine, opening the sockets outside the namespace.
	return &echoTUN{replies: make(chan []byte, 64), events: make(chan tun.Event), closed: make(chan struct{})}
}

func (t *echoTUN) File() *os.File { return nil }
func (t *echoTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-t.replies:
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, nil
	case <-t.closed:
		return 0, os.ErrClosed
	}
}
func (t *echoTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		p := b[offset:]
		if len(p) >= 28 && p[0] == 0x45 && p[9] == 1 && p[20] == 8 {
			select {
			case t.replies <- echoReply(p):
			default:
			}
		}
	}
	return len(bufs), nil
}
func (t *echoTUN) MTU() (int, error)        { return 1420, nil }
func (t *echoTUN) Name() (string, error)    { return "echo", nil }
func (t *echoTUN) Events() <-chan tun.Event { return t.events }
func (t *echoTUN) BatchSize() int           { return 1 }
func (t *echoTUN) Close() error {
	t.closeOnce.Do(func() {
		close(t.closed)
		close(t.events)
	})
	return nil
}

// echoReply answers the IPv4 echo request p (no IP options).
func echoReply(p []byte) []byte {
	r := append([]byte(nil), p...)
	copy(r[12:16], p[16:20])
	copy(r[16:20], p[12:16])
	r[10], r[11] = 0, 0
	binary.BigEndian.PutUint16(r[10:], checksum(r[:20]))
	r[20], r[22], r[23] = 0, 0, 0
	binary.BigEndian.PutUint16(r[22:], checksum(r[20:]))
	return r
}

// TestForceBuffers: the fleet socket's buffers go past rmem_max/wmem_max,
// which a plain SetReadBuffer cannot (the burst of handshakes at an exit's
// start overflowed the capped buffer).
func TestForceBuffers(t *testing.T) {
	testenv.RequireRoot(t)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const want = 32 << 20 // far above any default rmem_max
	if err := forceBuffers(c, want); err != nil {
		t.Fatal(err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		for _, o := range []struct {
			name string
			opt  int
		}{{"SO_RCVBUF", unix.SO_RCVBUF}, {"SO_SNDBUF", unix.SO_SNDBUF}} {
			got, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, o.opt)
			if err != nil {
				t.Fatal(err)
			}
			if got < want { // the kernel reports twice what was set
				t.Errorf("%s = %d after forceBuffers(%d)", o.name, got, want)
			}
		}
	})
}
