package etcdstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdServer is a real etcd (Debian's etcd-server, 3.4) run by a test as
// its own process: data in the test's temp dir, listening on free ports
// of 127.0.0.1, stopped by PID when the test ends.
type etcdServer struct {
	t         *testing.T
	bin, dir  string
	clientURL string
	peerURL   string
	tls       *testPKI // nil: plain http
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{}
	extraArgs []string
}

// etcdBinary finds etcd; a missing one skips the test, or fails it where
// the full suite must run (CI, make test).
func etcdBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/etcd"); serr == nil {
			return "/usr/bin/etcd"
		}
		if os.Getenv("EXITD_REQUIRE_ROOT") == "1" || os.Getenv("CI") != "" {
			t.Fatalf("etcd is not installed (apt-get install etcd-server etcd-client): %v", err)
		}
		t.Skip("etcd is not installed (apt-get install etcd-server); skipping the etcd store tests")
	}
	return bin
}

// startEtcd starts an etcd server with extra flags, TLS when pki is set.
func startEtcd(t *testing.T, pki *testPKI, extra ...string) *etcdServer {
	t.Helper()
	e := &etcdServer{t: t, bin: etcdBinary(t), dir: filepath.Join(t.TempDir(), "etcd"), tls: pki, extraArgs: extra}
	e.logPath = e.dir + ".log"
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		cp, pp := freePort(t), freePort(t)
		scheme := "http"
		if pki != nil {
			scheme = "https"
		}
		e.clientURL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, cp)
		e.peerURL = fmt.Sprintf("http://127.0.0.1:%d", pp)
		if err = e.start(); err == nil {
			t.Cleanup(e.stop)
			return e
		}
		e.stop()
		os.RemoveAll(e.dir) // a clash on a port: try others
	}
	t.Fatalf("etcd did not start: %v\n%s", err, e.logTail())
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs the process (again, on the same ports and data) and waits
// until it answers.
func (e *etcdServer) start() error {
	args := []string{
		"--name", "t", "--data-dir", e.dir,
		"--listen-client-urls", e.clientURL, "--advertise-client-urls", e.clientURL,
		"--listen-peer-urls", e.peerURL, "--initial-advertise-peer-urls", e.peerURL,
		"--initial-cluster", "t=" + e.peerURL,
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
	}
	if e.tls != nil {
		args = append(args, "--cert-file", e.tls.serverCert, "--key-file", e.tls.serverKey,
			"--trusted-ca-file", e.tls.caCert, "--client-cert-auth")
	}
	args = append(args, e.extraArgs...)
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	e.cmd = exec.Command(e.bin, args...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	e.exited = exited
	go func(cmd *exec.Cmd) { cmd.Wait(); close(exited) }(e.cmd)
	cli := e.client()
	defer cli.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("etcd exited: %v", e.cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd not ready: %v", err)
		}
	}
}

// stop ends the process by its PID and waits for it.
func (e *etcdServer) stop() {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	select {
	case <-e.exited:
		return
	default:
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(10 * time.Second):
		e.cmd.Process.Kill()
		<-e.exited
	}
}

// restart starts the stopped server again on its ports and data.
func (e *etcdServer) restart() {
	e.t.Helper()
	if err := e.start(); err != nil {
		e.t.Fatalf("etcd restart: %v\n%s", err, e.logTail())
	}
}

func (e *etcdServer) logTail() string {
	b, _ := os.ReadFile(e.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// client is a raw etcd client for the test's own checks.
func (e *etcdServer) client() *clientv3.Client {
	cfg := clientv3.Config{Endpoints: []string{e.clientURL}, DialTimeout: time.Second, Logger: zap.NewNop()}
	if e.tls != nil {
		tc, err := tlsConfig(e.tls.clientOptions(e.tls.caCert))
		if err != nil {
			e.t.Fatal(err)
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return cli
}

// options are store options for this server under prefix.
func (e *etcdServer) options(prefix string) Options {
	o := Options{Endpoints: []string{e.clientURL}, Prefix: prefix, DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second}
	if e.tls != nil {
		o = e.tls.clientOptions(e.tls.caCert)
		o.Endpoints, o.Prefix, o.DialTimeout, o.RequestTimeout = []string{e.clientURL}, prefix, 2*time.Second, 2*time.Second
	}
	return o
}

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, as PEM files.
type testPKI struct {
	caCert, serverCert, serverKey, clientCert, clientKey string
}

func (p *testPKI) clientOptions(ca string) Options {
	return Options{CertFile: p.clientCert, KeyFile: p.clientKey, CAFile: ca}
}

// newPKI makes a CA and certificates signed by it in dir.
func newPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{caCert: writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)}
	issue := func(cn string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (cert, key string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, cn+".pem", "CERTIFICATE", der), writePEM(t, dir, cn+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// prefixFor is a key prefix of its own for a test.
func prefixFor(t *testing.T) string {
	return "/exitd-test/" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
}
