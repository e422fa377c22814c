package members

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"exitd/keys"
)

const (
	keyA = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
	keyB = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
	keyC = "gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA="
)

// A wg-quick server file as PiVPN, wg-easy-style comments and hand editing
// leave them.
const serverConf = `# wg0 on the old box
[Interface]
Address = 10.8.0.1/24, fd08::1/64
ListenPort = 51820
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
PostUp = iptables -A FORWARD -i %i -j ACCEPT # forward
SaveConfig = false

### begin alice ###
[Peer]
PublicKey = ` + keyA + `
PresharedKey = /UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=
AllowedIPs = 10.8.0.2/32, fd08::2/128
### end alice ###

[peer]
# Name = Bob's Phone
publickey=` + keyB + `   # trailing comment
allowedips = 10.8.0.3/32
AllowedIPs = 192.168.77.0/24,fd08::3
Endpoint = 198.51.100.7:51820
PersistentKeepalive = 25

# carol
[Peer]
PublicKey = ` + keyC + `
`

func TestParseWGQuick(t *testing.T) {
	ps, err := ParseWGQuick(strings.NewReader(serverConf))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 {
		t.Fatalf("%d peers: %+v", len(ps), ps)
	}
	a, b, c := ps[0], ps[1], ps[2]
	if a.PublicKey.String() != keyA || a.Label != "alice" || !a.PresharedKey || a.Addr4() != addr("10.8.0.2") || a.Addr6() != addr("fd08::2") || a.Line != 10 {
		t.Errorf("alice: %+v", a)
	}
	if b.PublicKey.String() != keyB || b.Label != "Bob-s-Phone" || b.PresharedKey || len(b.Addrs) != 3 ||
		b.Addr4() != addr("10.8.0.3") || b.Addr6() != addr("fd08::3") || b.Addrs[1] != pfx("192.168.77.0/24") {
		t.Errorf("bob: %+v", b)
	}
	if c.PublicKey.String() != keyC || c.Label != "carol" || len(c.Addrs) != 0 || c.Addr4().IsValid() {
		t.Errorf("carol: %+v", c)
	}
}

func TestParseWGQuickErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"no key", "[Peer]\nAllowedIPs = 10.0.0.2/32\n", "line 1: [Peer] without a PublicKey"},
		{"bad key", "[Peer]\nPublicKey = nope\n", "line 2: PublicKey: invalid public key"},
		{"zero key", "[Peer]\nPublicKey = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "line 2: PublicKey"},
		{"bad allowed", "[Peer]\nPublicKey = " + keyA + "\nAllowedIPs = 10.0.0.300/32\n", `line 3: AllowedIPs "10.0.0.300/32"`},
		{"zone", "[Peer]\nPublicKey = " + keyA + "\nAllowedIPs = fe80::1%eth0\n", `line 3: AllowedIPs`},
		{"no equals", "[Peer]\nPublicKey\n", "line 2: want Key = Value"},
		{"unknown key", "[Peer]\nPublicKey " + keyA + "\n", `line 2: unknown [Peer] key "publickey xtiba5rbouvnh4htodjb6e697qjlert1nab4mzqp8dg"`},
		{"bad header", "[Peer\nPublicKey = " + keyA + "\n", "line 1: bad section header"},
		{"repeated key", "[Peer]\nPublicKey = " + keyA + "\n[Peer]\nPublicKey = " + keyA + "\n", "line 3: public key " + keyA + " already used by the [Peer] on line 1"},
		{"long line", "[Peer]\n# " + strings.Repeat("x", maxImportLine+1) + "\n", "line 2: bufio.Scanner: token too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseWGQuick(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseWGQuickEmpty(t *testing.T) {
	for _, in := range []string{"", "[Interface]\nPrivateKey = x\n", "# nothing\n\n"} {
		ps, err := ParseWGQuick(strings.NewReader(in))
		if err != nil || len(ps) != 0 {
			t.Errorf("%q: %v %v", in, ps, err)
		}
	}
}

func TestLabelFromComments(t *testing.T) {
	tests := []struct {
		comments []string
		want     string
	}{
		{[]string{" Name = alice"}, "alice"},
		{[]string{"friendly_name: Alice Laptop"}, "Alice-Laptop"},
		{[]string{"## begin bob ###"}, "bob"},
		{[]string{"old server peers", "dave"}, "dave"},
		{[]string{"PublicKey = x"}, ""},
		{[]string{"[Peer]"}, ""},
		{[]string{"Name = ¡¡¡"}, ""},
		{[]string{"Name = " + strings.Repeat("a", 80)}, strings.Repeat("a", 64)},
		{nil, ""},
	}
	for _, tc := range tests {
		if got := labelFromComments(tc.comments); got != tc.want {
			t.Errorf("%q: got %q want %q", tc.comments, got, tc.want)
		}
	}
}

func TestExportRoundTrip(t *testing.T) {
	ka, _ := keys.Parse(keyA)
	kb, _ := keys.Parse(keyB)
	ms := []Member{
		{Label: "alice", PublicKey: ka, IPv4: addr("10.99.0.2"), IPv6: addr("fd00:99::2")},
		{Label: "bob", PublicKey: kb, IPv6: addr("fd00:99::3"), Disabled: true},
	}
	out := ExportWGQuick(ms)
	if !strings.Contains(out, "[Peer]\n# Name = alice\nPublicKey = "+keyA+"\nAllowedIPs = 10.99.0.2/32, fd00:99::2/128\n") ||
		!strings.Contains(out, "# disabled in exitd\n#[Peer]\n## Name = bob\n#PublicKey") {
		t.Fatalf("export:\n%s", out)
	}
	ps, err := ParseWGQuick(strings.NewReader(out))
	if err != nil || len(ps) != 1 || ps[0].Label != "alice" || ps[0].PublicKey != ka || ps[0].Addr4() != ms[0].IPv4 || ps[0].Addr6() != ms[0].IPv6 {
		t.Fatalf("reimport: %+v %v", ps, err)
	}
}

func FuzzParseWGQuick(f *testing.F) {
	f.Add(serverConf)
	f.Add("[Peer]\nPublicKey = " + keyA + "\nAllowedIPs = 10.0.0.2\n")
	f.Add("[Interface]\n[Peer]\n#Name=x\nPublicKey=" + keyB + "#c\n")
	f.Add("[Peer]\nAllowedIPs=::/0,0.0.0.0/0\n")
	f.Fuzz(func(t *testing.T, in string) {
		ps, err := ParseWGQuick(strings.NewReader(in))
		if err != nil {
			return
		}
		seen := map[keys.Key]bool{}
		var ms []Member
		for i, p := range ps {
			if p.PublicKey.IsZero() || seen[p.PublicKey] {
				t.Fatalf("peer %d: zero or repeated key %s", i, p.PublicKey)
			}
			seen[p.PublicKey] = true
			if p.Label != "" && CheckLabel(p.Label) != nil {
				t.Fatalf("peer %d: label %q does not pass CheckLabel", i, p.Label)
			}
			for _, a := range p.Addrs {
				if !a.IsValid() || a != a.Masked() {
					t.Fatalf("peer %d: allowed IP %v", i, a)
				}
			}
			label := p.Label
			if label == "" {
				label = "peer"
			}
			ms = append(ms, Member{Label: label, PublicKey: p.PublicKey, IPv4: p.Addr4(), IPv6: p.Addr6()})
		}
		// What exitd exports of the import reads back as the same peers.
		back, err := ParseWGQuick(strings.NewReader(ExportWGQuick(ms)))
		if err != nil || len(back) != len(ms) {
			t.Fatalf("re-import of export: %d peers, %v", len(back), err)
		}
		for i := range back {
			if back[i].PublicKey != ms[i].PublicKey || back[i].Label != ms[i].Label ||
				back[i].Addr4() != ms[i].IPv4 || back[i].Addr6() != ms[i].IPv6 {
				t.Fatalf("peer %d: %+v != %+v", i, back[i], ms[i])
			}
		}
	})
}

// FuzzClientConfig renders configs for arbitrary members and nodes and reads
// them back with the import parser: the node is the single peer, with the
// node's key and a full tunnel.
func FuzzClientConfig(f *testing.F) {
	f.Add([]byte{10, 99, 0, 2}, []byte{0xfd, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, "203.0.113.1:443", 1420, true)
	f.Add([]byte{}, []byte{}, "[2001:db8::1]:443", 0, false)
	f.Fuzz(func(t *testing.T, a4, a6 []byte, endpoint string, mtu int, withPriv bool) {
		if strings.ContainsAny(endpoint, "\n\r#") {
			return // the node's endpoint comes from a validated config
		}
		priv, _ := keys.Parse("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=")
		node, _ := keys.Parse(keyA)
		m := Member{PublicKey: priv.Public()}
		m.IPv4, _ = netip.AddrFromSlice(a4)
		m.IPv6, _ = netip.AddrFromSlice(a6)
		if !m.IPv4.Is4() {
			m.IPv4 = netip.Addr{}
		}
		if !m.IPv6.Is6() || m.IPv6.Is4In6() {
			m.IPv6 = netip.Addr{}
		}
		if withPriv {
			m.PrivateKey = &priv
		}
		conf := ClientConfig(m, Node{PublicKey: node, Endpoint: endpoint, MTU: mtu})
		ps, err := ParseWGQuick(strings.NewReader(conf))
		if err != nil || len(ps) != 1 || ps[0].PublicKey != node || len(ps[0].Addrs) != 2 {
			t.Fatalf("%v %+v\n%s", err, ps, conf)
		}
		if strings.Contains(conf, "\nPrivateKey = ") != withPriv {
			t.Fatalf("private key line present=%v, want %v", !withPriv, withPriv)
		}
		for _, want := range []netip.Addr{m.IPv4, m.IPv6} {
			if want.IsValid() && !strings.Contains(conf, want.String()) {
				t.Fatalf("address %s missing:\n%s", want, conf)
			}
		}
	})
}

// FuzzAllocator drives the allocator with random operations against a slow
// reference model: an address is never held twice, never handed out again
// within the quarantine, and exhaustion is reported exactly when the model
// has no free slot.
func FuzzAllocator(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 2, 3, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 2, 1, 3, 3, 3, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const size = 10 // slots 2..9
		const q = time.Minute
		now := time.Unix(1e9, 0)
		a := newAllocator(plan{size: size}, q)
		used := map[uint32]bool{}
		freedAt := map[uint32]time.Time{}
		free := func(i uint32) bool {
			t, ok := freedAt[i]
			return !used[i] && (!ok || now.Sub(t) >= q)
		}
		for k := 0; k+1 < len(ops); k += 2 {
			op, arg := ops[k]%4, uint32(ops[k+1])
			switch op {
			case 0: // take
				any := false
				for i := uint32(2); i < size; i++ {
					any = any || free(i)
				}
				i, _, ok := a.take(now)
				if ok != any {
					t.Fatalf("take ok=%v, model has free slot=%v", ok, any)
				}
				if ok {
					if !free(i) || i < 2 || i >= size {
						t.Fatalf("take gave slot %d, not free in the model", i)
					}
					used[i] = true
				}
			case 1: // claim
				i := arg % (size + 2)
				want := i >= 2 && i < size && free(i)
				if _, got := a.claim(i, now); got != want {
					t.Fatalf("claim(%d) = %v, want %v", i, got, want)
				}
				if want {
					used[i] = true
				}
			case 2: // release a used slot
				for i := uint32(2); i < size; i++ {
					if used[(i+arg)%size] {
						j := (i + arg) % size
						a.release(j, now)
						delete(used, j)
						freedAt[j] = now
						break
					}
				}
			case 3:
				now = now.Add(time.Duration(arg) * time.Second)
			}
		}
	})
}
