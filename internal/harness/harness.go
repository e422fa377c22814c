// Package harness runs the real exitd binary in a netlab exit namespace and
// attaches real WireGuard members (Debian's wireguard-go + wg) configured
// from exactly what `exitctl member add` printed. The lab tests, `exitlab
// demo` and the benchmarks share it. StartExit starts any exit the
// benchmarks compare (exitd, plain wireguard-go exits, no tunnel); Fleet
// simulates thousands of members in-process (fleet.go).
//
// Of exitd's packages it imports exitd/internal/netlab only (a test checks
// it); it drives exitd and exitctl as programs, never as libraries. The
// fleet uses the wireguard-go library, as a member would.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"exitd/internal/netlab"
)

// Binaries names the programs under test.
type Binaries struct {
	Exitd, Exitctl string
	// WireguardGo is the member implementation; default "wireguard-go"
	// (Debian's package).
	WireguardGo string
}

// NodeOptions configure StartNode.
type NodeOptions struct {
	Bin Binaries
	// Dir holds config, state and sockets; it must exist.
	Dir string
	// Tun is the TUN name; default a random "ex" + 6 hex (unique across
	// parallel labs: wireguard-go's UAPI socket directory is global).
	Tun string
	// IPv4 and IPv6 are the member prefixes; defaults 10.99.0.0/16 and
	// fd00:99::/64.
	IPv4, IPv6 string
	// Extra is appended to the generated TOML (e.g. a [scheduler] table).
	Extra string
	// Port is the UDP port; default 443.
	Port int
	// Env is added to exitd's environment (e.g. "GOMEMLIMIT=900MiB"),
	// after this process's own; exitctl and the members do not get it.
	Env []string
	// Exit is the namespace exitd runs in; default the lab's Exit. A
	// cluster's nodes run in Lab.Exits (cluster.go).
	Exit *netlab.NS
	// Endpoint is public_endpoint's host (the address client configs
	// dial); default netlab.ExitUnderlay4.
	Endpoint string
}

// Node is a running exitd.
type Node struct {
	Lab    *netlab.Lab
	Opts   NodeOptions
	Config string // path of the TOML file
	Socket string // control socket
	Proc   *netlab.Process
}

// RandomName returns prefix + 6 random hex digits.
func RandomName(prefix string) string {
	var b [3]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// WriteConfig writes the node's TOML into o.Dir and returns its path.
func WriteConfig(o *NodeOptions) (string, error) {
	if o.Tun == "" {
		o.Tun = RandomName("ex")
	}
	if o.IPv4 == "" {
		o.IPv4 = "10.99.0.0/16"
	}
	if o.IPv6 == "" {
		o.IPv6 = "fd00:99::/64"
	}
	if o.Port == 0 {
		o.Port = 443
	}
	if o.Endpoint == "" {
		o.Endpoint = netlab.ExitUnderlay4
	}
	extra := o.Extra
	if !strings.Contains(extra, "[dns]") {
		// The lab's resolver upstream is the internet host (a test serves
		// names there), never the machine's own resolver.
		extra += fmt.Sprintf("\n[dns]\nupstreams = [%q]\n", netlab.Internet4+":53")
	}
	cfg := fmt.Sprintf(`state_dir = %q
public_endpoint = "%s:%d"
[listen]
port = %d
[tunnel]
name = %q
ipv4 = %q
ipv6 = %q
[wan]
interface = %q
[control]
socket = %q
%s`, filepath.Join(o.Dir, "state"), o.Endpoint, o.Port, o.Port, o.Tun, o.IPv4, o.IPv6,
		netlab.ExitWANIface, filepath.Join(o.Dir, "control.sock"), extra)
	path := filepath.Join(o.Dir, "exitd.toml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// StartNode writes the config, starts exitd in the lab's exit namespace and
// waits until its control socket answers.
func StartNode(ctx context.Context, lab *netlab.Lab, o NodeOptions) (*Node, error) {
	path, err := WriteConfig(&o)
	if err != nil {
		return nil, err
	}
	n := &Node{Lab: lab, Opts: o, Config: path, Socket: filepath.Join(o.Dir, "control.sock")}
	return n, n.Start(ctx)
}

// Start (re)starts the exitd process with the node's config.
func (n *Node) Start(ctx context.Context) error {
	cmd := n.NS().Command(context.Background(), n.Opts.Bin.Exitd, "run", "--config", n.Config)
	if len(n.Opts.Env) > 0 {
		cmd.Env = append(os.Environ(), n.Opts.Env...)
	}
	p, err := n.NS().Start(cmd)
	if err != nil {
		return err
	}
	n.Proc = p
	err = netlab.WaitFor(ctx, 20*time.Second, func() bool {
		select {
		case <-p.Done():
			return true
		default:
		}
		_, err := n.Exitctl(ctx, "status")
		return err == nil
	})
	select {
	case <-p.Done():
		return fmt.Errorf("harness: exitd exited during start: %v\n%s", p.Wait(), p.Output())
	default:
	}
	if err != nil {
		p.Stop()
		return fmt.Errorf("harness: exitd did not become ready: %w\n%s", err, p.Output())
	}
	return nil
}

// NS is the namespace the node runs in (NodeOptions.Exit or the lab's
// Exit).
func (n *Node) NS() *netlab.NS {
	if n.Opts.Exit != nil {
		return n.Opts.Exit
	}
	return n.Lab.Exit
}

// Exitctl runs exitctl against the node and returns stdout; on failure the
// error carries stderr.
func (n *Node) Exitctl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, n.Opts.Bin.Exitctl, append([]string{"--socket", n.Socket}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("exitctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Terminate sends SIGTERM and waits; it returns exitd's exit code.
func (n *Node) Terminate(timeout time.Duration) (int, error) {
	if err := n.Proc.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, err
	}
	select {
	case <-n.Proc.Done():
	case <-time.After(timeout):
		n.Proc.Stop()
		return -1, errors.New("harness: exitd did not exit after SIGTERM")
	}
	err := n.Proc.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

// Get fetches url from inside ns with a deadline; probes expected to be
// dropped need a short one (a dropped SYN only ends by timeout).
func Get(ctx context.Context, ns *netlab.NS, url string, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := ns.HTTPClient().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
