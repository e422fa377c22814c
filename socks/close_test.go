package socks

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestClose ends sessions in every phase, is idempotent, and leaves no
// goroutine behind (checked by startServer's cleanup).
func TestClose(t *testing.T) {
	echo := echoServer(t, lo4)
	opts := testOptions()
	opts.UploadLimit = func(m string) uint64 {
		if m == "member-::1" {
			return 8000 // 1 kB/s: the session below waits in the pacer
		}
		return 0
	}
	s, px := startServer(t, opts, tunnelCfg, false)
	l6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	served6 := make(chan error, 1)
	go func() { served6 <- s.Serve(l6, tunnelCfg) }()

	relaying := mustConnect(t, px, ipAddr(echo))
	roundTrip(t, relaying, "live")
	handshaking := dialClient(t, px)
	handshaking.Write([]byte{5, 1})
	udpCtl, _, _ := associate(t, px, addr{ip: netip.IPv4Unspecified()})
	paced := mustConnect(t, l6.Addr().(*net.TCPAddr).AddrPort(), ipAddr(echo))
	paced.Write(make([]byte, 256<<10))
	waitFor(t, "paced upload to stall", func() bool {
		st := s.Stats()
		return st.SessionsActive == 4 && st.BytesUp >= 64<<10
	})

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := <-served6; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	for name, c := range map[string]*client{"relaying": relaying, "handshaking": handshaking, "udp": udpCtl, "paced": paced} {
		// Unread upload makes the kernel answer the close with a reset.
		if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: %v after Close, want EOF or reset", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if st := s.Stats(); st.SessionsActive != 0 {
		t.Errorf("SessionsActive = %d after Close", st.SessionsActive)
	}
	if _, err := net.Dial("tcp", px.String()); err == nil {
		t.Error("listener still accepting after Close")
	}
	l, _ := net.Listen("tcp4", "127.0.0.1:0")
	if err := s.Serve(l, tunnelCfg); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
}

// fdListener fails Accept with EMFILE a few times, then serves a real
// listener, recording when Accept was called.
type fdListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	calls []time.Time
}

func (l *fdListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	fail := l.fails > 0
	l.fails--
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestAcceptBackoffOnEMFILE(t *testing.T) {
	echo := echoServer(t, lo4)
	leakCheckOnce(t)
	s, err := New(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	s.backoffMin, s.backoffMax = 2*time.Millisecond, 8*time.Millisecond
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &fdListener{Listener: inner, fails: 5}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l, tunnelCfg) }()

	// The client's connection waits in the backlog until accepting resumes.
	c := mustConnect(t, inner.Addr().(*net.TCPAddr).AddrPort(), ipAddr(echo))
	roundTrip(t, c, "after EMFILE")
	if st := s.Stats(); st.RefusedNoFD != 5 {
		t.Errorf("RefusedNoFD = %d, want 5", st.RefusedNoFD)
	}
	l.mu.Lock()
	calls := append([]time.Time(nil), l.calls...)
	l.mu.Unlock()
	// Back-off 2, 4, 8, 8, 8 ms between the six calls: no busy loop.
	want := []time.Duration{2, 4, 8, 8, 8}
	for i := 1; i < 6 && i < len(calls); i++ {
		if d := calls[i].Sub(calls[i-1]); d < want[i-1]*time.Millisecond*9/10 {
			t.Errorf("accept %d came %v after the previous, want ≥ %v ms", i, d, want[i-1])
		}
	}
	s.Close()
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}

// TestAcceptFatalError: other accept errors end Serve.
func TestAcceptFatalError(t *testing.T) {
	s, err := New(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, _ := net.Listen("tcp4", "127.0.0.1:0")
	l.Close() // closed behind the server's back
	if err := s.Serve(l, tunnelCfg); err == nil || errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve on a closed listener: %v", err)
	}
}

// TestConcurrentSessionsAndClose runs many sessions at once, TCP and UDP,
// and closes the server in the middle of the traffic (meant for -race).
func TestConcurrentSessionsAndClose(t *testing.T) {
	echo := echoServer(t, lo4)
	uecho := udpEcho(t, lo4)
	s, px := startServer(t, testOptions(), tunnelCfg, false)
	const n = 32
	var wg sync.WaitGroup
	started := make(chan struct{}, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := busyClient(px, echo, uecho, i%4 == 0, started); err != nil {
				errs <- err
			}
		}()
	}
	for range n {
		<-started
	}
	s.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// busyClient moves data until the server closes; errors other than the
// connection ending are returned.
func busyClient(px, echo, uecho netip.AddrPort, udp bool, started chan<- struct{}) error {
	c, err := net.Dial("tcp", px.String())
	if err != nil {
		started <- struct{}{}
		return nil // the server closed before we came
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cmd, dst := byte(cmdConnect), ipAddr(echo)
	if udp {
		cmd, dst = cmdUDPAssociate, addr{ip: netip.IPv4Unspecified()}
	}
	c.Write(appendRequest(appendGreeting(nil, methodNoAuth), cmd, dst))
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		started <- struct{}{}
		return nil
	}
	rep, bnd, err := readReply(c)
	if err != nil || rep != replySucceeded {
		started <- struct{}{}
		return fmt.Errorf("request: %v, %v", rep, err)
	}
	started <- struct{}{}
	if udp {
		uc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
		if err != nil {
			return err
		}
		defer uc.Close()
		relay := netip.AddrPortFrom(bnd.ip, bnd.port)
		pkt := append(appendUDPHeader(nil, uecho), "datagram"...)
		b := make([]byte, 2048)
		for {
			uc.WriteToUDPAddrPort(pkt, relay)
			uc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			uc.ReadFromUDPAddrPort(b)
			if _, err := c.Write(nil); err != nil {
				return nil
			}
			c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.Read(b); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return nil // the control connection ended
			}
		}
	}
	b := make([]byte, 32<<10)
	for {
		if _, err := c.Write(b); err != nil {
			return nil
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return nil
		}
	}
}
