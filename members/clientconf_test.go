package members

import (
	"net/netip"
	"strings"
	"testing"

	"exitd/keys"
)

func TestClientConfig(t *testing.T) {
	priv, _ := keys.Parse("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=")
	node, _ := keys.Parse("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=")
	m := Member{PublicKey: priv.Public(), PrivateKey: &priv, IPv4: addr("10.99.0.2"), IPv6: addr("fd00:99::2")}
	got := ClientConfig(m, Node{PublicKey: node, Endpoint: "203.0.113.1:443", MTU: 1420, DNS: []netip.Addr{addr("10.99.0.1")}})
	want := `[Interface]
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
Address = 10.99.0.2/32, fd00:99::2/128
DNS = 10.99.0.1
MTU = 1420

[Peer]
PublicKey = HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=
Endpoint = 203.0.113.1:443
AllowedIPs = 0.0.0.0/0, ::/0
PersistentKeepalive = 25
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	m.PrivateKey = nil
	m.IPv6 = netip.Addr{}
	got = ClientConfig(m, Node{PublicKey: node, Endpoint: "x:443"})
	if strings.Contains(got, "\nPrivateKey = ") || !strings.Contains(got, "# PrivateKey = <the private key matching") ||
		!strings.Contains(got, "Address = 10.99.0.2/32\n") || strings.Contains(got, "MTU") || strings.Contains(got, "DNS") {
		t.Fatalf("without private key:\n%s", got)
	}
}
