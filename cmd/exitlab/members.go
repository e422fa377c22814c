package main

// members-bench: the scale benchmark of docs/members.md.
//
//	keys ──▶ POST /v1/members:batch (1,000 a time) ──▶ exitd      "add"
//	exitctl member list (JSON and table)                          "list"
//	simulated members ──UDP/443 from their own source address──▶ exitd
//	   (one wireguard-go device each: simTUN, batch size 1; one shared
//	    UDP socket in member 1's namespace, IP_PKTINFO per source)
//	ICMP echo to the internet host every --ping; replies counted    "connect"
//	SIGTERM + start exitd; wait until every simulated member has a
//	fresh handshake and a ping answered                            "storm"
//
// exitd's RSS is read from /proc at each stage.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"exitd/control"
	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/keys"
)

type membersOpts struct {
	members    int
	handshaken int
	ping       time.Duration
	timeout    time.Duration
	out        string
	noRestart  bool
	memLimit   string // GOMEMLIMIT for exitd only
}

func newMembersBenchCmd(b *binFlags, stdout io.Writer) *cobra.Command {
	o := membersOpts{}
	cmd := &cobra.Command{
		Use:   "members-bench",
		Short: "Members at scale: add and list 20,000, exitd RSS with thousands handshaken, reconnect storm",
		Long: `Measures exitd with many members (docs/members.md, "Scale"):

  add      --members keys added through the batch API, 1,000 per request
  list     exitctl member list, JSON and table, with live figures
  rss      exitd's RSS empty, with the members configured, and with
           --handshaken of them connected and pinging the internet host
  connect  time until the simulated members have all handshaken
  storm    exitd restarted (SIGTERM, start): time until every simulated
           member has a new handshake and an answered ping

Simulated members are wireguard-go devices in this process (~250 KiB each,
batch size 1), each sending from its own address in member 1's namespace
(per-IP handshake limits). Targets: add 20,000 ≤ 5 s, list ≤ 1 s, RSS with
20,000 handshaken ≤ 1 GB. Writes members.json to --out and prints a table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.handshaken > o.members || o.handshaken > netlab.MaxExtraAddrs {
				return fmt.Errorf("--handshaken must be at most --members and %d", netlab.MaxExtraAddrs)
			}
			r, err := membersBench(cmd.Context(), b.binaries(), o, cmd.ErrOrStderr())
			if r != nil {
				printMembersReport(stdout, r)
				if o.out != "" {
					if werr := writeReport(o.out, "members.json", r); werr != nil {
						err = errors.Join(err, werr)
					}
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.members, "members", 20000, "members to add")
	f.IntVar(&o.handshaken, "handshaken", 2000, "of those, simulated members that connect and ping")
	f.DurationVar(&o.ping, "ping", 10*time.Second, "each simulated member pings the internet host this often")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up waiting for connects after this long")
	f.StringVar(&o.out, "out", "bench-results", "directory for members.json (empty: none)")
	f.BoolVar(&o.noRestart, "no-restart", false, "skip the reconnect storm")
	f.StringVar(&o.memLimit, "exitd-gomemlimit", "", "run exitd with this GOMEMLIMIT (e.g. 900MiB); the simulator keeps its own")
	return cmd
}

// membersReport is members.json.
type membersReport struct {
	Members       int    `json:"members"`
	Handshaken    int    `json:"handshaken"`
	ExitdMemLimit string `json:"exitd_gomemlimit,omitempty"`

	AddSeconds       float64 `json:"add_seconds"`
	ListAPISeconds   float64 `json:"list_api_seconds"`
	ListJSONSeconds  float64 `json:"list_exitctl_json_seconds"`
	ListTableSeconds float64 `json:"list_exitctl_table_seconds"`

	RSSEmptyMiB      float64 `json:"rss_empty_mib"`
	RSSConfiguredMiB float64 `json:"rss_configured_mib"`
	RSSConnectedMiB  float64 `json:"rss_connected_mib"`
	PerMemberKiB     float64 `json:"per_configured_member_kib"`
	PerConnectedKiB  float64 `json:"per_connected_member_kib"`
	// RSS20kMiB extrapolates: configured RSS + members × per-connected cost.
	RSS20kMiB float64 `json:"rss_all_connected_estimate_mib"`

	ConnectSeconds float64 `json:"connect_seconds"`
	Connected      int     `json:"connected"`
	PingsAnswered  int     `json:"members_with_ping_answered"`

	StormSeconds      float64 `json:"storm_seconds,omitempty"`
	StormAfterReady   float64 `json:"storm_after_ready_seconds,omitempty"`
	StormReconnected  int     `json:"storm_reconnected,omitempty"`
	StormPingAnswered int     `json:"storm_ping_answered,omitempty"`

	SimRSSMiB float64 `json:"simulator_rss_mib"`

	// Go runtime figures of exitd from its metrics endpoint at each stage
	// ("configured", "connected"), when it serves them.
	Runtime map[string]goRuntime `json:"exitd_runtime,omitempty"`
}

// goRuntime is what exitd's Go collector reports.
type goRuntime struct {
	HeapAllocMiB  float64 `json:"heap_alloc_mib"`
	HeapInuseMiB  float64 `json:"heap_inuse_mib"`
	StackInuseMiB float64 `json:"stack_inuse_mib"`
	Goroutines    float64 `json:"goroutines"`
}

// scrapeRuntime reads exitd's Go runtime metrics from inside the exit
// namespace; ok is false when there is no metrics endpoint.
func scrapeRuntime(ctx context.Context, lab *netlab.Lab) (goRuntime, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9586/metrics", nil)
	if err != nil {
		return goRuntime{}, false
	}
	resp, err := lab.Exit.HTTPClient().Do(req)
	if err != nil {
		return goRuntime{}, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return goRuntime{}, false
	}
	var g goRuntime
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "go_memstats_heap_alloc_bytes":
			g.HeapAllocMiB = v / (1 << 20)
		case "go_memstats_heap_inuse_bytes":
			g.HeapInuseMiB = v / (1 << 20)
		case "go_memstats_stack_inuse_bytes":
			g.StackInuseMiB = v / (1 << 20)
		case "go_goroutines":
			g.Goroutines = v
		}
	}
	return g, true
}

func membersBench(ctx context.Context, bins harness.Binaries, o membersOpts, log io.Writer) (*membersReport, error) {
	r := &membersReport{Members: o.members, Handshaken: o.handshaken, ExitdMemLimit: o.memLimit}
	step := func(format string, args ...any) { fmt.Fprintf(log, "members-bench: "+format+"\n", args...) }

	if o.memLimit != "" {
		// exitd inherits the environment; this process's runtime read its
		// own settings at start and is not affected.
		os.Setenv("GOMEMLIMIT", o.memLimit)
	}
	step("lab: 1 member namespace with %d extra source addresses", o.handshaken)
	lab, err := netlab.New(ctx, netlab.Options{Members: 1, ExtraMemberAddrs: o.handshaken})
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	if err := pinNeighbours(ctx, lab); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "xmb")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	node, err := harness.StartNode(ctx, lab, harness.NodeOptions{Bin: bins, Dir: dir, IPv4: "10.96.0.0/12", IPv6: "fd00:96::/64"})
	if err != nil {
		return nil, err
	}
	defer node.Proc.Stop()
	r.RSSEmptyMiB = rssMiB(node.Proc.Pid())
	client := control.NewClient(node.Socket)

	step("generating %d key pairs", o.members)
	privs := genKeys(o.members)

	step("adding %d members, 1,000 per request", o.members)
	start := time.Now()
	added, err := addMembers(ctx, client, privs)
	if err != nil {
		return r, err
	}
	r.AddSeconds = time.Since(start).Seconds()

	step("listing")
	start = time.Now()
	if ms, err := client.Members(ctx); err != nil || len(ms) != o.members {
		return r, fmt.Errorf("list: %d members, %v", len(ms), err)
	}
	r.ListAPISeconds = time.Since(start).Seconds()
	if r.ListJSONSeconds, err = timeExitctl(ctx, node, "--json", "member", "list"); err != nil {
		return r, err
	}
	if r.ListTableSeconds, err = timeExitctl(ctx, node, "member", "list"); err != nil {
		return r, err
	}
	r.RSSConfiguredMiB = rssMiB(node.Proc.Pid())
	r.Runtime = map[string]goRuntime{}
	if g, ok := scrapeRuntime(ctx, lab); ok {
		r.Runtime["configured"] = g
	}
	r.PerMemberKiB = (r.RSSConfiguredMiB - r.RSSEmptyMiB) * 1024 / float64(max(o.members, 1))
	if o.handshaken == 0 {
		return r, nil
	}

	step("starting %d simulated members", o.handshaken)
	nodeStatus, err := client.Status(ctx)
	if err != nil {
		return r, err
	}
	nodeKey, err := keys.Parse(nodeStatus.PublicKey)
	if err != nil {
		return r, err
	}
	sn, err := newSimNet(lab.Members[0])
	if err != nil {
		return r, err
	}
	defer sn.Close()
	endpoint := netip.MustParseAddrPort(netlab.ExitUnderlay4 + ":443")
	sims := make([]*simMember, 0, o.handshaken)
	defer func() {
		for _, s := range sims {
			s.Close()
		}
	}()
	start = time.Now()
	for i := range o.handshaken {
		s, err := newSimMember(sn, lab.Members[0].ExtraAddrs[i], privs[i], added[i].IPv4, nodeKey, endpoint, uint16(i))
		if err != nil {
			return r, fmt.Errorf("simulated member %d: %w", i, err)
		}
		sims = append(sims, s)
	}
	pingCtx, stopPing := context.WithCancel(ctx)
	defer stopPing()
	go routinePing(pingCtx, sims, o.ping)

	step("waiting for %d handshakes", o.handshaken)
	r.Connected, err = waitConnected(ctx, client, o.handshaken, o.timeout, step)
	r.ConnectSeconds = time.Since(start).Seconds()
	if err != nil {
		return r, err
	}
	// One full ping round after everyone connected, then read the RSS.
	mark := time.Now()
	r.PingsAnswered = waitPings(ctx, sims, mark, o.ping*2+5*time.Second)
	r.RSSConnectedMiB = rssMiB(node.Proc.Pid())
	if g, ok := scrapeRuntime(ctx, lab); ok {
		r.Runtime["connected"] = g
	}
	r.PerConnectedKiB = (r.RSSConnectedMiB - r.RSSConfiguredMiB) * 1024 / float64(o.handshaken)
	r.RSS20kMiB = r.RSSConfiguredMiB + float64(o.members)*r.PerConnectedKiB/1024
	r.SimRSSMiB = rssMiB(os.Getpid())
	if o.noRestart {
		return r, nil
	}

	step("restarting exitd: reconnect storm of %d members", o.handshaken)
	restart := time.Now()
	if code, err := node.Terminate(30 * time.Second); err != nil || code != 0 {
		return r, fmt.Errorf("stop exitd: exit %d, %v", code, err)
	}
	if err := node.Start(ctx); err != nil {
		return r, err
	}
	ready := time.Now()
	r.StormReconnected, err = waitConnected(ctx, client, o.handshaken, o.timeout, step)
	r.StormSeconds = time.Since(restart).Seconds()
	r.StormAfterReady = time.Since(ready).Seconds()
	if err != nil {
		return r, err
	}
	r.StormPingAnswered = waitPings(ctx, sims, ready, o.ping*2+5*time.Second)
	return r, nil
}

// pinNeighbours gives the exit a permanent neighbour entry for each of
// member 1's extra addresses. The exit answers every simulated member on
// the underlay segment, and the kernel's neighbour table is shared by all
// namespaces with gc_thresh3 = 1024 by default; permanent entries do not
// count against it, and the host's sysctls stay untouched.
func pinNeighbours(ctx context.Context, lab *netlab.Lab) error {
	m := lab.Members[0]
	if len(m.ExtraAddrs) == 0 {
		return nil
	}
	out, err := m.Exec(ctx, "cat", "/sys/class/net/"+netlab.MemberIface+"/address")
	if err != nil {
		return err
	}
	mac := strings.TrimSpace(string(out))
	var b strings.Builder
	for _, a := range m.ExtraAddrs {
		fmt.Fprintf(&b, "neigh replace %s lladdr %s dev %s nud permanent\n", a, mac, netlab.ExitUnderlayIface)
	}
	cmd := lab.Exit.Command(ctx, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pin neighbours: %v: %s", err, out)
	}
	return nil
}

// genKeys makes n private keys on every CPU.
func genKeys(n int) []keys.Key {
	out := make([]keys.Key, n)
	var wg sync.WaitGroup
	per := (n + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
	for lo := 0; lo < n; lo += per {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				k, err := keys.Generate(rand.Reader)
				if err != nil {
					panic(err) // crypto/rand does not fail
				}
				out[i] = k
			}
		}(lo, min(lo+per, n))
	}
	wg.Wait()
	return out
}

func addMembers(ctx context.Context, c *control.Client, privs []keys.Key) ([]control.Member, error) {
	const chunk = 1000
	out := make([]control.Member, 0, len(privs))
	pubs := make([]string, len(privs))
	for i, k := range privs {
		pubs[i] = k.Public().String()
	}
	for lo := 0; lo < len(privs); lo += chunk {
		hi := min(lo+chunk, len(privs))
		reqs := make([]control.AddMemberRequest, 0, hi-lo)
		for i := lo; i < hi; i++ {
			reqs = append(reqs, control.AddMemberRequest{Label: fmt.Sprintf("sim-%05d", i), PublicKey: pubs[i]})
		}
		ms, err := c.AddMembers(ctx, control.AddMembersRequest{Members: reqs})
		if err != nil {
			return out, fmt.Errorf("add members %d-%d: %w", lo, hi, err)
		}
		out = append(out, ms...)
	}
	return out, nil
}

func timeExitctl(ctx context.Context, n *harness.Node, args ...string) (float64, error) {
	cmd := exec.CommandContext(ctx, n.Opts.Bin.Exitctl, append([]string{"--socket", n.Socket}, args...)...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("exitctl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return time.Since(start).Seconds(), nil
}

// waitConnected polls exitd until want members have a live session,
// logging the count every 10 s.
func waitConnected(ctx context.Context, c *control.Client, want int, timeout time.Duration, log func(string, ...any)) (int, error) {
	got := 0
	start, last := time.Now(), time.Now()
	err := netlab.WaitFor(ctx, timeout, func() bool {
		s, err := c.Status(ctx)
		if err == nil {
			got = s.MembersConnected
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			log("%d of %d connected after %.0f s", got, want, time.Since(start).Seconds())
		}
		return got >= want
	})
	if err != nil {
		return got, fmt.Errorf("%d of %d members connected: %w", got, want, err)
	}
	return got, nil
}

// waitPings waits until every simulated member had a ping answered after
// since, up to d; it returns how many had.
func waitPings(ctx context.Context, sims []*simMember, since time.Time, d time.Duration) int {
	count := func() int {
		n := 0
		for _, s := range sims {
			if s.tun.lastReply.Load() > since.UnixNano() {
				n++
			}
		}
		return n
	}
	netlab.WaitFor(ctx, d, func() bool { return count() == len(sims) })
	return count()
}

// rssMiB reads VmRSS of pid.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func writeReport(dir, name string, v any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644)
}

func printMembersReport(w io.Writer, r *membersReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "MEASURE\tRESULT\tTARGET\n")
	if r.ExitdMemLimit != "" {
		fmt.Fprintf(tw, "exitd GOMEMLIMIT\t%s\t\n", r.ExitdMemLimit)
	}
	fmt.Fprintf(tw, "add %d members\t%.2f s (%.0f µs each)\t≤ 5 s for 20,000\n", r.Members, r.AddSeconds, r.AddSeconds*1e6/float64(max(r.Members, 1)))
	fmt.Fprintf(tw, "list (API / exitctl --json / table)\t%.2f / %.2f / %.2f s\t≤ 1 s\n", r.ListAPISeconds, r.ListJSONSeconds, r.ListTableSeconds)
	fmt.Fprintf(tw, "exitd RSS empty\t%.0f MiB\t\n", r.RSSEmptyMiB)
	fmt.Fprintf(tw, "exitd RSS, %d configured\t%.0f MiB (%.1f KiB/member)\t\n", r.Members, r.RSSConfiguredMiB, r.PerMemberKiB)
	if r.Handshaken > 0 {
		fmt.Fprintf(tw, "exitd RSS, %d handshaken + pinging\t%.0f MiB (%.1f KiB/connected member)\t\n", r.Handshaken, r.RSSConnectedMiB, r.PerConnectedKiB)
		fmt.Fprintf(tw, "estimate, all %d handshaken\t%.0f MiB\t≤ 1024 MiB\n", r.Members, r.RSS20kMiB)
		fmt.Fprintf(tw, "initial connect of %d\t%.1f s (%d connected, %d pings answered)\t\n", r.Handshaken, r.ConnectSeconds, r.Connected, r.PingsAnswered)
	}
	if r.StormSeconds > 0 {
		fmt.Fprintf(tw, "reconnect storm of %d after restart\t%.1f s (%.1f s after ready; %d reconnected, %d pings answered)\t≤ 60 s for 20,000\n",
			r.Handshaken, r.StormSeconds, r.StormAfterReady, r.StormReconnected, r.StormPingAnswered)
	}
	for _, stage := range []string{"configured", "connected"} {
		if g, ok := r.Runtime[stage]; ok {
			fmt.Fprintf(tw, "exitd Go runtime, %s\theap alloc %.0f / in use %.0f MiB, stacks %.0f MiB, %.0f goroutines\t\n",
				stage, g.HeapAllocMiB, g.HeapInuseMiB, g.StackInuseMiB, g.Goroutines)
		}
	}
	if r.SimRSSMiB > 0 {
		fmt.Fprintf(tw, "simulator RSS (this process)\t%.0f MiB\t\n", r.SimRSSMiB)
	}
	tw.Flush()
}

// simNet is one UDP socket in a member namespace, bound to the wildcard
// address, shared by all simulated members: each sends from its own source
// address (IP_PKTINFO) and receives what is addressed to it.
type simNet struct {
	udp *net.UDPConn
	pc  *ipv4.PacketConn

	mu     sync.RWMutex
	byAddr map[netip.Addr]*simBind

	done chan struct{}
}

func newSimNet(ns *netlab.NS) (*simNet, error) {
	var udp *net.UDPConn
	err := ns.Run(func() error {
		var err error
		udp, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	})
	if err != nil {
		return nil, err
	}
	udp.SetReadBuffer(16 << 20)
	udp.SetWriteBuffer(16 << 20)
	pc := ipv4.NewPacketConn(udp)
	if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
		udp.Close()
		return nil, err
	}
	s := &simNet{udp: udp, pc: pc, byAddr: map[netip.Addr]*simBind{}, done: make(chan struct{})}
	go s.routineReceive()
	return s, nil
}

func (s *simNet) Close() error {
	err := s.udp.Close()
	<-s.done
	return err
}

// routineReceive hands each datagram to the simulated member it is
// addressed to; a full queue drops it, like a socket buffer would.
func (s *simNet) routineReceive() {
	defer close(s.done)
	buf := make([]byte, 65536)
	for {
		n, cm, src, err := s.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if cm == nil {
			continue
		}
		dst, _ := netip.AddrFromSlice(cm.Dst.To4())
		s.mu.RLock()
		b := s.byAddr[dst]
		s.mu.RUnlock()
		ua, ok := src.(*net.UDPAddr)
		if b == nil || !ok {
			continue
		}
		p := simPacket{data: append([]byte(nil), buf[:n]...), from: ua.AddrPort()}
		select {
		case b.in <- p:
		default:
		}
	}
}

type simPacket struct {
	data []byte
	from netip.AddrPort
}

// simBind is one simulated member's conn.Bind on the shared socket.
type simBind struct {
	net *simNet
	src netip.Addr
	in  chan simPacket

	mu     sync.Mutex
	closed chan struct{} // of the current Open
}

var _ conn.Bind = (*simBind)(nil)

func (b *simBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed != nil {
		select {
		case <-b.closed:
		default:
			return nil, 0, conn.ErrBindAlreadyOpen
		}
	}
	closed := make(chan struct{})
	b.closed = closed
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case p := <-b.in:
			sizes[0] = copy(packets[0], p.data)
			eps[0] = simEndpoint(p.from)
			return 1, nil
		case <-closed:
			return 0, net.ErrClosed
		}
	}
	return []conn.ReceiveFunc{recv}, uint16(b.net.udp.LocalAddr().(*net.UDPAddr).Port), nil
}

func (b *simBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed != nil {
		select {
		case <-b.closed:
		default:
			close(b.closed)
		}
	}
	return nil
}

func (b *simBind) SetMark(uint32) error { return nil }
func (b *simBind) BatchSize() int       { return 1 }

func (b *simBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	dst := net.UDPAddrFromAddrPort(netip.AddrPort(ep.(simEndpoint)))
	cm := &ipv4.ControlMessage{Src: b.src.AsSlice()}
	for _, buf := range bufs {
		if _, err := b.net.pc.WriteTo(buf, cm, dst); err != nil {
			return err
		}
	}
	return nil
}

func (b *simBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return simEndpoint(ap), nil
}

// simEndpoint is the node's address as a simulated member sees it.
type simEndpoint netip.AddrPort

func (e simEndpoint) ClearSrc()           {}
func (e simEndpoint) SrcToString() string { return "" }
func (e simEndpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e simEndpoint) DstToBytes() []byte {
	b, _ := netip.AddrPort(e).MarshalBinary()
	return b
}
func (e simEndpoint) DstIP() netip.Addr { return netip.AddrPort(e).Addr() }
func (e simEndpoint) SrcIP() netip.Addr { return netip.Addr{} }

// simTUN is a simulated member's TUN: Read hands out the pings routinePing
// injects, Write counts what comes back (the echo replies).
type simTUN struct {
	in        chan []byte
	events    chan tun.Event
	closed    chan struct{}
	closeOnce sync.Once
	lastReply atomic.Int64 // unix nanos
	now       func() time.Time
}

var _ tun.Device = (*simTUN)(nil)

func newSimTUN(now func() time.Time) *simTUN {
	t := &simTUN{in: make(chan []byte, 4), events: make(chan tun.Event, 1), closed: make(chan struct{}), now: now}
	t.events <- tun.EventUp
	return t
}

func (t *simTUN) File() *os.File { return nil }
func (t *simTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-t.in:
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, nil
	case <-t.closed:
		return 0, os.ErrClosed
	}
}
func (t *simTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		p := b[offset:]
		if len(p) >= 28 && p[0]>>4 == 4 && p[9] == 1 && p[20] == 0 { // ICMP echo reply
			t.lastReply.Store(t.now().UnixNano())
		}
	}
	return len(bufs), nil
}
func (t *simTUN) MTU() (int, error)        { return 1420, nil }
func (t *simTUN) Name() (string, error)    { return "sim", nil }
func (t *simTUN) Events() <-chan tun.Event { return t.events }
func (t *simTUN) BatchSize() int           { return 1 }
func (t *simTUN) Close() error {
	t.closeOnce.Do(func() {
		close(t.closed)
		close(t.events)
	})
	return nil
}

// simMember is one simulated member: a wireguard-go device and its ping.
type simMember struct {
	dev  *device.Device
	bind *simBind
	tun  *simTUN
	ping []byte
}

func newSimMember(sn *simNet, src netip.Addr, priv keys.Key, inner netip.Addr, node keys.Key, endpoint netip.AddrPort, id uint16) (*simMember, error) {
	b := &simBind{net: sn, src: src, in: make(chan simPacket, 16)}
	sn.mu.Lock()
	sn.byAddr[src] = b
	sn.mu.Unlock()
	t := newSimTUN(time.Now)
	dev := device.NewDevice(t, b, device.NewLogger(device.LogLevelSilent, ""))
	cfg := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\npersistent_keepalive_interval=25\nallowed_ip=0.0.0.0/0\n",
		priv.Hex(), node.Hex(), endpoint)
	if err := dev.IpcSet(cfg); err != nil {
		dev.Close()
		return nil, err
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, err
	}
	return &simMember{dev: dev, bind: b, tun: t, ping: echoRequest(inner, netip.MustParseAddr(netlab.Internet4), id)}, nil
}

func (s *simMember) Close() { s.dev.Close() }

// routinePing sends each member's ping once per period, spread evenly.
func routinePing(ctx context.Context, sims []*simMember, period time.Duration) {
	const tick = 50 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	per := max(1, int(int64(len(sims))*int64(tick)/int64(period)))
	for i := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range per {
			select {
			case sims[i].tun.in <- sims[i].ping:
			default:
			}
			i = (i + 1) % len(sims)
		}
	}
}

// echoRequest is an IPv4 ICMP echo request from src to dst.
func echoRequest(src, dst netip.Addr, id uint16) []byte {
	p := make([]byte, 20+8+16)
	p[0], p[8], p[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	copy(p[12:16], src.AsSlice())
	copy(p[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
	icmp := p[20:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], 1)
	copy(icmp[8:], "exitd-members!!!")
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return p
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
