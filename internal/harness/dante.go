package harness

// Dante (Debian's dante-server, danted 1.4) is the reference SOCKS5 server
// exitd is measured and checked against: `exitlab socks-bench` compares
// throughput, the e2e differential tests (internal/e2e/socksdiff_test.go)
// compare replies. This file is the one definition of how a lab runs it: a
// generated minimal sockd.conf, danted in the foreground inside a lab
// namespace, stopped by process group and then, should a child have left
// the group, by PID.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"exitd/internal/netlab"
)

// DanteConfig is a minimal danted configuration: where it listens, where it
// connects from, one SOCKS method, client rules admitting source prefixes,
// and socks rules on destinations (first match wins, as in sockd.conf).
// Both privilege levels run as root and errors go to stderr.
type DanteConfig struct {
	Comment  string           // first line, after "# "; empty: none
	Listen   []netip.AddrPort // "internal:"; at least one
	External string           // "external:": interface or address outgoing traffic leaves from
	// Method is "socksmethod:": "none" (when empty) or "username", which
	// danted checks against the passwd and shadow files it sees (under
	// `ip netns exec NS`, /etc/netns/NS/ ones replace the host's).
	Method  string
	Clients []netip.Prefix // "client pass" sources, to the listener of their family
	Rules   []DanteRule
	// Verbose logs connects and disconnects to stderr too ("logoutput");
	// otherwise only errors are logged, as Dante's own benchmarks did.
	Verbose bool
}

// DanteRule is one socks rule.
type DanteRule struct {
	Block    bool         // "socks block"; otherwise "socks pass"
	From, To netip.Prefix // zero: 0/0, every address of either family
	Commands []string     // "command:" (connect, bind, udpassociate, bindreply, udpreply); empty: all
}

// danteAny is sockd.conf's address of every family.
const danteAny = "0/0"

func dantePrefix(p netip.Prefix) string {
	if !p.IsValid() {
		return danteAny
	}
	return p.Masked().String()
}

// String renders the sockd.conf text.
func (c DanteConfig) String() string {
	var b strings.Builder
	if c.Comment != "" {
		fmt.Fprintf(&b, "# %s\n", c.Comment)
	}
	log := "error"
	b.WriteString("errorlog: stderr\n")
	if c.Verbose {
		b.WriteString("logoutput: stderr\n")
		log = "error connect disconnect"
	}
	for _, a := range c.Listen {
		fmt.Fprintf(&b, "internal: %s port = %d\n", a.Addr(), a.Port())
	}
	method := c.Method
	if method == "" {
		method = "none"
	}
	fmt.Fprintf(&b, "external: %s\nsocksmethod: %s\nclientmethod: none\n", c.External, method)
	b.WriteString("user.privileged: root\nuser.unprivileged: root\n")
	for _, p := range c.Clients {
		to := "0.0.0.0/0" // the listener the client reached is of its family
		if p.Addr().Is6() {
			to = "::/0"
		}
		fmt.Fprintf(&b, "client pass {\n\tfrom: %s to: %s\n\tlog: %s\n}\n", dantePrefix(p), to, log)
	}
	for _, r := range c.Rules {
		verdict := "pass"
		if r.Block {
			verdict = "block"
		}
		fmt.Fprintf(&b, "socks %s {\n\tfrom: %s to: %s\n", verdict, dantePrefix(r.From), dantePrefix(r.To))
		if len(r.Commands) > 0 {
			fmt.Fprintf(&b, "\tcommand: %s\n", strings.Join(r.Commands, " "))
		}
		fmt.Fprintf(&b, "\tlog: %s\n}\n", log)
	}
	return b.String()
}

// DanteCommand writes config to dir/name.conf and returns the command that
// runs bin (danted) on it in the foreground inside ns, its pid file
// dir/name.pid. The caller starts it (NS.Start, or its own way).
func DanteCommand(ctx context.Context, ns *netlab.NS, bin, dir, name, config string) (*exec.Cmd, error) {
	conf := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
		return nil, fmt.Errorf("harness: dante config: %w", err)
	}
	return ns.Command(ctx, bin, "-f", conf, "-p", filepath.Join(dir, name+".pid")), nil
}

// Dante is a danted started by StartDante.
type Dante struct {
	Proc   *netlab.Process
	Config DanteConfig
	seen   map[int]uint64 // danted processes seen in Proc's tree → start time
}

// StartDante runs bin (danted; "" means "danted") in ns with cfg, its files
// in dir, and waits until every Listen address accepts. Stop, or Lab.Close,
// ends it.
func StartDante(ctx context.Context, ns *netlab.NS, bin, dir, name string, cfg DanteConfig) (*Dante, error) {
	if len(cfg.Listen) == 0 {
		return nil, errors.New("harness: dante: no listen address")
	}
	if bin == "" {
		bin = "danted"
	}
	cmd, err := DanteCommand(context.Background(), ns, bin, dir, name, cfg.String())
	if err != nil {
		return nil, err
	}
	p, err := ns.Start(cmd)
	if err != nil {
		return nil, err
	}
	d := &Dante{Proc: p, Config: cfg, seen: map[int]uint64{}}
	err = netlab.WaitFor(ctx, 20*time.Second, func() bool {
		select {
		case <-p.Done():
			return true
		default:
		}
		for _, a := range cfg.Listen {
			c, err := ns.DialContext(ctx, "tcp", a.String())
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	})
	select {
	case <-p.Done():
		return nil, fmt.Errorf("harness: danted exited at start: %v\n%s", p.Wait(), p.Output())
	default:
	}
	if err != nil {
		d.Stop()
		return nil, fmt.Errorf("harness: danted not listening on %v: %w\n%s", cfg.Listen, err, p.Output())
	}
	d.remember()
	return d, nil
}

// remember records the danted processes of the tree, so Stop finds a child
// that left the process group.
func (d *Dante) remember() {
	for _, pid := range DanteTree(d.Proc.Pid()) {
		if st, ok := readStat(pid); ok {
			d.seen[pid] = st.start
		}
	}
}

// Stop ends danted's process group, then SIGKILLs, by PID, every danted it
// saw in its tree that is still alive (the same PID and start time, so a
// reused PID is left alone). Safe to call repeatedly.
func (d *Dante) Stop() error {
	d.remember()
	err := d.Proc.Stop()
	for pid, start := range d.seen {
		if st, ok := readStat(pid); ok && st.start == start && pid != d.Proc.Pid() && isDanted(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return err
}

// DanteTree returns root and those of its descendants (found through
// /proc's PPid) that are danted processes.
func DanteTree(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok {
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i]] {
			if isDanted(c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// procStat is what Stop needs from /proc/PID/stat.
type procStat struct {
	ppid  int
	start uint64 // clock ticks after boot
}

// readStat parses /proc/PID/stat; the fields are counted after the
// command's closing parenthesis (state is field 3, ppid 4, starttime 22).
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	return procStat{ppid: ppid, start: start}, err1 == nil && err2 == nil
}

func isDanted(pid int) bool {
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return err == nil && strings.TrimSpace(string(comm)) == "danted"
}
