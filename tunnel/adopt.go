package tunnel

/* Keeping members connected across a restart of the daemon.

   The TUN and the UDP sockets outlive the process in systemd's fd store
   (the daemon stores them after start; see exitd/service). The next process
   gets them back in LISTEN_FDS and passes them here:

     Options.TUN ──tun.CreateTUNFromFile──▶ same interface, addresses, routes
     Options.UDP ──udpBind──────────────────▶ same socket: nothing queued in it
                                              is lost, no port is ever closed

   Sessions (keys) are not carried over; SetEndpoints and Initiate point each peer at its last
   known endpoint and starts a handshake at once, so members do not wait for
   their own rekey timers (15 s or more).

   udpBind is a conn.Bind over sockets the Tunnel owns for its whole life:
   wireguard-go's Close/Open cycles (device down/up, port rebinds) stop and
   restart the receive functions but keep the sockets, because systemd's
   copy of the socket would make a fresh bind on the same port fail.
   It batches with recvmmsg/sendmmsg and uses UDP GSO (UDP_SEGMENT) for
   sends and GRO for receives where the kernel offers them, like
   wireguard-go's StdNetBind (whose GSO helpers these follow, MIT licence,
   Copyright (C) 2017-2025 WireGuard LLC). Replies leave from the node
   address the member dialled (sticky sources, sticky.go).
*/

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"exitd/keys"
)

// socketBuffer is SO_RCVBUF/SO_SNDBUF, as wireguard-go sets them.
const socketBuffer = 7 << 20

// openTUN adopts opts.TUN when it is a TUN called opts.Name, else creates
// one. A TUN it cannot adopt is closed and reported through adoptErr.
func openTUN(opts Options) (dev tun.Device, adopted bool, adoptErr error, err error) {
	if f := opts.TUN; f != nil {
		d, aerr := tun.CreateTUNFromFile(f, opts.MTU)
		if aerr == nil {
			name, nerr := d.Name()
			if nerr == nil && name == opts.Name {
				return d, true, nil, nil
			}
			d.Close()
			adoptErr = fmt.Errorf("tunnel: inherited TUN is %q (%v), want %q; creating a new one", name, nerr, opts.Name)
		} else {
			f.Close()
			adoptErr = fmt.Errorf("tunnel: adopt inherited TUN: %w; creating a new one", aerr)
		}
	}
	d, err := tun.CreateTUN(opts.Name, opts.MTU)
	if err != nil {
		return nil, false, adoptErr, createError(opts.Name, err)
	}
	return d, false, adoptErr, nil
}

// ListenUDP opens the IPv4 and IPv6 sockets of a bind on port (0 = any),
// with the options wireguard-go uses: large buffers, IPV6_V6ONLY, PKTINFO
// (sticky sources) and UDP GRO. A family the host lacks is skipped; no
// family at all is an error.
func ListenUDP(port int) (v4, v6 *net.UDPConn, err error) {
	v4, port4, err4 := listenUDP("udp4", port)
	if err4 != nil && !errors.Is(err4, syscall.EAFNOSUPPORT) {
		return nil, nil, err4
	}
	if v4 != nil {
		port = port4
	}
	v6, _, err6 := listenUDP("udp6", port)
	if err6 != nil && !errors.Is(err6, syscall.EAFNOSUPPORT) {
		if v4 != nil {
			v4.Close()
		}
		return nil, nil, err6
	}
	if v4 == nil && v6 == nil {
		return nil, nil, syscall.EAFNOSUPPORT
	}
	return v4, v6, nil
}

func listenUDP(network string, port int) (*net.UDPConn, int, error) {
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) {
			s := int(fd)
			for _, o := range []int{unix.SO_RCVBUF, unix.SO_SNDBUF, unix.SO_RCVBUFFORCE, unix.SO_SNDBUFFORCE} {
				_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, o, socketBuffer)
			}
			if network == "udp6" {
				err = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
			}
			if err == nil {
				err = setPktinfo(s, network == "udp6")
			}
			_ = unix.SetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_GRO, 1) // absent before Linux 5.12: no rx offload
		})
		return err
	}}
	pc, err := lc.ListenPacket(nil, network, ":"+strconv.Itoa(port)) //nolint:staticcheck // nil context is fine for a bind
	if err != nil {
		return nil, 0, err
	}
	c := pc.(*net.UDPConn)
	return c, c.LocalAddr().(*net.UDPAddr).Port, nil
}

// adoptUDP turns inherited files into the bind's sockets: each must be a
// UDP socket bound to port; at most one per family. Files are consumed
// (closed) either way; unusable ones are reported, not fatal.
func adoptUDP(files []*os.File, port int) (v4, v6 *net.UDPConn, problems []error) {
	for _, f := range files {
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			problems = append(problems, fmt.Errorf("tunnel: inherited socket %s: %w", f.Name(), err))
			continue
		}
		u, ok := c.(*net.UDPConn)
		la, _ := c.LocalAddr().(*net.UDPAddr)
		switch {
		case !ok || la == nil:
			problems = append(problems, fmt.Errorf("tunnel: inherited socket %s is not UDP (%s)", f.Name(), c.LocalAddr()))
		case la.Port != port:
			problems = append(problems, fmt.Errorf("tunnel: inherited socket %s is bound to port %d, want %d", f.Name(), la.Port, port))
		case is6Socket(u) && v6 == nil:
			v6, u = u, nil
		case !is6Socket(u) && v4 == nil:
			v4, u = u, nil
		default:
			problems = append(problems, fmt.Errorf("tunnel: inherited socket %s: a second socket of its family", f.Name()))
		}
		if u != nil || !ok {
			c.Close()
		}
	}
	return v4, v6, problems
}

func is6Socket(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var dom int
	rc.Control(func(fd uintptr) { dom, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) })
	return dom == unix.AF_INET6
}

// udpBind implements conn.Bind over sockets that live as long as the
// Tunnel (see the top of this file). Open and Close only start and stop
// the receive functions; release closes the sockets.
type udpBind struct {
	mu       sync.Mutex // guards the fields below
	v4, v6   *net.UDPConn
	pc4      *ipv4.PacketConn
	pc6      *ipv6.PacketConn
	port     int
	gen      int  // incremented by Close; receive functions of an older gen return net.ErrClosed
	open     bool // between Open and Close
	released bool

	strict bool // Options.StrictSource: no fallback when a sticky source is gone

	tx4, tx6 atomic.Bool // UDP GSO on send (cleared when the NIC refuses it)
	rx4, rx6 bool        // UDP GRO on receive

	msgs  sync.Pool // *[]ipv6.Message of conn.IdealBatchSize
	addrs sync.Pool // *net.UDPAddr with a 16-byte IP
}

var _ conn.Bind = (*udpBind)(nil)

// newUDPBind makes a bind over v4/v6 (either may be nil; both nil means
// ListenUDP on the first Open).
func newUDPBind(v4, v6 *net.UDPConn, port int) *udpBind {
	b := &udpBind{port: port}
	b.msgs.New = func() any {
		ms := make([]ipv6.Message, conn.IdealBatchSize)
		for i := range ms {
			ms[i].Buffers = make(net.Buffers, 1)
			ms[i].OOB = make([]byte, 0, oobSize)
		}
		return &ms
	}
	b.addrs.New = func() any { return &net.UDPAddr{IP: make(net.IP, 16)} }
	b.setSockets(v4, v6)
	return b
}

func (b *udpBind) setSockets(v4, v6 *net.UDPConn) {
	b.v4, b.v6, b.pc4, b.pc6 = v4, v6, nil, nil
	if v4 != nil {
		enablePktinfo(v4, false)
		b.pc4 = ipv4.NewPacketConn(v4)
		tx, rx := udpOffload(v4)
		b.tx4.Store(tx)
		b.rx4 = rx
	}
	if v6 != nil {
		enablePktinfo(v6, true)
		b.pc6 = ipv6.NewPacketConn(v6)
		tx, rx := udpOffload(v6)
		b.tx6.Store(tx)
		b.rx6 = rx
	}
}

func udpOffload(c *net.UDPConn) (tx, rx bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, false
	}
	rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		tx = err == nil
		v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO)
		rx = err == nil && v == 1
	})
	return tx, rx
}

// Sockets returns the bind's current sockets (nil for a missing family).
func (b *udpBind) Sockets() (v4, v6 *net.UDPConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v4, b.v6
}

// Open starts receiving on the sockets. A port other than the sockets'
// (an operator's `wg set listen-port`) replaces them with new ones.
func (b *udpBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.released {
		return nil, 0, net.ErrClosed
	}
	if b.open {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	if b.v4 == nil && b.v6 == nil || int(port) != b.port && port != 0 {
		b.closeSocketsLocked()
		v4, v6, err := ListenUDP(int(port))
		if err != nil {
			return nil, 0, err
		}
		b.setSockets(v4, v6)
		b.port = localPort(v4, v6)
	}
	var fns []conn.ReceiveFunc
	gen := b.gen
	if b.v4 != nil {
		b.v4.SetReadDeadline(time.Time{})
		fns = append(fns, b.receiveFunc(b.pc4, b.rx4, gen))
	}
	if b.v6 != nil {
		b.v6.SetReadDeadline(time.Time{})
		fns = append(fns, b.receiveFunc(b.pc6, b.rx6, gen))
	}
	b.open = true
	return fns, uint16(b.port), nil
}

func localPort(v4, v6 *net.UDPConn) int {
	for _, c := range []*net.UDPConn{v4, v6} {
		if c != nil {
			return c.LocalAddr().(*net.UDPAddr).Port
		}
	}
	return 0
}

// Close stops the receive functions (they return net.ErrClosed) but keeps
// the sockets; see release.
func (b *udpBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return nil
	}
	b.open = false
	b.gen++
	past := time.Unix(1, 0)
	for _, c := range []*net.UDPConn{b.v4, b.v6} {
		if c != nil {
			c.SetReadDeadline(past) // wakes receivers blocked in recvmmsg
		}
	}
	return nil
}

// release closes the sockets for good. Idempotent.
func (b *udpBind) release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.open, b.released = false, true
	b.gen++
	return b.closeSocketsLocked()
}

func (b *udpBind) closeSocketsLocked() error {
	var errs []error
	for _, c := range []*net.UDPConn{b.v4, b.v6} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	b.setSockets(nil, nil)
	return errors.Join(errs...)
}

func (b *udpBind) current(gen int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open && b.gen == gen
}

// SetMark sets SO_MARK on both sockets.
func (b *udpBind) SetMark(mark uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range []*net.UDPConn{b.v4, b.v6} {
		if c == nil {
			continue
		}
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)) }); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("tunnel: set fwmark: %w", serr)
		}
	}
	return nil
}

// BatchSize is wireguard-go's ideal batch.
func (b *udpBind) BatchSize() int { return conn.IdealBatchSize }

// ParseEndpoint parses "ip:port".
func (b *udpBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &endpoint{ap: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
}

type batchReader interface {
	ReadBatch([]ipv6.Message, int) (int, error)
}

type batchWriter interface {
	WriteBatch([]ipv6.Message, int) (int, error)
}

func (b *udpBind) getMsgs() *[]ipv6.Message { return b.msgs.Get().(*[]ipv6.Message) }

func (b *udpBind) putMsgs(ms *[]ipv6.Message) {
	resetMsgs(*ms)
	b.msgs.Put(ms)
}

func resetMsgs(ms []ipv6.Message) {
	for i := range ms {
		ms[i] = ipv6.Message{Buffers: ms[i].Buffers, OOB: ms[i].OOB[:0]}
	}
}

// udpSegmentMax is the kernel's limit of datagrams in one GSO/GRO buffer.
const udpSegmentMax = 64

func (b *udpBind) receiveFunc(br batchReader, gro bool, gen int) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		ms := b.getMsgs()
		defer b.putMsgs(ms)
		for i := range bufs {
			(*ms)[i].Buffers[0] = bufs[i]
			(*ms)[i].OOB = (*ms)[i].OOB[:cap((*ms)[i].OOB)]
		}
		var n int
		var err error
		if gro {
			// Read few coalesced buffers into the tail; split into the head.
			at := len(bufs) - len(bufs)/udpSegmentMax
			if at == len(bufs) {
				at = len(bufs) - 1
			}
			if _, err = br.ReadBatch((*ms)[at:len(bufs)], 0); err == nil {
				n, err = splitCoalesced((*ms)[:len(bufs)], at)
			}
		} else {
			n, err = br.ReadBatch((*ms)[:len(bufs)], 0)
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !b.current(gen) || errors.Is(err, net.ErrClosed) {
				return 0, net.ErrClosed
			}
			return 0, err
		}
		for i := range n {
			m := &(*ms)[i]
			sizes[i] = m.N
			if m.N == 0 {
				continue
			}
			ua := m.Addr.(*net.UDPAddr).AddrPort()
			ep := &endpoint{ap: netip.AddrPortFrom(ua.Addr().Unmap(), ua.Port()), strict: b.strict}
			if c, err := parseControl(m.OOB[:m.NN]); err == nil {
				ep.setSrc(c)
			}
			eps[i] = ep
		}
		return n, nil
	}
}

// Send sends bufs to ep, coalesced into GSO super-datagrams when the
// socket supports it (falling back for good when the NIC refuses, EIO),
// from ep's sticky source when it has one (see writeSticky).
func (b *udpBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*endpoint)
	if !ok {
		return fmt.Errorf("tunnel: endpoint of type %T", ep)
	}
	b.mu.Lock()
	is6 := e.ap.Addr().Is6()
	var bw batchWriter
	var c *net.UDPConn
	tx := &b.tx4
	if is6 {
		c, tx = b.v6, &b.tx6
		if b.pc6 != nil {
			bw = b.pc6
		}
	} else {
		c = b.v4
		if b.pc4 != nil {
			bw = b.pc4
		}
	}
	b.mu.Unlock()
	if c == nil || bw == nil {
		return syscall.EAFNOSUPPORT
	}
	ms := b.getMsgs()
	defer b.putMsgs(ms)
	ua := b.addrs.Get().(*net.UDPAddr)
	defer b.addrs.Put(ua)
	ua.IP = ua.IP[:16]
	if is6 {
		a16 := e.ap.Addr().As16()
		copy(ua.IP, a16[:])
	} else {
		a4 := e.ap.Addr().As4()
		ua.IP = ua.IP[:copy(ua.IP, a4[:])]
	}
	ua.Port = int(e.ap.Port())
	var ctl [srcControlMax]byte
	if tx.Load() {
		n := coalesce(ua, is6, bufs, *ms)
		err := writeSticky(bw, (*ms)[:n], e, e.srcControl(&ctl), b.strict)
		if err == nil || !gsoRefused(err) {
			return err
		}
		tx.Store(false)
		resetMsgs(*ms)
	}
	for i := range bufs {
		(*ms)[i].Addr = ua
		(*ms)[i].Buffers[0] = bufs[i]
	}
	return writeSticky(bw, (*ms)[:len(bufs)], e, e.srcControl(&ctl), b.strict)
}

// writeAll sends ms and returns how many went out: all, or those before
// the one that failed.
func writeAll(bw batchWriter, ms []ipv6.Message) (int, error) {
	start := 0
	for start < len(ms) {
		n, err := bw.WriteBatch(ms[start:], 0)
		if err != nil {
			return start, err
		}
		start += n
	}
	return start, nil
}

// gsoRefused: the driver lacks tx checksum offload, which UDP_SEGMENT needs.
func gsoRefused(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se) && se.Err == unix.EIO
}

// Payload limits of one GSO buffer (beyond them sendmsg fails EMSGSIZE).
const (
	maxIPv4Payload = 1<<16 - 1 - 20 - 8
	maxIPv6Payload = 1<<16 - 1 - 8
)

// coalesce packs consecutive bufs of equal size (the last may be shorter)
// into GSO buffers appended in place, and returns how many msgs it used.
func coalesce(addr *net.UDPAddr, is6 bool, bufs [][]byte, ms []ipv6.Message) int {
	limit := maxIPv4Payload
	if is6 {
		limit = maxIPv6Payload
	}
	base, seg, count, ended := -1, 0, 0, false
	for i, buf := range bufs {
		if i > 0 {
			have := len(ms[base].Buffers[0])
			if have+len(buf) <= limit && len(buf) <= seg && len(buf) <= cap(ms[base].Buffers[0])-have &&
				count < udpSegmentMax && !ended {
				ms[base].Buffers[0] = append(ms[base].Buffers[0], buf...)
				count++
				if i == len(bufs)-1 {
					setGSO(&ms[base].OOB, uint16(seg))
				}
				ended = len(buf) < seg // a short tail ends the run
				continue
			}
		}
		if count > 1 {
			setGSO(&ms[base].OOB, uint16(seg))
		}
		base++
		ms[base].Buffers[0], ms[base].Addr, ms[base].OOB = buf, addr, ms[base].OOB[:0]
		seg, count, ended = len(buf), 1, false
	}
	return base + 1
}

// setGSO appends a UDP_SEGMENT control message.
func setGSO(oob *[]byte, size uint16) {
	space := unix.CmsgSpace(2)
	if cap(*oob)-len(*oob) < space {
		return
	}
	at := len(*oob)
	*oob = (*oob)[:at+space]
	h := (*unix.Cmsghdr)(unsafe.Pointer(&(*oob)[at]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&(*oob)[at+unix.CmsgLen(0)])) = size
}

// splitCoalesced splits the GRO buffers read into ms[at:] into single
// datagrams in ms[0:], returning how many there are. Each datagram gets
// a copy of its buffer's control messages (PKTINFO: its sticky source).
func splitCoalesced(ms []ipv6.Message, at int) (int, error) {
	n := 0
	for i := at; i < len(ms); i++ {
		m := &ms[i]
		if m.N == 0 {
			break
		}
		seg, err := groSize(m.OOB[:m.NN])
		if err != nil {
			return n, err
		}
		parts, end := 1, m.N
		if seg > 0 {
			parts, end = (m.N+seg-1)/seg, seg
		}
		for start, j := 0, 0; j < parts; j++ {
			if n > i {
				return n, errors.New("tunnel: GRO split overflows the batch")
			}
			ms[n].N = copy(ms[n].Buffers[0], m.Buffers[0][start:end])
			ms[n].Addr = m.Addr
			if n != i {
				ms[n].OOB = ms[n].OOB[:cap(ms[n].OOB)]
				ms[n].NN = copy(ms[n].OOB, m.OOB[:m.NN])
			}
			start, end = end, min(end+seg, m.N)
			n++
		}
		if i != n-1 {
			m.N = 0
		}
	}
	return n, nil
}

// SetEndpoints points each peer at its last known endpoint (a restart's
// rejoin; Initiate then starts the handshakes). Peers must already exist;
// unknown keys and bad endpoints are skipped and reported in the joined
// error. It returns the keys it set.
func (t *Tunnel) SetEndpoints(endpoints map[keys.Key]netip.AddrPort) ([]keys.Key, error) {
	var b strings.Builder
	var errs []error
	var set []keys.Key
	for k, ep := range endpoints {
		if !ep.IsValid() || ep.Port() == 0 {
			errs = append(errs, fmt.Errorf("tunnel: rejoin %s: bad endpoint %q", k, ep))
			continue
		}
		if t.dev.LookupPeer(device.NoisePublicKey(k)) == nil {
			errs = append(errs, fmt.Errorf("tunnel: rejoin %s: no such peer", k))
			continue
		}
		fmt.Fprintf(&b, "public_key=%s\nupdate_only=true\nendpoint=%s\n", k.Hex(), ep)
		set = append(set, k)
	}
	if b.Len() > 0 {
		if err := t.dev.IpcSet(b.String()); err != nil {
			return nil, errors.Join(append(errs, fmt.Errorf("tunnel: set endpoints: %w", err))...)
		}
	}
	return set, errors.Join(errs...)
}

// Initiate starts a handshake with each peer now, instead of waiting for
// the member's rekey timer: with no session, the keepalive it stages makes
// an initiation go out first. Unknown keys are skipped.
func (t *Tunnel) Initiate(ks []keys.Key) {
	for _, k := range ks {
		if p := t.dev.LookupPeer(device.NoisePublicKey(k)); p != nil {
			p.SendKeepalive()
		}
	}
}

// Handover returns what a successor process needs to keep members
// connected: the TUN (unwrapped) and the UDP sockets, by the names the
// daemon stores them under. The Tunnel keeps ownership.
func (t *Tunnel) Handover() map[string]syscall.Conn {
	out := map[string]syscall.Conn{}
	if f := t.raw.File(); f != nil {
		out[HandoverTUN] = f
	}
	if t.ub == nil {
		return out
	}
	v4, v6 := t.ub.Sockets()
	if v4 != nil {
		out[HandoverUDP4] = v4
	}
	if v6 != nil {
		out[HandoverUDP6] = v6
	}
	return out
}

// Adopted reports whether the file Handover returns under name is the one
// a predecessor process handed over (rather than one made by this process).
func (t *Tunnel) Adopted(name string) bool { return t.adopted[name] }

// Names under which Handover returns the files (and the daemon stores them).
const (
	HandoverTUN  = "tun"
	HandoverUDP4 = "udp4"
	HandoverUDP6 = "udp6"
)
