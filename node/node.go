// Package node is exitd's composition root: it builds the parts (kernel
// profile check, nftables table, TUN + wireguard-go behind the scheduler,
// member registry, control socket) in order, wires them, runs until told to
// stop, reloads on request and tears everything down in reverse.
//
// Lifecycle (docs/architecture.md):
//
//	start:  config → kernel profile → nft table → TUN + UDP → peers → control → READY
//	reload: RELOADING → re-read config and members → READY
//	stop:   STOPPING → control → device → nft table → member conntrack
//
// node may import every exitd package but sched and tunnel, which meet only
// in dataplane; nothing imports node but cmd/exitd.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"exitd/config"
	"exitd/control"
	"exitd/dataplane"
	"exitd/dns"
	"exitd/keys"
	"exitd/members"
	"exitd/members/etcdstore"
	"exitd/nat"
	"exitd/observability"
	"exitd/portforward"
	"exitd/service"
	"exitd/socks"
	"exitd/tuning"
	"exitd/units"
)

// Notifier tells the service manager about state changes ("READY=1",
// "STATUS=...", "RELOADING=1", "STOPPING=1", "WATCHDOG=1"). Implementations
// must be safe to call when no manager listens.
type Notifier interface {
	Notify(state string) error
}

// Options configure a Node.
type Options struct {
	Config  *config.Config
	Logger  *slog.Logger
	Version string
	Notify  Notifier
	Rand    io.Reader
	Now     func() time.Time
	// Reload delivers reload requests (SIGHUP); each triggers Reload.
	Reload <-chan struct{}
	// LoadConfig re-reads the config on reload; nil keeps the current one.
	LoadConfig func() (*config.Config, error)
	// Service is systemd's fd store and watchdog (see systemd.go); nil
	// means none.
	Service Service
	// SampleInterval is the load report's sampling period; 0 means 15 s.
	SampleInterval time.Duration
}

// Node is a running exit node.
type Node struct {
	log     *slog.Logger
	version string
	notify  Notifier
	rand    io.Reader
	now     func() time.Time
	started time.Time
	loadCfg func() (*config.Config, error)

	// cfg is the running config, an immutable snapshot swapped by Reload;
	// readers never lock.
	cfg atomic.Pointer[config.Config]
	// mu serialises member changes and reloads so registry, device and
	// nftables agree.
	mu   sync.Mutex
	priv keys.Key

	reg *members.Registry
	nat natTable
	// natApplied is the ruleset config applied last (guarded by mu after
	// start); deny is its deny set, which the resolver and the proxy read.
	natApplied nat.Config
	deny       atomic.Pointer[nat.DenySet]
	plane      *dataplane.Plane
	dns        *dns.Resolver // nil when [dns] is off
	socks      *socks.Server // nil when [socks] is off
	// pf serves NAT-PMP and pfTable holds the mappings; nil when
	// [portforward] is off (portforward.go).
	pf      *portforward.Server
	pfTable *portforward.Table
	// store is the cluster's etcd store (nil for a single node); cluster
	// is this node's registration there (cluster.go).
	store   *etcdstore.Store
	cluster clusterState
	ctl     *control.Server
	kernel  *tuning.Monitor

	obs         *observability.Observability // nil before the metrics step
	sampleEvery time.Duration

	svc    Service         // service.go
	health *service.Health // watchdog's view of the data path

	// flushCT deletes conntrack entries whose original source is in one of
	// the prefixes (nat.FlushConntrack in the node's namespace); cutCh
	// queues prefixes for routineCut while the node runs (conntrack.go).
	flushCT func(ps ...netip.Prefix) (int, error)
	// linkSpeed reads a link's speed for the auto egress rate (egress.go).
	linkSpeed func(ifname string) (uint64, bool)
	// ctMaxPath is nf_conntrack_max (quota.go); countCT counts conntrack
	// entries per member address and conns caches it (connstate.go).
	ctMaxPath string
	countCT   func([]netip.Prefix) (map[netip.Addr]int, error)
	conns     connState
	cutCh     chan []netip.Prefix
	cutting   atomic.Bool // routineCut runs
}

// natTable is exitd's nftables table as the node drives it; *nat.Manager
// implements it (tests inject failures).
type natTable interface {
	// Apply replaces the table with the ruleset for c, atomically.
	Apply(c nat.Config) error
	// Present reports whether the table exists.
	Present() (bool, error)
	// Counters are the ruleset's named drop counters.
	Counters() (map[string]nat.Counter, error)
	// ApplyForwards replaces the port-forward table; RemoveForwards
	// deletes it.
	ApplyForwards(wan string, fs []nat.Forward) error
	RemoveForwards() error
	// ConnDrops are the fair-state rules' drops per member address.
	ConnDrops() (map[netip.Addr]nat.MemberDrops, error)
	// Watch restores the table when someone deletes or edits it, until
	// ctx ends.
	Watch(ctx context.Context, onEvent func(error)) error
	// Restorations counts the times Watch restored the table.
	Restorations() uint64
	// Mode says where NAT lives: "inet", or "split (ip + ip6 nat
	// tables)" on kernels without inet-family NAT.
	Mode() string
}

var _ natTable = (*nat.Manager)(nil)

type nopNotifier struct{}

func (nopNotifier) Notify(string) error { return nil }

// New prepares a node; nothing touches the system until Run.
func New(opts Options) *Node {
	n := &Node{
		log: opts.Logger, version: opts.Version, notify: opts.Notify,
		rand: opts.Rand, now: opts.Now, loadCfg: opts.LoadConfig,
		svc: opts.Service, sampleEvery: opts.SampleInterval,
	}
	n.cfg.Store(opts.Config)
	n.flushCT = func(ps ...netip.Prefix) (int, error) { return nat.FlushConntrack(0, ps...) }
	n.cutCh = make(chan []netip.Prefix, 256)
	n.ctMaxPath = ctMaxPath
	n.linkSpeed = func(ifname string) (uint64, bool) { return linkSpeed(sysClassNet, ifname) }
	n.countCT = func(ps []netip.Prefix) (map[netip.Addr]int, error) { return nat.CountConntrack(0, ps) }
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.notify == nil {
		n.notify = nopNotifier{}
	}
	if n.now == nil {
		n.now = time.Now
	}
	return n
}

// config is the running config.
func (n *Node) config() *config.Config { return n.cfg.Load() }

// Run starts the node, serves until ctx ends, then stops it. Start errors
// are returned after everything already started has been undone.
func (n *Node) Run(ctx context.Context, reload <-chan struct{}) (err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	steps := []struct {
		name string
		fn   func() (func(), error)
	}{
		{"wan", n.checkWAN},
		{"kernel", n.startKernel},
		{"state", n.startState},
		{"nat", n.startNAT},
		{"dataplane", n.startPlane},
		{"dns", n.startDNS}, // on the gateway addresses the data plane configured
		{"socks", n.startSOCKS},
		{"portforward", n.startPortForward},
		{"metrics", n.startMetrics}, // before control: the API serves its figures
		{"control", n.startControl},
		{"cluster", n.startCluster}, // registers this node with its figures
	}
	for _, s := range steps {
		u, err := s.fn()
		if err != nil {
			return err
		}
		if u != nil {
			undo = append(undo, u)
		}
	}
	n.started = n.now()
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	n.startBackground(bg, &wg)
	n.notify.Notify("READY=1\nSTATUS=" + n.statusLine())
	n.log.Info("exitd ready", "tunnel", n.config().Tunnel.Name, "port", n.config().Listen.Port,
		"public_key", n.priv.Public().String(), "members", n.reg.Len())

	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-reload:
			if err := n.Reload(); err != nil {
				n.log.Error("reload failed; keeping the running configuration", "err", err)
			}
		}
	}
	n.notify.Notify("STOPPING=1")
	n.log.Info("exitd stopping")
	stopBG()
	wg.Wait()
	for i := len(undo) - 1; i >= 0; i-- {
		undo[i]()
	}
	return nil
}

func (n *Node) startState() (func(), error) {
	c := n.config()
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", c.StateDir, err)
	}
	priv, created, err := nodeKey(c, func(path string) (keys.Key, bool, error) { return keys.LoadOrCreate(path, n.rand) })
	if err != nil {
		return nil, err
	}
	if created {
		n.log.Info("generated the node's private key", "path", filepath.Join(c.StateDir, "private.key"))
	}
	n.priv = priv
	longest, err := tuning.LongestConntrackTimeout(tuning.Host())
	if err != nil {
		n.log.Warn("cannot read conntrack timeouts; address quarantine as configured", "err", err)
	}
	q := quarantineFor(c.Members.Quarantine.Duration, longest)
	if q != c.Members.Quarantine.Duration {
		n.log.Info("address quarantine raised above the longest conntrack timeout in force",
			"configured", c.Members.Quarantine.Duration, "conntrack", longest, "quarantine", q)
	}
	reg, store, err := openRegistry(c, members.Options{
		Prefix4: c.Tunnel.Prefix4, Prefix6: c.Tunnel.Prefix6,
		Quarantine: q, Now: n.now, Rand: n.rand,
	}, n.log.Info)
	if err != nil {
		return nil, err
	}
	n.reg, n.store = reg, store
	return func() { reg.Close() }, nil
}

// quarantineFor is how long a freed member address stays unused: the
// configured time, but always longer than the longest conntrack timeout in
// force, so a reused address can never be handed the previous owner's
// tracked flows (its entries are flushed on removal and on reuse as well).
func quarantineFor(configured, longestConntrack time.Duration) time.Duration {
	if longestConntrack <= 0 {
		return configured
	}
	return max(configured, longestConntrack+time.Hour)
}

// natConfig maps the daemon config onto the ruleset's input. It reads the
// WAN's connected prefixes (its on-link neighbours, the provider's VPC
// range) from the interface each time it is called, so start and every
// reload deny what the WAN is connected to now. A missing interface has
// none (checkWAN refuses to start without it); any other read error puts
// an invalid prefix in, which Validate rejects: the table is not applied
// with the neighbours open.
func natConfig(c *config.Config) nat.Config {
	nc := nat.Config{
		Tun: c.Tunnel.Name, WAN: c.WAN.Interface,
		Member4: c.Tunnel.Prefix4, Member6: c.Tunnel.Prefix6,
		Gateway4: c.Tunnel.Gateway4(), Gateway6: c.Tunnel.Gateway6(),
		Isolation: c.Filter.Isolation(), Block: c.Filter.Blocked, Allow: c.Filter.Allowed,
		CaptureDNS: c.DNS.Captured(), PortForward: c.PortForward.Enabled,
	}
	if c.SOCKS.On() {
		nc.ServiceTCP = []uint16{socksPort}
		nc.ServiceUDP = [][2]uint16{{socksUDPFirst, socksUDPLast}}
	}
	if c.PortForward.Enabled {
		nc.ServiceUDP = append(nc.ServiceUDP, [2]uint16{portforward.ServerPort, portforward.ServerPort})
	}
	switch ps, err := nat.ConnectedPrefixes(c.WAN.Interface); {
	case err == nil:
		nc.WANPrefixes = ps
	case !errors.Is(err, nat.ErrNoInterface):
		nc.WANPrefixes = []netip.Prefix{{}}
	}
	if c.WAN.NAT == "snat" {
		nc.Mode = nat.SNAT
		if c.WAN.Pool[0].Is4() {
			nc.Pool4 = c.WAN.Pool
		} else {
			nc.Pool6 = c.WAN.Pool
		}
		nc.Ports = c.WAN.Ports
	}
	switch c.WAN.NATTables { // "auto" is the zero value: probe
	case "inet":
		nc.Layout = nat.LayoutInet
	case "split":
		nc.Layout = nat.LayoutSplit
	}
	return nc
}

// setNATApplied records the ruleset in force and publishes its deny set.
func (n *Node) setNATApplied(nc nat.Config) {
	n.natApplied = nc
	n.deny.Store(nc.DenySet())
}

// denied reports whether a is in the deny set in force: forwarded
// traffic, DNS answers and SOCKS destinations are checked against it.
// Before the ruleset is in force everything is denied (fail closed).
func (n *Node) denied(a netip.Addr) bool {
	d := n.deny.Load()
	return d == nil || d.Denied(a)
}

func (n *Node) startNAT() (func(), error) {
	m, err := nat.New(nat.Options{Logger: n.log})
	if err != nil {
		return nil, err
	}
	nc := n.ruleset(n.config())
	if err := m.Apply(nc); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%w (exitd needs CAP_NET_ADMIN to program nftables)", err)
		}
		if errors.Is(err, nat.ErrInetNATUnsupported) {
			return nil, fmt.Errorf("%w; [wan] nat_tables = \"inet\" insists on it: set \"auto\" or \"split\" to NAT in ip and ip6 tables instead", err)
		}
		return nil, err
	}
	n.nat = m
	n.setNATApplied(nc)
	l := nc.Limits
	n.log.Info("connection quotas", "per_member", l.Quota, "members_own", len(l.Overrides),
		"new_conn_rate", l.Rate, "new_conn_burst", l.Burst)
	return func() {
		if n.plane != nil && n.plane.HandingOver() {
			n.log.Info("leaving the nftables table and member conntrack to the next exitd (exitd cleanup removes them if none starts)")
			return
		}
		if err := m.Remove(); err != nil {
			n.log.Error("remove nftables table", "err", err)
		}
		n.flushConntrack()
	}, nil
}

// schedConfig maps the daemon config onto the scheduler's, with the
// download pacing rate resolved (egress.go).
func (n *Node) schedConfig(c *config.Config) dataplane.SchedConfig {
	egress, _ := egressRate(c, n.linkSpeed)
	return dataplane.SchedConfig{
		Discipline: c.Scheduler.Discipline,
		EgressRate: egress, IngressRate: uint64(c.Scheduler.Ingress),
		LimitBytes: c.Scheduler.ByteLimit, LimitPackets: c.Scheduler.PacketLimit,
	}
}

// planeConfig maps the daemon config onto the data plane's.
func (n *Node) planeConfig(c *config.Config, priv keys.Key) dataplane.Config {
	var addrs []netip.Prefix
	if p := c.Tunnel.Prefix4; p.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(c.Tunnel.Gateway4(), p.Bits()))
	}
	if p := c.Tunnel.Prefix6; p.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(c.Tunnel.Gateway6(), p.Bits()))
	}
	return dataplane.Config{
		Name: c.Tunnel.Name, MTU: c.Tunnel.MTU, Port: c.Listen.Port, PrivateKey: priv, Addrs: addrs,
		Sched: n.schedConfig(c), EndpointsPath: filepath.Join(c.StateDir, endpointsFile),
		// In a cluster the public endpoint is an address that moves between
		// nodes: a node that lost it must not pull its members back to its
		// own address (they re-handshake with the node that holds it).
		StrictSource: c.Cluster.On(),
	}
}

// endpointsFile (in state_dir) holds members' last endpoints for rejoin.
const endpointsFile = "endpoints.json"

// startPlane opens the data path, puts the registry's enabled members into
// it (the reconcile at start) and rejoins them at their last endpoints.
func (n *Node) startPlane() (func(), error) {
	n.setupHealth()
	c := n.config()
	switch rate, src := egressRate(c, n.linkSpeed); src {
	case egressUnknown:
		n.log.Warn(egressWarning(src, c.WAN.Interface))
	default:
		n.log.Info("download pacing", "rate", units.FormatBitRate(float64(rate)), "source", src, "wan", c.WAN.Interface)
	}
	var store dataplane.FileStore
	if n.svc != nil {
		store = n.svc
	}
	p, err := dataplane.Open(n.planeConfig(n.config(), n.priv), dataplane.Options{
		Logger: n.log, Now: n.now, Store: store, Health: n.health,
	})
	if err != nil {
		return nil, err
	}
	ms := n.reg.List()
	if err := p.Sync(ms); err != nil {
		p.Close()
		return nil, err
	}
	p.Rejoin(ms)
	n.plane = p
	return func() { p.Close() }, nil
}

func (n *Node) startControl() (func(), error) {
	s, err := control.Listen(control.ServerOptions{
		Path: n.config().Control.Socket, Backend: backend{n}, Logger: n.log,
		Allow: allowPeers(n.config().Control.Group), Group: lookupGroup(n.config().Control.Group),
	})
	if err != nil {
		return nil, err
	}
	n.ctl = s
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	}, nil
}
