package members

import (
	"fmt"
	"net/netip"
	"strings"

	"exitd/keys"
)

// Node is what a client config needs to know about the exit node.
type Node struct {
	PublicKey keys.Key
	Endpoint  string // host:port members dial
	MTU       int    // tunnel MTU; written when non-zero
	DNS       []netip.Addr
}

// ClientConfig renders a wg-quick config for m. PrivateKey is written when
// the node generated (and kept) the member's key; otherwise a placeholder
// tells the member where their own key goes.
func ClientConfig(m Member, n Node) string {
	var b strings.Builder
	b.WriteString("[Interface]\n")
	if m.PrivateKey != nil {
		fmt.Fprintf(&b, "PrivateKey = %s\n", m.PrivateKey)
	} else {
		b.WriteString("# PrivateKey = <the private key matching ")
		b.WriteString(m.PublicKey.String())
		b.WriteString(">\n")
	}
	var addrs []string
	for _, p := range m.Prefixes() {
		addrs = append(addrs, p.String())
	}
	fmt.Fprintf(&b, "Address = %s\n", strings.Join(addrs, ", "))
	if len(n.DNS) > 0 {
		var d []string
		for _, a := range n.DNS {
			d = append(d, a.String())
		}
		fmt.Fprintf(&b, "DNS = %s\n", strings.Join(d, ", "))
	}
	if n.MTU > 0 {
		fmt.Fprintf(&b, "MTU = %d\n", n.MTU)
	}
	b.WriteString("\n[Peer]\n")
	fmt.Fprintf(&b, "PublicKey = %s\n", n.PublicKey)
	fmt.Fprintf(&b, "Endpoint = %s\n", n.Endpoint)
	b.WriteString("AllowedIPs = 0.0.0.0/0, ::/0\n")
	b.WriteString("PersistentKeepalive = 25\n")
	return b.String()
}
