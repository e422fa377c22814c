package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"exitd/internal/netlab"
)

/* A real etcd cluster for a lab cluster: Debian's etcd (3.4) as separate
   processes in the lab's mgmt namespace, member k on its own address
   10.200.255.(k+1) (netlab.MgmtServicePrefix4, on mgmt's lo), client port
   2379, peer port 2380. Every exit reaches the prefix through its LAN link
   (StartEtcd adds the routes), as exit nodes reach an etcd cluster on a
   management network. Each process is stopped by its PID; Lab.Close kills
   any left over. The data directories live in EtcdOptions.Dir, so a member
   stopped or killed starts again on its data (Start). */

// Etcd ports on each member's address.
const (
	EtcdClientPort = 2379
	EtcdPeerPort   = 2380
)

// etcdReady bounds how long a (re)started cluster may take to elect a
// leader and answer /health.
const etcdReady = 20 * time.Second

// EtcdOptions configure StartEtcd.
type EtcdOptions struct {
	// Bin is the etcd binary; default etcd from PATH, else /usr/bin/etcd.
	Bin string
	// Dir holds the members' data directories (Dir/e0, Dir/e1, ...); it
	// must exist.
	Dir string
	// Members is the cluster size; default 3.
	Members int
}

// EtcdCluster is a running (or stopped) etcd cluster in the lab.
type EtcdCluster struct {
	Members []*EtcdMember
	lab     *netlab.Lab
	bin     string
}

// EtcdMember is one etcd process.
type EtcdMember struct {
	Name      string // e0, e1, ...
	Addr      netip.Addr
	ClientURL string // http://10.200.255.(k+1):2379
	Dir       string // data directory
	Proc      *netlab.Process
	args      []string
}

// ErrNoEtcd: the etcd binary is not installed.
var ErrNoEtcd = errors.New("etcd is not installed (apt-get install etcd-server)")

// EtcdBinary finds etcd: bin if set, else on PATH, else /usr/bin/etcd.
func EtcdBinary(bin string) (string, error) {
	if bin == "" {
		bin = "etcd"
	}
	p, err := exec.LookPath(bin)
	if err == nil {
		return p, nil
	}
	if _, serr := os.Stat("/usr/bin/etcd"); serr == nil && bin == "etcd" {
		return "/usr/bin/etcd", nil
	}
	return "", fmt.Errorf("harness: %w: %v", ErrNoEtcd, err)
}

// StartEtcd starts an etcd cluster in lab's mgmt namespace, routes its
// prefix from every exit, and waits until every member answers /health.
// Call it once per lab.
func StartEtcd(ctx context.Context, lab *netlab.Lab, o EtcdOptions) (*EtcdCluster, error) {
	bin, err := EtcdBinary(o.Bin)
	if err != nil {
		return nil, err
	}
	if o.Members == 0 {
		o.Members = 3
	}
	if o.Members < 1 || o.Members > 9 || o.Dir == "" {
		return nil, fmt.Errorf("harness: etcd: %d members in %q: want 1-9 and a directory", o.Members, o.Dir)
	}
	svc := netip.MustParsePrefix(netlab.MgmtServicePrefix4)
	c := &EtcdCluster{lab: lab, bin: bin}
	var initial []string
	for k := range o.Members {
		a := svc.Addr().As4()
		a[3] = byte(k + 1)
		m := &EtcdMember{Name: fmt.Sprintf("e%d", k), Addr: netip.AddrFrom4(a), Dir: filepath.Join(o.Dir, fmt.Sprintf("e%d", k))}
		m.ClientURL = fmt.Sprintf("http://%s:%d", m.Addr, EtcdClientPort)
		if err := lab.Mgmt.AddAddr("lo", netip.PrefixFrom(m.Addr, 32)); err != nil {
			return nil, fmt.Errorf("harness: etcd: %w", err)
		}
		initial = append(initial, fmt.Sprintf("%s=http://%s:%d", m.Name, m.Addr, EtcdPeerPort))
		c.Members = append(c.Members, m)
	}
	for i, e := range lab.Exits {
		p, err := netlab.ExitAddrs(i)
		if err != nil {
			return nil, err
		}
		if err := e.AddRoute(svc, p.Mgmt4); err != nil {
			return nil, fmt.Errorf("harness: etcd: %w", err)
		}
	}
	token := RandomName("lab-")
	for _, m := range c.Members {
		peer := fmt.Sprintf("http://%s:%d", m.Addr, EtcdPeerPort)
		m.args = []string{
			"--name", m.Name, "--data-dir", m.Dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", token,
			"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
		}
	}
	if err := c.Start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Endpoints are the members' client URLs, for [cluster] endpoints.
func (c *EtcdCluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Start starts every member that is not running (all of them at first;
// after Stop or Kill, on their data) and waits until every member answers
// /health, which needs an elected leader.
func (c *EtcdCluster) Start(ctx context.Context) error {
	for _, m := range c.Members {
		if m.running() {
			continue
		}
		p, err := c.lab.Mgmt.Start(c.lab.Mgmt.Command(context.Background(), c.bin, m.args...))
		if err != nil {
			return fmt.Errorf("harness: etcd %s: %w", m.Name, err)
		}
		m.Proc = p
	}
	err := netlab.WaitFor(ctx, etcdReady, func() bool {
		for _, m := range c.Members {
			if !m.running() || c.health(ctx, m) != nil {
				return false
			}
		}
		return true
	})
	if err != nil {
		var b strings.Builder
		for _, m := range c.Members {
			fmt.Fprintf(&b, "\n--- %s (running %v, health %v):\n%s", m.Name, m.running(), c.health(ctx, m), m.Output())
		}
		return fmt.Errorf("harness: etcd cluster not healthy: %w%s", err, b.String())
	}
	return nil
}

// Kill ends member k with SIGKILL (a crash) and waits until it is reaped.
func (c *EtcdCluster) Kill(k int) error {
	m := c.Members[k]
	if !m.running() {
		return nil
	}
	if err := syscall.Kill(m.Proc.Pid(), syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		return fmt.Errorf("harness: kill etcd %s (pid %d): %w", m.Name, m.Proc.Pid(), err)
	}
	<-m.Proc.Done()
	return nil
}

// Stop ends every member with SIGTERM (SIGKILL after a grace period), by
// PID, and waits until they are reaped.
func (c *EtcdCluster) Stop() error {
	var errs []error
	for _, m := range c.Members {
		if m.Proc != nil {
			errs = append(errs, m.Proc.Stop())
		}
	}
	return errors.Join(errs...)
}

// Close stops every member; the data directories are the caller's.
func (c *EtcdCluster) Close() error { return c.Stop() }

// Leader returns the index of the member that is the raft leader, as the
// first member that answers says.
func (c *EtcdCluster) Leader(ctx context.Context) (int, error) {
	var lastErr error
	for _, m := range c.Members {
		if !m.running() {
			continue
		}
		st, err := c.status(ctx, m)
		if err != nil {
			lastErr = err
			continue
		}
		for k, o := range c.Members {
			if !o.running() {
				continue
			}
			ost, err := c.status(ctx, o)
			if err == nil && ost.Header.MemberID == st.Leader {
				return k, nil
			}
		}
		lastErr = fmt.Errorf("leader %s is not a running member", st.Leader)
	}
	return -1, fmt.Errorf("harness: etcd leader: %v", lastErr)
}

// Output is what the member's process wrote (its log, warnings and up).
func (m *EtcdMember) Output() string {
	if m.Proc == nil {
		return ""
	}
	return m.Proc.Output()
}

func (m *EtcdMember) running() bool {
	if m.Proc == nil {
		return false
	}
	select {
	case <-m.Proc.Done():
		return false
	default:
		return true
	}
}

// health asks the member's /health from the mgmt namespace.
func (c *EtcdCluster) health(ctx context.Context, m *EtcdMember) error {
	b, err := c.call(ctx, http.MethodGet, m.ClientURL+"/health", nil)
	if err != nil {
		return err
	}
	var h struct {
		Health string `json:"health"`
	}
	if err := json.Unmarshal(b, &h); err != nil || h.Health != "true" {
		return fmt.Errorf("etcd %s /health: %s", m.Name, bytes.TrimSpace(b))
	}
	return nil
}

// etcdStatus is the part of the gRPC gateway's maintenance status used
// here (uint64s are JSON strings).
type etcdStatus struct {
	Header struct {
		MemberID string `json:"member_id"`
	} `json:"header"`
	Leader string `json:"leader"`
}

func (c *EtcdCluster) status(ctx context.Context, m *EtcdMember) (etcdStatus, error) {
	var st etcdStatus
	b, err := c.call(ctx, http.MethodPost, m.ClientURL+"/v3/maintenance/status", []byte("{}"))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Header.MemberID == "" {
		return st, fmt.Errorf("etcd %s status: %q: %v", m.Name, bytes.TrimSpace(b), err)
	}
	return st, nil
}

func (c *EtcdCluster) call(ctx context.Context, method, url string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := c.lab.Mgmt.HTTPClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	return b, err
}
