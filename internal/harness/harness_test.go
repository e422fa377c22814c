package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSplitWGQuick(t *testing.T) {
	conf := `[Interface]
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
Address = 10.99.0.2/32, fd00:99::2/128
DNS = 10.99.0.1
MTU = 1380
PostUp = echo hi

[Peer]
PublicKey = HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=
Endpoint = 198.18.0.1:443
AllowedIPs = 0.0.0.0/0, ::/0
PersistentKeepalive = 25
`
	set, addrs, mtu := splitWGQuick(conf)
	if mtu != "1380" || len(addrs) != 2 || addrs[0] != "10.99.0.2/32" || addrs[1] != "fd00:99::2/128" {
		t.Fatalf("addrs %v mtu %q", addrs, mtu)
	}
	for _, gone := range []string{"Address", "DNS", "MTU", "PostUp"} {
		if strings.Contains(set, gone) {
			t.Errorf("setconf part still has %s:\n%s", gone, set)
		}
	}
	for _, kept := range []string{"PrivateKey", "PublicKey", "Endpoint", "AllowedIPs", "PersistentKeepalive", "[Peer]"} {
		if !strings.Contains(set, kept) {
			t.Errorf("setconf part lost %s", kept)
		}
	}
}

func TestWriteConfigDefaults(t *testing.T) {
	o := NodeOptions{Dir: t.TempDir(), Extra: "[scheduler]\ndiscipline = \"fifo\"\n"}
	path, err := WriteConfig(&o)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	s := string(b)
	for _, want := range []string{`port = 443`, `ipv4 = "10.99.0.0/16"`, `interface = "wan0"`, `discipline = "fifo"`,
		`socket = "` + filepath.Join(o.Dir, "control.sock") + `"`, `public_endpoint = "198.18.0.1:443"`} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %s:\n%s", want, s)
		}
	}
	if len(o.Tun) != 8 || !strings.HasPrefix(o.Tun, "ex") {
		t.Errorf("tun name %q", o.Tun)
	}
	if RandomName("a") == RandomName("a") {
		t.Error("RandomName repeats")
	}
}
