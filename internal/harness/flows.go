package harness

// Flows: filling an exit's connection tracking table from one member with
// flows the kernel cannot evict early (`exitlab conn-bench`).
//
//	member ── FlowSender: one datagram per new flow, socket × port ──▶ exit (exitd) ──▶ internet host
//	internet host: UDPEcho reads UDP to ports 1024-65535 from a packet
//	  socket (routineEcho) and answers from the port it was sent to, at
//	  once and once more Delay later (routineRepeat, a FIFO: every entry
//	  waits the same); nft drops those datagrams before the host's UDP
//	  stack (no port-unreachable) and nothing there is tracked
//	exit: ReplySink drops the answers in the forward hook, after the exit's
//	  conntrack has seen them and before they load the tunnel, and counts
//	  the member's new flows before and after exitd's forward chain
//
// Why twice: conntrack's early_drop makes room for a new connection by
// evicting an entry that is not ASSURED, and a UDP entry becomes ASSURED
// when it has seen a reply and then one more packet at least 2 s after it
// started. Flows answered only once stay evictable, and a full table of
// them would not stop anyone else's new connections.
//
// Why a packet socket and not an nft redirect to one socket: a redirect
// gives every flow from one source address the same reply tuple (the
// echo's port, the exit's address), which NAT makes unique by changing
// the source port, so one exit address gets at most 64,512 flows to it;
// answering from the original port needs no NAT and no conntrack on the
// host at all.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"exitd/internal/netlab"
)

// Ports a FlowSender sends to and a UDPEcho answers on: the unprivileged
// range, so the lab's services below 1024 (DNS) are left alone.
const (
	FlowPortFirst = 1024
	FlowPortLast  = 65535
	FlowPorts     = FlowPortLast - FlowPortFirst + 1 // flows per source socket
)

// Names of the nft tables the helpers install.
const (
	echoTable = "exitlab_echo"
	sinkTable = "exitlab_sink"
)

// flowBatch is the number of datagrams per sendmmsg.
const flowBatch = 64

// echoRules is the internet host's table: nothing is tracked (the host
// is not under test, and its own table would fill with the flows too),
// and UDP to the flow ports, answered by the echo's packet socket, never
// reaches the host's UDP stack.
func echoRules() string {
	return fmt.Sprintf(`table ip %[1]s {
	chain raw_pre {
		type filter hook prerouting priority raw; policy accept;
		notrack
	}
	chain raw_out {
		type filter hook output priority raw; policy accept;
		notrack
	}
	chain in {
		type filter hook input priority filter; policy accept;
		udp dport %[2]d-%[3]d drop
	}
}
`, echoTable, FlowPortFirst, FlowPortLast)
}

// EchoOptions configure StartUDPEcho.
type EchoOptions struct {
	// Addr is the address the flows are sent to and answered from;
	// default netlab.Internet4.
	Addr netip.Addr
	// Iface is the namespace's interface the flows arrive on; default
	// netlab.InternetIface.
	Iface string
	// Delay is when each datagram is answered a second time; 0 means
	// 2.5 s (conntrack assures a UDP flow from 2 s on).
	Delay time.Duration
	// RcvBuf is the packet socket's receive buffer (SO_RCVBUFFORCE); 0
	// means 64 MiB, seconds of a flood.
	RcvBuf int
}

// EchoCounts are what a UDPEcho did.
type EchoCounts struct {
	Received uint64 // datagrams (each a new flow) answered at once
	Repeated uint64 // second answers sent
	Errors   uint64 // answers the kernel refused (buffer full)
}

// UDPEcho answers every UDP datagram to ports FlowPortFirst-FlowPortLast
// arriving in its namespace twice. Its methods may be called concurrently.
type UDPEcho struct {
	ns    *netlab.NS
	addr  netip.Addr
	rx    int              // AF_PACKET, IPv4 packets of the interface
	tx    *ipv4.PacketConn // raw IPPROTO_UDP: the kernel adds the IP header
	txc   net.PacketConn
	delay time.Duration

	received, repeated, errs atomic.Uint64

	mu      sync.Mutex    // guards pending
	pending []echoPending // second answers due, oldest first

	wake  chan struct{}  // routineRepeat: pending grew (cap 1)
	stop  chan struct{}  // closed by Close
	wg    sync.WaitGroup // routineEcho, routineRepeat
	once  sync.Once      // Close
	cerr  error          // Close's result
	reply []byte         // the answers' payload, after the UDP header
}

// echoPending is a second answer: to (the flow's source) from port.
type echoPending struct {
	to   netip.AddrPort
	from uint16
	due  time.Time
}

// echoPoll is how long routineEcho blocks in one read before it checks
// whether Close was called.
const echoPoll = 200 * time.Millisecond

// StartUDPEcho installs the table in ns and starts answering. Close stops
// it and removes the table.
func StartUDPEcho(ctx context.Context, ns *netlab.NS, o EchoOptions) (*UDPEcho, error) {
	if !o.Addr.IsValid() {
		o.Addr = netip.MustParseAddr(netlab.Internet4)
	}
	if !o.Addr.Is4() {
		return nil, fmt.Errorf("harness: echo: %v is not an IPv4 address", o.Addr)
	}
	if o.Iface == "" {
		o.Iface = netlab.InternetIface
	}
	if o.Delay == 0 {
		o.Delay = 2500 * time.Millisecond
	}
	if o.RcvBuf == 0 {
		o.RcvBuf = 64 << 20
	}
	e := &UDPEcho{ns: ns, addr: o.Addr, rx: -1, delay: o.Delay,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), reply: []byte("exitlab-echo")}
	err := ns.Run(func() error {
		ifi, err := net.InterfaceByName(o.Iface)
		if err != nil {
			return err
		}
		proto := int(hton16(unix.ETH_P_IP))
		if e.rx, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(e.rx, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.RcvBuf); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(echoPoll.Nanoseconds())
		if err := unix.SetsockoptTimeval(e.rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		if err := unix.Bind(e.rx, &unix.SockaddrLinklayer{Protocol: hton16(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
			return err
		}
		e.txc, err = net.ListenPacket("ip4:udp", o.Addr.String()) // answers come from Addr
		return err
	})
	if err != nil {
		e.closeSockets()
		return nil, fmt.Errorf("harness: echo: sockets in %s: %w", ns.Name, err)
	}
	e.tx = ipv4.NewPacketConn(e.txc)
	if err := nftLoad(ctx, ns, echoRules()); err != nil {
		e.closeSockets()
		return nil, fmt.Errorf("harness: echo: %w", err)
	}
	e.wg.Add(2)
	go e.routineEcho()
	go e.routineRepeat()
	return e, nil
}

func hton16(v uint16) uint16 { return v<<8 | v>>8 }

func (e *UDPEcho) closeSockets() {
	if e.rx >= 0 {
		unix.Close(e.rx)
	}
	if e.txc != nil {
		e.txc.Close()
	}
}

// Counts returns what the echo did so far.
func (e *UDPEcho) Counts() EchoCounts {
	return EchoCounts{Received: e.received.Load(), Repeated: e.repeated.Load(), Errors: e.errs.Load()}
}

// Pending returns the second answers not yet sent.
func (e *UDPEcho) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pending)
}

// Close stops answering (second answers still due are dropped) and
// removes the table. It is idempotent.
func (e *UDPEcho) Close() error {
	e.once.Do(func() {
		close(e.stop)
		e.wg.Wait() // routineEcho sees stop within echoPoll
		e.closeSockets()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.cerr = nftDelete(ctx, e.ns, echoTable)
	})
	return e.cerr
}

// echoFlow returns the source and destination port of the UDP datagram in
// the IPv4 packet p when it is one the echo answers: unfragmented, to dst
// at a port in FlowPortFirst-FlowPortLast.
func echoFlow(p []byte, dst netip.Addr) (src netip.AddrPort, dport uint16, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_UDP || netip.AddrFrom4([4]byte(p[16:20])) != dst {
		return netip.AddrPort{}, 0, false
	}
	ihl, total := int(p[0]&0x0f)*4, int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < 20 || total > len(p) || total < ihl+8 || binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 {
		return netip.AddrPort{}, 0, false // short, truncated, or a fragment
	}
	sport := binary.BigEndian.Uint16(p[ihl : ihl+2])
	dport = binary.BigEndian.Uint16(p[ihl+2 : ihl+4])
	if dport < FlowPortFirst {
		return netip.AddrPort{}, 0, false
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[12:16])), sport), dport, true
}

// putAnswer writes into b (8 bytes + payload) the UDP datagram from port
// from to port to carrying payload, without a checksum (optional over
// IPv4), and returns it.
func putAnswer(b []byte, from, to uint16, payload []byte) []byte {
	b = b[:8+len(payload)]
	binary.BigEndian.PutUint16(b[0:2], from)
	binary.BigEndian.PutUint16(b[2:4], to)
	binary.BigEndian.PutUint16(b[4:6], uint16(len(b)))
	binary.BigEndian.PutUint16(b[6:8], 0)
	copy(b[8:], payload)
	return b
}

// routineEcho reads the interface's IPv4 packets, answers each flow
// datagram at once and queues its second answer.
func (e *UDPEcho) routineEcho() {
	defer e.wg.Done()
	buf := make([]byte, 2048)
	out := make([]ipv4.Message, flowBatch)
	bufs := make([][]byte, flowBatch)
	addrs := make([]net.IPAddr, flowBatch)
	for i := range bufs {
		bufs[i] = make([]byte, 8+len(e.reply))
		out[i].Buffers = [][]byte{nil}
	}
	n := 0
	flush := func() {
		e.send(out[:n], &e.received)
		n = 0
	}
	for {
		select {
		case <-e.stop:
			return
		default:
		}
		// Non-blocking while a batch is being gathered, else up to echoPoll.
		flags := 0
		if n > 0 {
			flags = unix.MSG_DONTWAIT
		}
		k, _, err := unix.Recvfrom(e.rx, buf, flags)
		if err != nil {
			if n > 0 {
				flush()
			}
			continue // EAGAIN (timeout or nothing more), EINTR
		}
		src, dport, ok := echoFlow(buf[:k], e.addr)
		if !ok {
			continue
		}
		addrs[n] = net.IPAddr{IP: src.Addr().AsSlice()}
		out[n].Buffers[0] = putAnswer(bufs[n], dport, src.Port(), e.reply)
		out[n].Addr = &addrs[n]
		n++
		e.mu.Lock()
		e.pending = append(e.pending, echoPending{to: src, from: dport, due: time.Now().Add(e.delay)})
		e.mu.Unlock()
		if n == flowBatch {
			flush()
		}
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// routineRepeat sends the second answers when they are due.
func (e *UDPEcho) routineRepeat() {
	defer e.wg.Done()
	out := make([]ipv4.Message, flowBatch)
	bufs := make([][]byte, flowBatch)
	addrs := make([]net.IPAddr, flowBatch)
	for i := range bufs {
		bufs[i] = make([]byte, 8+len(e.reply))
		out[i].Buffers = [][]byte{nil}
	}
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		e.mu.Lock()
		now := time.Now()
		n := 0
		for n < len(e.pending) && n < flowBatch && !e.pending[n].due.After(now) {
			p := e.pending[n]
			addrs[n] = net.IPAddr{IP: p.to.Addr().AsSlice()}
			out[n].Buffers[0] = putAnswer(bufs[n], p.from, p.to.Port(), e.reply)
			out[n].Addr = &addrs[n]
			n++
		}
		var wait time.Duration = -1 // nothing queued
		switch {
		case n > 0:
			e.pending = e.pending[n:]
			if len(e.pending) == 0 {
				e.pending = nil // let the backing array go
			}
		case len(e.pending) > 0:
			wait = e.pending[0].due.Sub(now)
		}
		e.mu.Unlock()
		if n > 0 {
			e.send(out[:n], &e.repeated)
			continue
		}
		if wait >= 0 {
			t.Reset(wait)
		}
		select {
		case <-e.stop:
			return
		case <-e.wake:
		case <-t.C:
		}
	}
}

// send writes ms, counting what went out in sent and what the kernel
// refused in errs.
func (e *UDPEcho) send(ms []ipv4.Message, sent *atomic.Uint64) {
	for len(ms) > 0 {
		k, err := e.tx.WriteBatch(ms, 0)
		k = max(k, 0)
		sent.Add(uint64(k))
		ms = ms[k:]
		if err != nil {
			// A full buffer: drop the rest of the batch, count it.
			e.errs.Add(uint64(len(ms)))
			return
		}
	}
}

// sinkRules is the exit's table: answers from echo to member are dropped
// before exitd's forward chain (priority filter) would pass them into the
// tunnel; member's new flows are counted on both sides of that chain.
func sinkRules(echo, member netip.Addr) string {
	return fmt.Sprintf(`table ip %[1]s {
	counter replies { }
	counter flows_in { }
	counter flows_out { }
	chain early {
		type filter hook forward priority filter - 10; policy accept;
		ip saddr %[2]s ip daddr %[3]s udp sport %[4]d-%[5]d counter name "replies" drop
		ip saddr %[3]s ct state new counter name "flows_in"
	}
	chain late {
		type filter hook forward priority filter + 10; policy accept;
		ip saddr %[3]s ct state new counter name "flows_out"
	}
}
`, sinkTable, echo, member, FlowPortFirst, FlowPortLast)
}

// ReplySink is the exit-side half of a flow flood (see the top of the
// file).
type ReplySink struct {
	ns   *netlab.NS
	once sync.Once
	cerr error
}

// SinkCounts are a ReplySink's counters (packets).
type SinkCounts struct {
	Replies uint64 // answers dropped before the tunnel
	In      uint64 // the member's new flows reaching the forward hook
	Out     uint64 // ... and passing exitd's forward chain
}

// Dropped is the member's new flows exitd's forward chain dropped (its
// quota and rate rules, for a member that sends nothing else).
func (c SinkCounts) Dropped() uint64 { return c.In - min(c.Out, c.In) }

// StartReplySink installs the sink in the exit namespace for flows from
// member (an inner address) answered by echo (the internet host).
func StartReplySink(ctx context.Context, exit *netlab.NS, echo, member netip.Addr) (*ReplySink, error) {
	if !echo.Is4() || !member.Is4() {
		return nil, fmt.Errorf("harness: sink: want IPv4 addresses, got %v and %v", echo, member)
	}
	if err := nftLoad(ctx, exit, sinkRules(echo, member)); err != nil {
		return nil, fmt.Errorf("harness: sink: %w", err)
	}
	return &ReplySink{ns: exit}, nil
}

// Counts reads the sink's counters.
func (s *ReplySink) Counts(ctx context.Context) (SinkCounts, error) {
	out, err := s.ns.Exec(ctx, "nft", "-j", "list", "table", "ip", sinkTable)
	if err != nil {
		return SinkCounts{}, err
	}
	m, err := ParseNftCounters(out)
	if err != nil {
		return SinkCounts{}, err
	}
	return SinkCounts{Replies: m["replies"], In: m["flows_in"], Out: m["flows_out"]}, nil
}

// Close removes the sink's table. It is idempotent.
func (s *ReplySink) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.cerr = nftDelete(ctx, s.ns, sinkTable)
	})
	return s.cerr
}

// ParseNftCounters returns the packet count of every named counter in
// `nft -j list table` output.
func ParseNftCounters(b []byte) (map[string]uint64, error) {
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("harness: parse nft json: %w", err)
	}
	out := map[string]uint64{}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			out[o.Counter.Name] = o.Counter.Packets
		}
	}
	if len(out) == 0 {
		return nil, errors.New("harness: no named counters in nft output")
	}
	return out, nil
}

func nftLoad(ctx context.Context, ns *netlab.NS, rules string) error {
	cmd := ns.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f in %s: %v: %s", ns.Name, err, out)
	}
	return nil
}

// nftDelete removes an ip table of ns; a table (or namespace) already gone
// is not an error.
func nftDelete(ctx context.Context, ns *netlab.NS, table string) error {
	out, err := ns.Command(ctx, "nft", "delete", "table", "ip", table).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") && !strings.Contains(string(out), "does not exist") {
		return fmt.Errorf("harness: nft delete table ip %s in %s: %v: %s", table, ns.Name, err, out)
	}
	return nil
}

// FlowSender opens new UDP flows from a namespace: flow k is one datagram
// from socket k / FlowPorts to port FlowPortFirst + k % FlowPorts of the
// destination. It is not safe for concurrent use.
type FlowSender struct {
	dst   [4]byte
	socks []*net.UDPConn
	pcs   []*ipv4.PacketConn
	next  int // the next flow
	ms    []ipv4.Message
	addrs []net.UDPAddr
}

// ErrFlowsExhausted is returned by Send when every flow has been opened.
var ErrFlowsExhausted = errors.New("harness: every flow of the sender has been opened")

// NewFlowSender opens sockets UDP sockets in ns towards dst. The sockets
// report a full device queue (IP_RECVERR), so Send can tell backpressure
// from sending.
func NewFlowSender(ns *netlab.NS, dst netip.Addr, sockets int) (*FlowSender, error) {
	if !dst.Is4() || sockets < 1 {
		return nil, fmt.Errorf("harness: flows: want an IPv4 destination and at least one socket, got %v and %d", dst, sockets)
	}
	s := &FlowSender{dst: dst.As4(), ms: make([]ipv4.Message, flowBatch), addrs: make([]net.UDPAddr, flowBatch)}
	payload := []byte("exitlab-flow")
	for i := range s.ms {
		s.ms[i].Buffers = [][]byte{payload}
	}
	for range sockets {
		var c *net.UDPConn
		err := ns.Run(func() error {
			var err error
			c, err = net.ListenUDP("udp4", &net.UDPAddr{})
			return err
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("harness: flows: socket in %s: %w", ns.Name, err)
		}
		s.socks = append(s.socks, c)
		rc, err := c.SyscallConn()
		if err == nil {
			rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1) })
		}
		c.SetWriteBuffer(4 << 20)
		s.pcs = append(s.pcs, ipv4.NewPacketConn(c))
	}
	return s, nil
}

// Cap is the number of flows the sender can open.
func (s *FlowSender) Cap() int { return len(s.socks) * FlowPorts }

// Opened is the number of flows sent so far.
func (s *FlowSender) Opened() int { return s.next }

// flowAt returns the socket index and destination port of flow k.
func flowAt(k int) (sock, port int) { return k / FlowPorts, FlowPortFirst + k%FlowPorts }

// Send opens up to n new flows and returns how many it sent. It stops
// early, without an error, when the kernel reports a full queue
// (ENOBUFS, EAGAIN); after the last flow it returns ErrFlowsExhausted.
func (s *FlowSender) Send(n int) (int, error) {
	sent := 0
	for sent < n {
		if s.next >= s.Cap() {
			return sent, ErrFlowsExhausted
		}
		sock, _ := flowAt(s.next)
		// One batch: the flows left on this socket, at most flowBatch.
		k := min(n-sent, flowBatch, (sock+1)*FlowPorts-s.next)
		for i := range k {
			_, port := flowAt(s.next + i)
			s.addrs[i] = net.UDPAddr{IP: s.dst[:], Port: port}
			s.ms[i].Addr = &s.addrs[i]
		}
		w, err := s.pcs[sock].WriteBatch(s.ms[:k], 0)
		w = max(w, 0)
		s.next += w
		sent += w
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
				return sent, nil
			}
			return sent, fmt.Errorf("harness: flows: send: %w", err)
		}
		if w < k {
			return sent, nil
		}
	}
	return sent, nil
}

// Close closes the sockets.
func (s *FlowSender) Close() error {
	var errs []error
	for _, c := range s.socks {
		errs = append(errs, c.Close())
	}
	s.socks, s.pcs = nil, nil
	return errors.Join(errs...)
}
