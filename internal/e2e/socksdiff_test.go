package e2e

// Differential tests of the SOCKS5 proxy (issue 13): the SOCKS clients
// Debian ships — curl, proxychains4 and Python's PySocks (python3-socks),
// plus raw bytes from Python where no client sends them — make the same
// requests to exitd and to Debian's Dante 1.4.2, configured alike, in one
// lab:
//
//	member1: the clients
//	   │ underlay 198.18.0.0/16
//	exit namespace: exitd  [socks] listen 198.18.0.1:1080 (open), :1082 (users)
//	                danted internal   198.18.0.1:1081 (none), :1083 (username)
//	   │ wan0                          │ lan0
//	internet host 203.0.113.2,         mgmt 10.200.0.2, fd00:200::2: private,
//	2001:2:0:1::2: HTTP /ip on 80,     refused by both (exitd's deny set,
//	nothing on 81, the zone on 53      Dante's "socks block")
//
// exitd is the real daemon, configured through [socks] listen as an
// operator would: an in-process socks.Server would bind its UDP ASSOCIATE
// relay sockets in the test process's namespace, the host's, where no lab
// client reaches them. Dante resolves names with libc and checks "username"
// against passwd and shadow; `ip netns exec` bind-mounts
// /etc/netns/NAME/{resolv.conf,hosts,nsswitch.conf,passwd,group,shadow},
// written for the exit namespace after exitd started and removed at
// cleanup, so danted alone sees the lab's resolver and one test user, and
// the host's own files are never touched.
//
// Each row names the client, the request and each proxy's outcome (the
// client's own output, normalized). Where the outcomes differ, why names
// the passage of docs/socks.md ("Differences from Dante") that explains
// it, and the test checks the passage is there. Either proxy changing
// behaviour fails the test.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

// The two proxies' listeners: open (no authentication) and password.
const (
	sdProxy      = netlab.ExitUnderlay4
	sdExitdOpen  = 1080
	sdExitdAuth  = 1082
	sdDanteOpen  = 1081
	sdDanteAuth  = 1083
	sdUser       = "alice"
	sdPass       = "diff-secret"
	sdClientNet  = netlab.UnderlayPrefix4
	sdPython     = "/usr/bin/python3" // Debian's, which has python3-socks
	sdRefused4   = netlab.Mgmt4       // private: exitd's deny set, Dante's block rule
	sdRefused6   = netlab.Mgmt6
	sdClosedPort = 81 // nothing listens there on the internet host
	sdRowTimeout = 60 * time.Second
)

// sdShadow is sdPass hashed for shadow(5) (`openssl passwd -6 -salt
// socksdiff diff-secret`).
const sdShadow = "$6$socksdiff$hBMsLY4eRXkgCVKRdem/dRDn.P1iaVUDueZuNTfMPw0Lqt1E7p1uTpBxLfdhnrLU8Vr64.ShIsBcXSv/XWjO2/"

// sdZone is what the internet host's DNS server answers, for exitd's
// resolver and Dante's libc alike.
var sdZone = map[string][]netip.Addr{
	"www4.diff.test":    {netip.MustParseAddr(netlab.Internet4)},
	"www6.diff.test":    {netip.MustParseAddr(netlab.Internet6)},
	"www.diff.test":     {netip.MustParseAddr(netlab.Internet4), netip.MustParseAddr(netlab.Internet6)},
	"private.diff.test": {netip.MustParseAddr(sdRefused4)},
	"mixed.diff.test":   {netip.MustParseAddr(netlab.Internet4), netip.MustParseAddr(sdRefused4)},
	"split.diff.test":   {netip.MustParseAddr(netlab.Internet4), netip.MustParseAddr(sdRefused6)},
	"split2.diff.test":  {netip.MustParseAddr(sdRefused4), netip.MustParseAddr(netlab.Internet6)},
}

// sdDanteRules give Dante exitd's policy for what the rows reach: the
// private, loopback and link-local prefixes of exitd's deny set are
// blocked, everything else passes for the lab's clients (which the client
// rule alone admits), replies to them pass. UDP ASSOCIATE needs a rule of
// its own from 0/0: Dante matches its "from" against the address in the
// request, and PySocks sends the name "0" there, which no address rule
// matches (Dante would answer 0x02; exitd takes the client from the TCP
// connection).
func sdDanteRules() []harness.DanteRule {
	var rules []harness.DanteRule
	for _, p := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
		"fc00::/7", "::1/128", "fe80::/10"} {
		rules = append(rules, harness.DanteRule{Block: true, To: netip.MustParsePrefix(p)})
	}
	clients := netip.MustParsePrefix(sdClientNet)
	return append(rules,
		harness.DanteRule{From: clients},
		harness.DanteRule{Commands: []string{"udpassociate"}},
		harness.DanteRule{To: clients, Commands: []string{"bindreply", "udpreply"}})
}

// sdRow is one request made by one client to both proxies.
type sdRow struct {
	client string // curl, proxychains4, pysocks, python (raw bytes)
	name   string // the request
	auth   bool   // the password listeners instead of the open ones
	argv   func(dir, host string, port int) []string
	// conf, if set, is written to dir/proxychains.conf first.
	conf func(host string, port int) string
	// exitd and dante are the outcomes each proxy must give.
	exitd, dante string
	// why, when they differ, is text of docs/socks.md's "Differences from
	// Dante" section explaining it.
	why string
}

func sdCurl(flag, url string) func(string, string, int) []string {
	return func(_, host string, port int) []string {
		return []string{"curl", "-sS", "--max-time", "20", flag, host + ":" + strconv.Itoa(port), url}
	}
}

func sdCurlUser(user, pass, url string) func(string, string, int) []string {
	return func(_, host string, port int) []string {
		return []string{"curl", "-sS", "--max-time", "20", "-x", fmt.Sprintf("socks5h://%s:%s@%s:%d", user, pass, host, port), url}
	}
}

// sdProxychains runs curl under proxychains4 with the row's config
// (sdProxychainsConf), written to dir first.
func sdProxychains(url string) func(string, string, int) []string {
	return func(dir, _ string, _ int) []string {
		return []string{"proxychains4", "-q", "-f", filepath.Join(dir, "proxychains.conf"), "curl", "-sS", "--max-time", "20", url}
	}
}

// sdProxychainsConf is a proxychains4 config naming the proxy (and
// credentials, "user pass"), names resolved by the proxy (proxy_dns).
func sdProxychainsConf(creds string) func(string, int) string {
	return func(host string, port int) string {
		return fmt.Sprintf("strict_chain\nquiet_mode\nproxy_dns\nremote_dns_subnet 224\n"+
			"tcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\nsocks5 %s %d %s\n", host, port, creds)
	}
}

// sdPySocksTCP connects through the proxy with PySocks (names resolved by
// the proxy), sends GET /ip and prints the body, or the PySocks error.
const sdPySocksTCP = `
import socket, sys, socks
ph, pp, host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
s = socks.socksocket()
s.set_proxy(socks.SOCKS5, ph, pp, rdns=True, username=user or None, password=pw or None)
s.settimeout(20)
try:
    s.connect((host, port))
    s.sendall(b"GET /ip HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    print("ok", data.split(b"\r\n\r\n", 1)[-1].decode().strip())
except socks.ProxyError as e:
    print(type(e).__name__ + ":", e)
`

func sdPySocks(host string, port int, user, pass string) func(string, string, int) []string {
	return func(_, ph string, pp int) []string {
		return []string{sdPython, "-c", sdPySocksTCP, ph, strconv.Itoa(pp), host, strconv.Itoa(port), user, pass}
	}
}

// sdPySocksUDP sends an A query for qname to host:port through a UDP
// ASSOCIATE made by PySocks and prints the answer and the source the
// relay's header names, or what went wrong.
const sdPySocksUDP = `
import errno, socket, struct, sys, socks
ph, pp, host, port, qname, tries = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
s.set_proxy(socks.SOCKS5, ph, pp, rdns=True)
s.settimeout(3)
q = struct.pack(">HHHHHH", 0x5eed, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in qname.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
try:
    s.bind(("", 0))
except socks.ProxyError as e:
    print(type(e).__name__ + ":", e)
    sys.exit()
for _ in range(tries):
    s.sendto(q, (host, port))
    try:
        data, frm = s.recvfrom(2048)
    except socket.timeout:
        continue
    except OSError as e:
        print("recv error", errno.errorcode.get(e.errno, e.errno))
        break
    an = struct.unpack(">H", data[6:8])[0]
    print("answers", an, socket.inet_ntoa(data[-4:]) if an else "-", "from", frm[0], frm[1])
    break
else:
    print("no answer")
`

func sdPySocksUDPArgs(host string, port int, qname string, tries int) func(string, string, int) []string {
	return func(_, ph string, pp int) []string {
		return []string{sdPython, "-c", sdPySocksUDP, ph, strconv.Itoa(pp), host, strconv.Itoa(port), qname, strconv.Itoa(tries)}
	}
}

// sdRaw sends a greeting (hex) and, when the no-authentication method is
// chosen, a request (hex), and prints the first reply byte that matters
// (an end of the connection, FIN or RST, is one outcome).
const sdRaw = `
import socket, sys
ph, pp, greet, req = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
c = socket.create_connection((ph, pp), 20)
c.settimeout(20)
c.sendall(greet)
m = c.recv(2)
if len(m) < 2:
    print("closed after the greeting")
    sys.exit()
if m[1] != 0:
    print("method 0x%02x" % m[1])
    sys.exit()
c.sendall(req)
try:
    r = c.recv(512)
except ConnectionResetError:
    r = b""
except socket.timeout:
    print("no reply")
    sys.exit()
print("reply 0x%02x" % r[1] if len(r) >= 2 else "closed without a reply")
`

func sdRawArgs(greet, req string) func(string, string, int) []string {
	return func(_, ph string, pp int) []string {
		return []string{sdPython, "-c", sdRaw, ph, strconv.Itoa(pp), greet, req}
	}
}

// Passages of docs/socks.md ("Differences from Dante") explaining the rows
// where the proxies differ.
const (
	sdWhyDualStack = "**Dual-stack names.**"
	sdWhyOneDenied = "**A name with one refused address.**"
	sdWhyBind      = "**BIND is refused**"
	sdWhyUnknown   = "**Unknown commands and address types are answered.**"
	sdWhyUDPDrop   = "**A datagram to a refused destination.**"
)

// Outcomes as the clients print them (see sdResult.outcome).
func sdOK(body string) string { return "ok " + body }

func sdCurlReply(host string, rep int) string {
	return fmt.Sprintf("curl (97) Can't complete SOCKS5 connection to %s. (%d)", host, rep)
}

func sdPyReply(rep string) string { return "GeneralProxyError: Socket error: " + rep }

const (
	sdCurlRejected = "curl (97) User was rejected by the SOCKS5 server (1 1)."
	sdCurlNoMethod = "curl (97) No authentication method was acceptable."
	sdPyAuthFailed = "GeneralProxyError: Socket error: SOCKS5 authentication failed"
	sdPyNotAllowed = "0x02: Connection not allowed by ruleset"
	sdUDPAnswer    = "answers 1 " + netlab.Internet4 + " from " + netlab.Internet4 + " 53"
)

func sdPCFailed(host string) string {
	return "curl (7) Failed to connect to " + host + " port 80: Couldn't connect to server"
}

func sdRows() []sdRow {
	web4 := "http://" + netlab.Internet4 + "/ip"
	web6 := "http://[" + netlab.Internet6 + "]/ip"
	ok4, ok6 := sdOK(netlab.ExitWAN4), sdOK(netlab.ExitWAN6)
	refused4 := "http://" + sdRefused4 + "/ip"
	closed4 := "http://" + netlab.Internet4 + ":" + strconv.Itoa(sdClosedPort) + "/"
	name := func(n string) string { return "http://" + n + ".diff.test/ip" }

	// same is a row where the proxies agree.
	same := func(r sdRow, out string) sdRow { r.exitd, r.dante = out, out; return r }
	curl := func(name, flag, url string) sdRow {
		return sdRow{client: "curl", name: name, argv: sdCurl(flag, url)}
	}
	curlAuth := func(name, user, pass, url string) sdRow {
		return sdRow{client: "curl", name: name, auth: true, argv: sdCurlUser(user, pass, url)}
	}
	pc := func(name, creds, url string) sdRow {
		return sdRow{client: "proxychains4", name: name, auth: creds != "", conf: sdProxychainsConf(creds), argv: sdProxychains(url)}
	}
	py := func(name, host string, port int, user, pass string) sdRow {
		return sdRow{client: "pysocks", name: name, auth: user != "", argv: sdPySocks(host, port, user, pass)}
	}
	udp := func(name, host, qname string, tries int) sdRow {
		return sdRow{client: "pysocks", name: name, argv: sdPySocksUDPArgs(host, 53, qname, tries)}
	}
	raw := func(name, greet, req string) sdRow {
		return sdRow{client: "python", name: name, argv: sdRawArgs(greet, req)}
	}
	differ := func(r sdRow, exitd, dante, why string) sdRow {
		r.exitd, r.dante, r.why = exitd, dante, why
		return r
	}
	const dst = "0001" + "cb007102" + "0050" // RSV, ATYP 1, 203.0.113.2, port 80

	return []sdRow{
		same(curl("CONNECT IPv4", "--socks5", web4), ok4),
		same(curl("CONNECT IPv6", "--socks5", web6), ok6),
		same(curl("CONNECT name (A)", "--socks5-hostname", name("www4")), ok4),
		same(curl("CONNECT name (AAAA)", "--socks5-hostname", name("www6")), ok6),
		differ(curl("CONNECT name (A and AAAA)", "--socks5-hostname", name("www")), ok4, ok6, sdWhyDualStack),
		same(curl("CONNECT name (NXDOMAIN)", "--socks5-hostname", name("nx")), sdCurlReply("nx.diff.test", 4)),
		same(curl("refused destination IPv4", "--socks5", refused4), sdCurlReply(sdRefused4, 2)),
		same(curl("refused destination IPv6", "--socks5", "http://["+sdRefused6+"]/ip"), sdCurlReply(sdRefused6, 2)),
		same(curl("refused destination by name", "--socks5-hostname", name("private")), sdCurlReply("private.diff.test", 2)),
		same(curl("name with a public and a refused A", "--socks5-hostname", name("mixed")), sdCurlReply("mixed.diff.test", 2)),
		differ(curl("name with a public A and a refused AAAA", "--socks5-hostname", name("split")),
			ok4, sdCurlReply("split.diff.test", 2), sdWhyOneDenied),
		differ(curl("name with a refused A and a public AAAA", "--socks5-hostname", name("split2")),
			ok6, sdCurlReply("split2.diff.test", 2), sdWhyOneDenied),
		same(curl("connection refused", "--socks5", closed4), sdCurlReply(netlab.Internet4, 5)),
		same(curlAuth("good username/password", sdUser, sdPass, web4), ok4),
		same(curlAuth("bad password", sdUser, "wrong", web4), sdCurlRejected),
		same(curlAuth("unknown user", "mallory", sdPass, web4), sdCurlRejected),
		same(sdRow{client: "curl", name: "no credentials for a password listener", auth: true, argv: sdCurl("--socks5", web4)}, sdCurlNoMethod),

		same(pc("CONNECT IPv4", "", web4), ok4),
		same(pc("CONNECT IPv6", "", web6), ok6),
		same(pc("CONNECT name", "", name("www4")), ok4),
		same(pc("refused destination", "", refused4), sdPCFailed(sdRefused4)),
		same(pc("good username/password", sdUser+" "+sdPass, web4), ok4),
		same(pc("bad password", sdUser+" wrong", web4), sdPCFailed(netlab.Internet4)),

		same(py("CONNECT IPv4", netlab.Internet4, 80, "", ""), ok4),
		same(py("CONNECT IPv6", netlab.Internet6, 80, "", ""), ok6),
		same(py("CONNECT name", "www4.diff.test", 80, "", ""), ok4),
		same(py("refused destination", sdRefused4, 80, "", ""), sdPyReply(sdPyNotAllowed)),
		same(py("connection refused", netlab.Internet4, sdClosedPort, "", ""), sdPyReply("0x05: Connection refused")),
		same(py("good username/password", netlab.Internet4, 80, sdUser, sdPass), ok4),
		same(py("bad password", netlab.Internet4, 80, sdUser, "wrong"), sdPyAuthFailed),
		same(udp("UDP ASSOCIATE, DNS query to an IPv4 address", netlab.Internet4, "www4.diff.test", 3), sdUDPAnswer),
		same(udp("UDP ASSOCIATE, DNS query to a name", "www4.diff.test", "www4.diff.test", 3), sdUDPAnswer),
		differ(udp("UDP ASSOCIATE, datagram to a refused destination", sdRefused4, "www4.diff.test", 1),
			"no answer", "recv error EHOSTUNREACH", sdWhyUDPDrop),

		differ(raw("BIND", "050100", "0502"+dst), "reply 0x07", "reply 0x00", sdWhyBind),
		differ(raw("unknown command 0x09", "050100", "0509"+dst), "reply 0x07", "closed without a reply", sdWhyUnknown),
		differ(raw("address type 0x05", "050100", "05010005"+"cb007102"+"0050"), "reply 0x08", "closed without a reply", sdWhyUnknown),
		same(raw("only GSSAPI offered", "050101", ""), "method 0xff"),
	}
}

// sdResult is what a client printed and how it exited.
type sdResult struct {
	code           int
	stdout, stderr string
}

var (
	sdCurlErr = regexp.MustCompile(`(?m)^curl: \((\d+)\) (.*)$`)
	sdAfter   = regexp.MustCompile(` after \d+ ms`)
)

// outcome reduces a result to what the rows compare. The Python scripts
// print their outcome; curl's is "ok BODY" or its error line, without the
// time it took.
func (r sdResult) outcome(script bool) string {
	out := strings.TrimSpace(r.stdout)
	switch {
	case r.code == 0 && script:
		return out
	case r.code == 0:
		return sdOK(out)
	}
	if m := sdCurlErr.FindStringSubmatch(r.stderr); m != nil && !script {
		return sdAfter.ReplaceAllString("curl ("+m[1]+") "+m[2], "")
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	return fmt.Sprintf("exit %d: %s", r.code, lines[len(lines)-1])
}

func sdRun(ctx context.Context, ns *netlab.NS, dir string, argv []string) (sdResult, error) {
	cmd := ns.Command(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir // python3 -c imports from the working directory first
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := sdResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		r.code, err = ee.ExitCode(), nil
	}
	return r, err
}

// sdEtcNetns writes files into /etc/netns/NAME, which `ip netns exec NAME`
// bind-mounts over /etc, and removes them (and the directories it made)
// at cleanup.
func sdEtcNetns(t *testing.T, name string, files map[string]string) {
	t.Helper()
	const root = "/etc/netns"
	_, err := os.Stat(root)
	madeRoot := errors.Is(err, os.ErrNotExist)
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for f := range files {
			os.Remove(filepath.Join(dir, f))
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
		if madeRoot {
			os.Remove(root) // fails, harmlessly, if someone else uses it now
		}
	})
	for f, text := range files {
		mode := os.FileMode(0o644)
		if f == "shadow" {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(text), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func sdRequireClients(t *testing.T) {
	t.Helper()
	testenv.RequireTools(t, "curl", "proxychains4", "danted", sdPython)
	if out, err := exec.Command(sdPython, "-c", "import socks").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("python3-socks is not installed: %v: %s", err, out)
		if os.Getenv("EXITD_REQUIRE_ROOT") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// sdDocSection returns docs/socks.md's "Differences from Dante" section.
func sdDocSection(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "socks.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Differences from Dante\n")
	if !ok {
		t.Fatal(`docs/socks.md has no "## Differences from Dante" section`)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	return sec
}

// TestSOCKSDiffRowsDocumented (no root): a row where the proxies differ
// names the passage of docs/socks.md that explains it, and the passage is
// there; a row where they agree names none.
func TestSOCKSDiffRowsDocumented(t *testing.T) {
	sec := sdDocSection(t)
	seen := map[string]bool{}
	for _, r := range sdRows() {
		id := r.client + "/" + r.name
		switch {
		case seen[id]:
			t.Errorf("%s: two rows", id)
		case r.exitd == "" || r.dante == "":
			t.Errorf("%s: an outcome is missing", id)
		case r.exitd == r.dante && r.why != "":
			t.Errorf("%s: the proxies agree, yet the row names a difference (%s)", id, r.why)
		case r.exitd != r.dante && r.why == "":
			t.Errorf("%s: the proxies differ and no passage of docs/socks.md explains it", id)
		case r.why != "" && !strings.Contains(sec, r.why):
			t.Errorf("%s: docs/socks.md's \"Differences from Dante\" lacks %q", id, r.why)
		}
		seen[id] = true
	}
}

func TestSOCKSDiffDante(t *testing.T) {
	testenv.RequireRoot(t)
	sdRequireClients(t)
	l := newLab(t, 1, fmt.Sprintf(`[socks]
listen = [
  { addr = "%[1]s:%[2]d", allow = [%[4]q] },
  { addr = "%[1]s:%[3]d", allow = [%[4]q], users = [%[5]q] },
]
`, sdProxy, sdExitdOpen, sdExitdAuth, sdClientNet, sdUser+":"+sdPass))
	zone, err := harness.ServeZone(l.Lab, sdZone)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zone.Close() })

	sdEtcNetns(t, l.Exit.Name, map[string]string{
		"resolv.conf":   "nameserver " + netlab.Internet4 + "\noptions timeout:2 attempts:2\n",
		"hosts":         "127.0.0.1 localhost\n::1 localhost\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
		"passwd":        "root:x:0:0:root:/root:/bin/sh\n" + sdUser + ":x:64000:64000::/nonexistent:/usr/sbin/nologin\n",
		"group":         "root:x:0:\n" + sdUser + ":x:64000:\n",
		"shadow":        "root:*:19000:0:99999:7:::\n" + sdUser + ":" + sdShadow + ":19000:0:99999:7:::\n",
	})
	ctx := context.Background()
	danteDir := t.TempDir()
	for _, d := range []struct {
		name   string
		port   int
		method string
	}{{"open", sdDanteOpen, "none"}, {"auth", sdDanteAuth, "username"}} {
		cfg := harness.DanteConfig{
			Comment:  "exitd e2e: socksdiff_test.go, " + d.name + " listener",
			Listen:   []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr(sdProxy), uint16(d.port))},
			External: netlab.ExitWANIface,
			Method:   d.method,
			Clients:  []netip.Prefix{netip.MustParsePrefix(sdClientNet)},
			Rules:    sdDanteRules(),
			Verbose:  true,
		}
		dn, err := harness.StartDante(ctx, l.Exit, "", danteDir, "danted-"+d.name, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := dn.Stop(); err != nil {
				t.Errorf("stop danted (%s): %v", d.name, err)
			}
			if t.Failed() {
				t.Logf("danted (%s) output:\n%s", d.name, dn.Proc.Output())
			}
		})
	}

	member := l.Members[0]
	rows := sdRows()
	type obs struct{ exitd, dante string }
	got := make([]obs, len(rows))
	t.Run("rows", func(t *testing.T) {
		for i, row := range rows {
			t.Run(row.client+"/"+row.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(ctx, sdRowTimeout)
				defer cancel()
				ports := [2]int{sdExitdOpen, sdDanteOpen}
				if row.auth {
					ports = [2]int{sdExitdAuth, sdDanteAuth}
				}
				var outs [2]string
				for k, port := range ports {
					dir := t.TempDir()
					if row.conf != nil {
						if err := os.WriteFile(filepath.Join(dir, "proxychains.conf"), []byte(row.conf(sdProxy, port)), 0o644); err != nil {
							t.Fatal(err)
						}
					}
					r, err := sdRun(ctx, member, dir, row.argv(dir, sdProxy, port))
					if err != nil {
						t.Fatalf("run %s: %v\n%s%s", row.client, err, r.stdout, r.stderr)
					}
					outs[k] = r.outcome(row.client == "pysocks" || row.client == "python")
				}
				got[i] = obs{outs[0], outs[1]}
				if outs[0] != row.exitd {
					t.Errorf("exitd: %q, want %q", outs[0], row.exitd)
				}
				if outs[1] != row.dante {
					t.Errorf("Dante: %q, want %q", outs[1], row.dante)
				}
			})
		}
	})
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "client\trequest\texitd\tDante")
	for i, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", row.client, row.name, got[i].exitd, got[i].dante)
	}
	tw.Flush()
	t.Logf("outcomes:\n%s", b.String())
}
