package tunnel

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"exitd/internal/testenv"
	"exitd/keys"
)

func uniqueName(t *testing.T) string {
	var b [3]byte
	rand.Read(b[:])
	return "xt" + hex.EncodeToString(b[:])
}

func openIn(t *testing.T, ns netns.NsHandle, o Options) (*Tunnel, error) {
	t.Helper()
	var tun *Tunnel
	var err error
	testenv.Do(t, ns, func() { tun, err = Open(o) })
	if err == nil {
		t.Cleanup(func() { tun.Close() })
	}
	return tun, err
}

func baseOptions(t *testing.T, port int) Options {
	priv, err := keys.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		Name: uniqueName(t), MTU: 1420, Port: port, PrivateKey: priv,
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.99.0.1/16"), netip.MustParsePrefix("fd00:99::1/64")},
	}
}

func TestOpenConfiguresLink(t *testing.T) {
	ns := testenv.NewNetNS(t)
	o := baseOptions(t, 51900)
	tn, err := openIn(t, ns, o)
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(o.Name)
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().MTU != 1420 || link.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("link %+v", link.Attrs())
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			got = append(got, a.IPNet.String())
		}
	}
	if strings.Join(got, ",") != "10.99.0.1/16,fd00:99::1/64" {
		t.Fatalf("addresses %v", got)
	}
	// The UDP port is bound inside the namespace.
	var lerr error
	testenv.Do(t, ns, func() {
		var c net.PacketConn
		c, lerr = net.ListenPacket("udp4", ":51900")
		if lerr == nil {
			c.Close()
		}
	})
	if lerr == nil {
		t.Fatal("UDP port 51900 not held by the tunnel")
	}
	if err := tn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tn.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := h.LinkByName(o.Name); err == nil {
		t.Fatal("TUN still there after Close")
	}
}

func TestPortInUse(t *testing.T) {
	ns := testenv.NewNetNS(t)
	var c net.PacketConn
	testenv.Do(t, ns, func() {
		var err error
		c, err = net.ListenPacket("udp", ":51901")
		if err != nil {
			t.Error(err)
		}
	})
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	o := baseOptions(t, 51901)
	o.NoUAPI = true
	_, err := openIn(t, ns, o)
	if err == nil || !strings.Contains(err.Error(), "UDP port 51901 is already in use") {
		t.Fatalf("got %v", err)
	}
	h, _ := netlink.NewHandleAt(ns)
	defer h.Close()
	if _, err := h.LinkByName(o.Name); err == nil {
		t.Fatal("failed Open left its TUN behind")
	}
}

func TestPeers(t *testing.T) {
	ns := testenv.NewNetNS(t)
	o := baseOptions(t, 51902)
	tn, err := openIn(t, ns, o)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(i int) Peer {
		k, _ := keys.Generate(nil)
		return Peer{PublicKey: k.Public(), Allowed: []netip.Prefix{
			netip.MustParsePrefix(fmt.Sprintf("10.99.0.%d/32", i)),
			netip.MustParsePrefix(fmt.Sprintf("fd00:99::%d/128", i)),
		}}
	}
	a, b, c := mk(2), mk(3), mk(4)
	if err := tn.AddPeers([]Peer{a, b}); err != nil {
		t.Fatal(err)
	}
	st, err := tn.Stats()
	if err != nil || len(st) != 2 {
		t.Fatalf("stats %v %v", st, err)
	}
	if err := tn.SyncPeers([]Peer{b, c}); err != nil {
		t.Fatal(err)
	}
	st, _ = tn.Stats()
	have := map[keys.Key]bool{}
	for _, s := range st {
		have[s.PublicKey] = true
		if !s.LastHandshake.IsZero() {
			t.Errorf("handshake time for a peer that never connected: %v", s.LastHandshake)
		}
	}
	if len(st) != 2 || !have[b.PublicKey] || !have[c.PublicKey] || have[a.PublicKey] {
		t.Fatalf("after sync: %v", st)
	}
	if err := tn.RemovePeers(b.PublicKey, c.PublicKey); err != nil {
		t.Fatal(err)
	}
	if st, _ := tn.Stats(); len(st) != 0 {
		t.Fatalf("after remove: %v", st)
	}
	if err := tn.AddPeers(nil); err != nil {
		t.Fatal(err)
	}
	if err := tn.RemovePeers(); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteLinkRefusesNonTUN(t *testing.T) {
	ns := testenv.NewNetNS(t)
	testenv.Do(t, ns, func() {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dummy7"}, PeerName: "dummy8"}); err != nil {
			t.Error(err)
			return
		}
		if err := DeleteLink("dummy7"); err == nil || !strings.Contains(err.Error(), "not a TUN") {
			t.Errorf("DeleteLink(dummy) = %v", err)
		}
		if err := DeleteLink("nonexistent0"); err != nil {
			t.Errorf("missing link: %v", err)
		}
	})
}

func TestParseIpcGet(t *testing.T) {
	k, _ := keys.Generate(nil)
	pub := k.Public()
	in := "private_key=" + k.Hex() + "\nlisten_port=443\n" +
		"public_key=" + pub.Hex() + "\npreshared_key=00\nprotocol_version=1\nendpoint=198.18.1.1:40000\n" +
		"last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\nallowed_ip=10.99.0.2/32\n" +
		"public_key=" + strings.Repeat("00", 32) + "\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\n"
	got, err := parseIpcGet(in)
	if err != nil || len(got) != 2 {
		t.Fatalf("%v %v", got, err)
	}
	if got[0].PublicKey != pub || got[0].Endpoint != "198.18.1.1:40000" || got[0].TxBytes != 10 || got[0].RxBytes != 20 ||
		!got[0].LastHandshake.Equal(time.Unix(1700000000, 5)) {
		t.Fatalf("peer 0 = %+v", got[0])
	}
	if !got[1].LastHandshake.IsZero() {
		t.Fatalf("zero handshake parsed as %v", got[1].LastHandshake)
	}
	if _, err := parseIpcGet("public_key=zz\n"); err == nil {
		t.Fatal("bad key accepted")
	}
}
