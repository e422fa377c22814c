package harness

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

func TestWriteConfigEndpoint(t *testing.T) {
	o := NodeOptions{Dir: t.TempDir(), Endpoint: netlab.FloatingUnderlay4, Port: 51820}
	path, err := WriteConfig(&o)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `public_endpoint = "198.18.0.254:51820"`) {
		t.Errorf("config does not name the endpoint:\n%s", b)
	}
}

func TestReplaceEndpoint(t *testing.T) {
	conf := "[Interface]\nPrivateKey = a=\nAddress = 10.99.0.2/32\n\n[Peer]\nPublicKey = b=\nEndpoint = 198.18.0.254:443\nAllowedIPs = 0.0.0.0/0\n"
	got := replaceEndpoint(conf, "198.18.0.2:443")
	want := strings.Replace(conf, "198.18.0.254:443", "198.18.0.2:443", 1)
	if got != want {
		t.Errorf("replaceEndpoint =\n%s\nwant\n%s", got, want)
	}
	if got := replaceEndpoint("[Interface]\nPrivateKey = a=\n", "x:1"); got != "[Interface]\nPrivateKey = a=\n" {
		t.Errorf("a config without Endpoint changed: %q", got)
	}
}

func TestEtcdBinaryMissing(t *testing.T) {
	_, err := EtcdBinary("no-such-etcd-binary")
	if !errors.Is(err, ErrNoEtcd) || !strings.Contains(err.Error(), "apt-get install etcd-server") {
		t.Errorf("EtcdBinary of a missing binary = %v, want ErrNoEtcd with the install hint", err)
	}
}

func TestStartClusterRejects(t *testing.T) {
	lab := &netlab.Lab{Exits: make([]*netlab.NS, 2)}
	for _, tc := range []struct {
		name string
		o    ClusterOptions
		want string
	}{
		{"no etcd", ClusterOptions{Dir: t.TempDir()}, "no etcd"},
		{"too many nodes", ClusterOptions{Dir: t.TempDir(), Etcd: &EtcdCluster{}, Nodes: 3}, "3 nodes for 2 exits"},
		{"no dir", ClusterOptions{Etcd: &EtcdCluster{}}, "no Dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := StartCluster(context.Background(), lab, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("StartCluster = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestEtcdCluster starts three etcd members in a two-exit lab and checks
// that every exit reaches every member, that killing the leader leaves a
// cluster that elects another, and that Stop and Start bring all back on
// their data.
func TestEtcdCluster(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := EtcdBinary(""); err != nil {
		t.Fatal(err)
	}
	l := netlab.NewT(t, netlab.Options{Exits: 2})
	ctx := context.Background()
	e, err := StartEtcd(ctx, l, EtcdOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if got := strings.Join(e.Endpoints(), ","); got != "http://10.200.255.1:2379,http://10.200.255.2:2379,http://10.200.255.3:2379" {
		t.Errorf("endpoints %s", got)
	}
	put := func(ns *netlab.NS, url string) error {
		body := `{"key":"aw==","value":"dg=="}` // k = v
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v3/kv/put", strings.NewReader(body))
		resp, err := ns.HTTPClient().Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
	for _, x := range l.Exits {
		for _, ep := range e.Endpoints() {
			if err := put(x, ep); err != nil {
				t.Errorf("%s -> %s: %v", x.Role, ep, err)
			}
		}
	}
	leader, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := e.Members[leader].Proc.Pid()
	if err := e.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if err := netlab.WaitFor(ctx, 10*time.Second, func() bool {
		k, err := e.Leader(ctx)
		return err == nil && k != leader
	}); err != nil {
		t.Fatalf("no new leader after killing e%d (pid %d)", leader, pid)
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := put(l.Exit, e.Endpoints()[0]); err == nil {
		t.Fatal("etcd answered after Stop")
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := put(l.Exits[1], e.Endpoints()[leader]); err != nil {
		t.Fatalf("restarted cluster: %v", err)
	}
}
