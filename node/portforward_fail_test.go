package node

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"exitd/members"
	"exitd/portforward"
)

// Regression (fixed): startPortForward installs the restored mappings (NewTable's Apply)
// before it opens the NAT-PMP socket; when the socket (or the server)
// fails, it returns the error with the DNAT rules still in the
// port-forward table. Run undoes the steps started before, but nat's
// Remove deletes the inet and nat tables only, not "<table>_pf", so a
// failed start leaves WAN ports forwarded to member addresses until
// `exitd cleanup` runs. Node.Run promises "Start errors are returned after
// everything already started has been undone".
func TestStartPortForwardFailureLeavesNoForwards(t *testing.T) {
	n, f, p := loopbackPFNode(t)
	ms, err := n.reg.AddBatch([]members.AddRequest{{Label: "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	alice := ms[0]
	if err := portforward.NewFileStore(filepath.Join(n.config().StateDir, portForwardFile)).Save([]portforward.Mapping{
		{Member: alice.PublicKey.String(), Proto: portforward.UDP, Internal: netip.AddrPortFrom(alice.IPv4, 5000), External: 61000, Expires: n.now().Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	// Someone holds the NAT-PMP port on the gateway address.
	busy, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.Addr().Next(), portforward.ServerPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	stop, err := n.startPortForward()
	if err == nil {
		stop()
		t.Fatal("started on a taken port")
	}
	if !strings.Contains(err.Error(), "set [portforward] enabled = false") {
		t.Fatalf("err = %v", err)
	}
	calls, last := f.forwardCalls()
	if _, _, removals := f.forwardHistory(); calls > 0 && len(last) > 0 && removals == 0 {
		t.Fatalf("the start failed with %d forwards installed (%v) and the port-forward table was not removed", len(last), last)
	}
}
