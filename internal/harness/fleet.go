package harness

// Fleet: many simulated WireGuard members in this process, for measuring
// exitd with thousands of handshaken members without thousands of
// namespaces or wireguard-go processes.
//
//	Fleet.Add ──▶ one wireguard-go device (library) per member:
//	              simTUN ◀─▶ device ◀─▶ simBind
//	simBind.Send ──IP_PKTINFO, the member's own source address──▶ UDP socket
//	UDP socket ──routineReceive: by destination address──▶ simBind.in
//	routinePing ──ICMP echo request, once per period each──▶ simTUN.in
//	simTUN.Write ◀── echo replies: the member's last reply time
//
// All members share one UDP socket in member 1's namespace, bound to the
// wildcard address; each sends from its own extra underlay address
// (netlab.Options.ExtraMemberAddrs), so exitd sees one source per member as
// it would in production, per-IP handshake limits included.
//
// Costs: each member is a full wireguard-go device with batch size 1, about
// 250 KiB of this process's RSS and 3·NumCPU+5 goroutines; 20,000 members
// need a few GiB. Key generation, handshakes and the pings all run on this
// process's CPUs, which the exit shares in a lab.
//
// Use: build the lab with ExtraMemberAddrs ≥ the fleet size, register the
// members' public keys with the node, then
//
//	f, err := NewFleet(ctx, lab, nodePublicKey, nodeEndpoint)
//	defer f.Close()
//	for each member: f.Add(privateKey, tunnelAddress)
//	f.StartPinging(10 * time.Second)
//	n := f.WaitPings(ctx, since, time.Minute)
//
// The fleet speaks WireGuard only; it does not import exitd's packages, so
// keys are raw 32-byte Curve25519 keys.

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"exitd/internal/netlab"
)

// Fleet is a set of simulated members sending from member 1's namespace.
// Its methods may be called concurrently.
type Fleet struct {
	ns       *netlab.NS
	peer     [32]byte
	endpoint netip.AddrPort
	target   netip.Addr

	udp *net.UDPConn
	pc  *ipv4.PacketConn

	addMu sync.Mutex // serialises Add: members take extra addresses in order

	mu       sync.RWMutex
	byAddr   map[netip.Addr]*simBind // routineReceive's demultiplexer
	members  []*simMember            // appended by Add only
	stopPing context.CancelFunc      // nil until StartPinging
	closed   bool

	wg sync.WaitGroup // routineReceive, routinePing
}

// NewFleet opens the fleet's socket in the lab's member 1 namespace for
// members of the node with public key peer listening at endpoint, and pins
// the exit's neighbour entries for every extra address of member 1.
func NewFleet(ctx context.Context, lab *netlab.Lab, peer [32]byte, endpoint netip.AddrPort) (*Fleet, error) {
	if len(lab.Members) == 0 {
		return nil, errors.New("harness: fleet: the lab has no member namespace")
	}
	ns := lab.Members[0]
	if err := pinNeighbours(ctx, lab, ns); err != nil {
		return nil, err
	}
	var udp *net.UDPConn
	err := ns.Run(func() error {
		var err error
		udp, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("harness: fleet: listen: %w", err)
	}
	// One socket stands in for every member's own: without FORCE the
	// kernel caps the buffers at rmem_max (≈ 200 KiB), and a burst such as
	// the exit's handshakes to 20,000 members at its start overflows it —
	// drops that real members, each with its own socket, do not see.
	if err := forceBuffers(udp, fleetSocketBuffer); err != nil {
		udp.Close()
		return nil, fmt.Errorf("harness: fleet: socket buffers: %w", err)
	}
	pc := ipv4.NewPacketConn(udp)
	if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
		udp.Close()
		return nil, fmt.Errorf("harness: fleet: IP_PKTINFO: %w", err)
	}
	f := &Fleet{
		ns: ns, peer: peer, endpoint: endpoint, target: netip.MustParseAddr(netlab.Internet4),
		udp: udp, pc: pc, byAddr: map[netip.Addr]*simBind{},
	}
	f.wg.Add(1)
	go f.routineReceive()
	return f, nil
}

// fleetSocketBuffer is the fleet socket's SO_RCVBUF and SO_SNDBUF.
const fleetSocketBuffer = 64 << 20

// forceBuffers sets c's receive and send buffers to n bytes past the
// rmem_max/wmem_max caps (SO_RCVBUFFORCE needs CAP_NET_ADMIN).
func forceBuffers(c *net.UDPConn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for _, o := range []int{unix.SO_RCVBUFFORCE, unix.SO_SNDBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, n); e != nil && serr == nil {
				serr = e
			}
		}
	}); err != nil {
		return err
	}
	return serr
}

// pinNeighbours gives the exit a permanent neighbour entry for each of
// ns's extra addresses. The exit answers every simulated member on the
// underlay segment, and the kernel's neighbour table is shared by all
// namespaces with gc_thresh3 = 1024 by default; permanent entries do not
// count against it, and the host's sysctls stay untouched.
func pinNeighbours(ctx context.Context, lab *netlab.Lab, ns *netlab.NS) error {
	if len(ns.ExtraAddrs) == 0 {
		return nil
	}
	out, err := ns.Exec(ctx, "cat", "/sys/class/net/"+netlab.MemberIface+"/address")
	if err != nil {
		return err
	}
	mac := strings.TrimSpace(string(out))
	var b strings.Builder
	for _, a := range ns.ExtraAddrs {
		fmt.Fprintf(&b, "neigh replace %s lladdr %s dev %s nud permanent\n", a, mac, netlab.ExitUnderlayIface)
	}
	cmd := lab.Exit.Command(ctx, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("harness: fleet: pin neighbours: %v: %s", err, out)
	}
	return nil
}

// Add starts one more member with private key priv and tunnel address
// inner (what the node assigned it). It sends from the next unused extra
// address of member 1.
func (f *Fleet) Add(priv [32]byte, inner netip.Addr) error {
	f.addMu.Lock()
	defer f.addMu.Unlock()
	f.mu.Lock()
	i := len(f.members)
	switch {
	case f.closed:
		f.mu.Unlock()
		return net.ErrClosed
	case i >= len(f.ns.ExtraAddrs):
		f.mu.Unlock()
		return fmt.Errorf("harness: fleet: member %d: only %d extra source addresses in the lab", i, len(f.ns.ExtraAddrs))
	}
	b := &simBind{fleet: f, src: f.ns.ExtraAddrs[i], in: make(chan simPacket, 16)}
	f.byAddr[b.src] = b
	f.mu.Unlock()

	// The device starts without f.mu held: its handshake goes out at once
	// and the reply must reach routineReceive.
	s, err := f.newSimMember(b, priv, inner, uint16(i))
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err != nil:
		delete(f.byAddr, b.src)
		return fmt.Errorf("harness: fleet: member %d: %w", i, err)
	case f.closed:
		s.dev.Close()
		return net.ErrClosed
	}
	f.members = append(f.members, s)
	return nil
}

func (f *Fleet) newSimMember(b *simBind, priv [32]byte, inner netip.Addr, id uint16) (*simMember, error) {
	t := newSimTUN(time.Now)
	dev := device.NewDevice(t, b, device.NewLogger(device.LogLevelSilent, ""))
	cfg := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\npersistent_keepalive_interval=25\nallowed_ip=0.0.0.0/0\n",
		hex.EncodeToString(priv[:]), hex.EncodeToString(f.peer[:]), f.endpoint)
	if err := dev.IpcSet(cfg); err != nil {
		dev.Close()
		return nil, err
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, err
	}
	return &simMember{dev: dev, tun: t, ping: echoRequest(inner, f.target, id)}, nil
}

// Len is the number of members added.
func (f *Fleet) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.members)
}

// StartPinging makes every member send an ICMP echo request to the
// internet host once per period, spread evenly over the period, until
// Close. Later calls change nothing.
func (f *Fleet) StartPinging(period time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.stopPing != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.stopPing = cancel
	f.wg.Add(1)
	go f.routinePing(ctx, period)
}

// Answered is how many members had an echo reply after since.
func (f *Fleet) Answered(since time.Time) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := 0
	for _, s := range f.members {
		if s.tun.lastReply.Load() > since.UnixNano() {
			n++
		}
	}
	return n
}

// WaitPings waits until every member had an echo reply after since, up to
// d; it returns how many had.
func (f *Fleet) WaitPings(ctx context.Context, since time.Time, d time.Duration) int {
	netlab.WaitFor(ctx, d, func() bool { return f.Answered(since) == f.Len() })
	return f.Answered(since)
}

// Close stops the pings, the members' devices and the socket, in that
// order. It is idempotent.
func (f *Fleet) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	if f.stopPing != nil {
		f.stopPing()
	}
	members := f.members
	f.mu.Unlock()
	for _, s := range members {
		s.dev.Close()
	}
	err := f.udp.Close()
	f.wg.Wait()
	return err
}

// routineReceive hands each datagram to the member it is addressed to; a
// full queue drops it, like a socket buffer would.
func (f *Fleet) routineReceive() {
	defer f.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, cm, src, err := f.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if cm == nil {
			continue
		}
		dst, _ := netip.AddrFromSlice(cm.Dst.To4())
		f.mu.RLock()
		b := f.byAddr[dst]
		f.mu.RUnlock()
		ua, ok := src.(*net.UDPAddr)
		if b == nil || !ok {
			continue
		}
		p := simPacket{data: append([]byte(nil), buf[:n]...), from: ua.AddrPort()}
		select {
		case b.in <- p:
		default:
		}
	}
}

// routinePing queues each member's ping once per period, spread evenly
// over 50 ms ticks; a member whose queue is full skips its turn.
func (f *Fleet) routinePing(ctx context.Context, period time.Duration) {
	defer f.wg.Done()
	const tick = 50 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	i := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.RLock()
		n := len(f.members)
		per := max(1, int(int64(n)*int64(tick)/int64(period)))
		for range min(per, n) {
			i %= n
			s := f.members[i]
			select {
			case s.tun.in <- s.ping:
			default:
			}
			i++
		}
		f.mu.RUnlock()
	}
}

// simMember is one simulated member: a wireguard-go device and its ping.
type simMember struct {
	dev  *device.Device
	tun  *simTUN
	ping []byte
}

type simPacket struct {
	data []byte
	from netip.AddrPort
}

// simBind is one member's conn.Bind on the fleet's shared socket.
type simBind struct {
	fleet *Fleet
	src   netip.Addr
	in    chan simPacket

	mu     sync.Mutex
	closed chan struct{} // of the current Open
}

var _ conn.Bind = (*simBind)(nil)

// Open implements conn.Bind: one receive function reading b.in until Close.
func (b *simBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed != nil {
		select {
		case <-b.closed:
		default:
			return nil, 0, conn.ErrBindAlreadyOpen
		}
	}
	closed := make(chan struct{})
	b.closed = closed
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case p := <-b.in:
			sizes[0] = copy(packets[0], p.data)
			eps[0] = simEndpoint(p.from)
			return 1, nil
		case <-closed:
			return 0, net.ErrClosed
		}
	}
	return []conn.ReceiveFunc{recv}, uint16(b.fleet.udp.LocalAddr().(*net.UDPAddr).Port), nil
}

// Close implements conn.Bind; the shared socket stays open.
func (b *simBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed != nil {
		select {
		case <-b.closed:
		default:
			close(b.closed)
		}
	}
	return nil
}

// SetMark implements conn.Bind: there is no mark to set.
func (b *simBind) SetMark(uint32) error { return nil }

// BatchSize implements conn.Bind: one packet at a time keeps a member small.
func (b *simBind) BatchSize() int { return 1 }

// Send implements conn.Bind: from the member's own source address.
func (b *simBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	dst := net.UDPAddrFromAddrPort(netip.AddrPort(ep.(simEndpoint)))
	cm := &ipv4.ControlMessage{Src: b.src.AsSlice()}
	for _, buf := range bufs {
		if _, err := b.fleet.pc.WriteTo(buf, cm, dst); err != nil {
			return err
		}
	}
	return nil
}

// ParseEndpoint implements conn.Bind.
func (b *simBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return simEndpoint(ap), nil
}

// simEndpoint is the node's address as a member sees it.
type simEndpoint netip.AddrPort

var _ conn.Endpoint = simEndpoint{}

func (e simEndpoint) ClearSrc()           {}
func (e simEndpoint) SrcToString() string { return "" }
func (e simEndpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e simEndpoint) DstToBytes() []byte {
	b, _ := netip.AddrPort(e).MarshalBinary()
	return b
}
func (e simEndpoint) DstIP() netip.Addr { return netip.AddrPort(e).Addr() }
func (e simEndpoint) SrcIP() netip.Addr { return netip.Addr{} }

// simTUN is a member's TUN: Read hands out the pings routinePing queues,
// Write records when an echo reply comes back and drops everything.
type simTUN struct {
	in        chan []byte
	events    chan tun.Event
	closed    chan struct{}
	closeOnce sync.Once
	lastReply atomic.Int64 // unix nanos
	now       func() time.Time
}

var _ tun.Device = (*simTUN)(nil)

func newSimTUN(now func() time.Time) *simTUN {
	t := &simTUN{in: make(chan []byte, 4), events: make(chan tun.Event, 1), closed: make(chan struct{}), now: now}
	t.events <- tun.EventUp
	return t
}

func (t *simTUN) File() *os.File { return nil }
func (t *simTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-t.in:
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, nil
	case <-t.closed:
		return 0, os.ErrClosed
	}
}
func (t *simTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		if isEchoReply(b[offset:]) {
			t.lastReply.Store(t.now().UnixNano())
		}
	}
	return len(bufs), nil
}
func (t *simTUN) MTU() (int, error)        { return 1420, nil }
func (t *simTUN) Name() (string, error)    { return "sim", nil }
func (t *simTUN) Events() <-chan tun.Event { return t.events }
func (t *simTUN) BatchSize() int           { return 1 }
func (t *simTUN) Close() error {
	t.closeOnce.Do(func() {
		close(t.closed)
		close(t.events)
	})
	return nil
}

// isEchoReply reports whether p is an IPv4 ICMP echo reply (no IP options:
// the exit's kernel adds none).
func isEchoReply(p []byte) bool {
	return len(p) >= 28 && p[0]>>4 == 4 && p[9] == 1 && p[20] == 0
}

// echoRequest is an IPv4 ICMP echo request from src to dst.
func echoRequest(src, dst netip.Addr, id uint16) []byte {
	p := make([]byte, 20+8+16)
	p[0], p[8], p[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	copy(p[12:16], src.AsSlice())
	copy(p[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
	icmp := p[20:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], 1)
	copy(icmp[8:], "exitd-members!!!")
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return p
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
