package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"exitd/internal/testenv"

	"github.com/vishvananda/netlink"
)

// testPrefix returns a fresh lab prefix ("nt" + 6 hex digits) so a test
// knows the names it must find removed.
func testPrefix(t testing.TB) string {
	t.Helper()
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "nt" + hex.EncodeToString(b[:])
}

// newLab builds a lab with an explicit Close in t.Cleanup as a backstop
// (Close is idempotent, so tests may also close it themselves).
func newLab(t testing.TB, opts Options) *Lab {
	t.Helper()
	testenv.RequireRoot(t)
	l, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// leftovers lists namespaces with prefix in /run/netns and in `ip netns
// list` (both read-only).
func leftovers(t testing.TB, prefix string) []string {
	t.Helper()
	var found []string
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			found = append(found, netnsDir+"/"+e.Name())
		}
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix+"-") {
			found = append(found, "ip netns list: "+line)
		}
	}
	return found
}

// rootLinks lists the links of the test process's own (root) namespace:
// read only.
func rootLinks(t testing.TB) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, l := range links {
		s = append(s, fmt.Sprintf("%d:%s", l.Attrs().Index, l.Attrs().Name))
	}
	slices.Sort(s)
	return s
}

// mustPing asserts that all count probes from ns to dst are answered.
func mustPing(t testing.TB, ns *NS, dst string) {
	t.Helper()
	r, err := Ping(t.Context(), ns, netip.MustParseAddr(dst), 2, 20*time.Millisecond)
	if err != nil {
		t.Fatalf("%s -> %s: %v", ns.Role, dst, err)
	}
	if r.Received != r.Sent || r.Sent != 2 {
		t.Fatalf("%s -> %s: %d of %d replies", ns.Role, dst, r.Received, r.Sent)
	}
}

// mustNotReach asserts that ns gets no reply from dst (no route, or
// replies that cannot come back).
func mustNotReach(t testing.TB, ns *NS, dst string) {
	t.Helper()
	r, err := Ping(t.Context(), ns, netip.MustParseAddr(dst), 1, 20*time.Millisecond)
	if err == nil && r.Received != 0 {
		t.Fatalf("%s reached %s, want unreachable", ns.Role, dst)
	}
}

// get fetches url with ns's client and returns the body.
func get(t testing.TB, ns *NS, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ns.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", ns.Role, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: GET %s: read: %v", ns.Role, url, err)
	}
	return resp.StatusCode, string(b)
}

// readSysctl reads /proc/sys/<key> inside ns.
func readSysctl(t testing.TB, ns *NS, key string) string {
	t.Helper()
	var v string
	err := ns.Run(func() error {
		b, err := os.ReadFile("/proc/sys/" + key)
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
