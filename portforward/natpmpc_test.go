package portforward

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"exitd/internal/testenv"
)

// TestNatpmpc runs the reference client, libnatpmp's natpmpc (Debian
// package natpmpc), against the server on 127.0.0.1:5351 inside a fresh
// network namespace, so the well-known port cannot clash with the host.
func TestNatpmpc(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs an external client")
	}
	// A missing tool fails under EXITD_REQUIRE_ROOT=1 (CI installs both).
	testenv.RequireTools(t, "natpmpc", "nsenter")
	natpmpc, _ := exec.LookPath("natpmpc")
	nsenter, _ := exec.LookPath("nsenter")
	ns := testenv.NewNetNS(t)
	// run runs a command inside ns: nsenter joins the namespace passed as
	// its fd 3.
	run := func(name string, args ...string) string {
		t.Helper()
		fd, err := syscall.Dup(int(ns))
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "netns")
		defer f.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, nsenter, append([]string{"--net=/proc/self/fd/3", name}, args...)...)
		cmd.ExtraFiles = []*os.File{f}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %q: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run("ip", "link", "set", "lo", "up")

	var conn *net.UDPConn
	var err error
	testenv.Do(t, ns, func() {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ServerPort})
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, testOptions())
	s, err := NewServer(f.t, ServerOptions{Identify: identify, PublicAddr: func() netip.Addr { return wan }})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	if err := s.Start(conn); err != nil {
		t.Fatal(err)
	}
	defer checkNoGoroutines(t)
	defer s.Close()

	out := run(natpmpc, "-g", "127.0.0.1")
	if !strings.Contains(out, "Public IP address : 203.0.113.1") {
		t.Errorf("public address:\n%s", out)
	}

	out = run(natpmpc, "-g", "127.0.0.1", "-a", "40005", "6881", "udp", "600")
	if !strings.Contains(out, "Mapped public port 40005 protocol UDP to local port 6881") {
		t.Errorf("map:\n%s", out)
	}
	ms := f.t.List()
	if len(ms) != 1 || ms[0].Member != "alice" || ms[0].Proto != UDP || ms[0].External != 40005 ||
		ms[0].Internal != netip.AddrPortFrom(lo, 6881) {
		t.Fatalf("table after map: %+v", ms)
	}

	out = run(natpmpc, "-g", "127.0.0.1", "-a", "40005", "6881", "tcp", "600")
	if !strings.Contains(out, "Mapped public port 40005 protocol TCP to local port 6881") {
		t.Errorf("companion map:\n%s", out)
	}

	// Lifetime 0 deletes; private port 0 too deletes all of the protocol.
	run(natpmpc, "-g", "127.0.0.1", "-a", "40005", "6881", "udp", "0")
	run(natpmpc, "-g", "127.0.0.1", "-a", "0", "0", "tcp", "0")
	if ms := f.t.List(); len(ms) != 0 {
		t.Errorf("table after deletes: %+v", ms)
	}
	st := s.Stats()
	if st.RequestsMapUDP != 2 || st.RequestsMapTCP != 2 || st.Answered[ResultSuccess] < 8 {
		t.Errorf("stats %+v", st)
	}
}
