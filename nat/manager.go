package nat

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Options configure a Manager.
type Options struct {
	// NetNS is a file descriptor of the network namespace to manage; 0 means
	// the caller's namespace.
	NetNS int
	// Table is the table Remove, Present and Counters act on before the
	// first Apply (exitd cleanup after a crash); empty means DefaultTable.
	Table string
	// Logger receives one line per apply, removal and re-apply; nil
	// discards.
	Logger *slog.Logger
	// ConnOptions are appended to every nftables connection; tests pass
	// nftables.WithTestDial here. With any set, socket buffers are left
	// alone (the fake connection has none), and Apply neither snapshots
	// the table nor flushes conntrack.
	ConnOptions []nftables.ConnOption
	// CheckInterval is how often Watch compares the whole table with what
	// was applied, besides the checks nftables events trigger; 0 means
	// DefaultCheckInterval, negative turns the periodic check off.
	CheckInterval time.Duration
}

// DefaultCheckInterval is Watch's periodic full check: a safety net for
// events lost to a full socket buffer, cheap (one dump of our table).
const DefaultCheckInterval = time.Minute

// Counter is a named counter's value. Replacing the table resets it.
type Counter struct {
	Packets, Bytes uint64
}

// Manager owns one nftables table. Its methods may be called concurrently.
type Manager struct {
	netns      int
	log        *slog.Logger
	connOpts   []nftables.ConnOption
	fake       bool
	checkEvery time.Duration
	// newTicker makes Watch's periodic check (tests inject their own).
	newTicker func(time.Duration) (<-chan time.Time, func())
	// flushTo is FlushConntrackTo (tests may replace it).
	flushTo func(netnsFd int, sources []netip.Prefix, to func(netip.Addr) bool) (int, error)

	restorations atomic.Uint64 // re-applies done by Watch
	checks       atomic.Uint64 // full checks done by Watch (tests)

	// mu serialises every write to the kernel and guards the fields below.
	mu       sync.Mutex
	table    string     // the table we own (last applied, or Options.Table)
	last     Config     // last successfully applied config
	deny     *DenySet   // last.DenySet()
	expected tableState // the table as dumped right after the last apply; nil if unknown
	applied  bool       // true between a successful Apply and Remove
	layout   Layout     // layout of the last Apply (LayoutInet or LayoutSplit); LayoutAuto before it
	// The probe's answer, once asked: nil when the kernel accepts an inet
	// NAT chain, else its refusal (wrapping ErrInetNATUnsupported).
	probed         bool
	inetNATRefused error
}

// socketBuffer is what Apply asks for on its netlink socket. A batch larger
// than the send buffer fails with EMSGSIZE, and every message's ack (which
// echoes the message) must fit the receive buffer or Flush sees ENOBUFS —
// both bite with thousands of blocked prefixes.
const socketBuffer = 8 << 20

// New returns a Manager. It does not touch the kernel: the first Apply
// with LayoutAuto or LayoutInet probes for inet-family NAT.
func New(opts Options) (*Manager, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	table := opts.Table
	if table == "" {
		table = DefaultTable
	}
	if err := validTableName(table); err != nil {
		return nil, fmt.Errorf("nat: %w: %w", ErrInvalidConfig, err)
	}
	every := opts.CheckInterval
	if every == 0 {
		every = DefaultCheckInterval
	}
	return &Manager{
		netns:      opts.NetNS,
		log:        log,
		connOpts:   opts.ConnOptions,
		fake:       len(opts.ConnOptions) > 0,
		checkEvery: every,
		newTicker: func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		},
		flushTo: FlushConntrackTo,
		table:   table,
	}, nil
}

// Restorations is how many times Watch has re-applied the table because
// someone else deleted or edited it. Each is also logged; a rising count
// means something on the host fights exitd over its table.
func (m *Manager) Restorations() uint64 { return m.restorations.Load() }

// conn returns a fresh nftables connection; each operation dials its own
// socket.
func (m *Manager) conn(extra ...nftables.ConnOption) (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if m.netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(m.netns))
	}
	if !m.fake {
		opts = append(opts, nftables.WithSockOptions(growBuffers))
	}
	opts = append(opts, m.connOpts...)
	return nftables.New(append(opts, extra...)...)
}

// growBuffers raises both socket buffers, past rmem_max/wmem_max when the
// process may (CAP_NET_ADMIN), else as far as the sysctls allow.
func growBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var forced error
	if err := rc.Control(func(fd uintptr) {
		forced = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer))
	}); err != nil {
		return err
	}
	if forced == nil {
		return nil
	}
	if err := c.SetReadBuffer(socketBuffer); err != nil {
		return err
	}
	return c.SetWriteBuffer(socketBuffer)
}

// Apply validates cfg and replaces the table with the ruleset for it in one
// kernel transaction: packets see either the old table or the new one, never
// none. Re-applying resets the counters, so call it on change only.
//
// When the deny set changes (Block, WANPrefixes or Allow), Apply then
// deletes the conntrack entries of member flows to destinations that are
// newly denied: the forward chain accepts established flows before it looks
// at destinations, so without this they would go on. If that flush fails,
// the new ruleset stays applied and the error wraps ErrConntrackFlush.
func (m *Manager) Apply(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("nat: apply ruleset: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, wasApplied := m.deny, m.applied
	if err := m.applyLocked(cfg); err != nil {
		return fmt.Errorf("nat: apply ruleset: %w", err)
	}
	m.log.Info("nat: ruleset applied", "table", cfg.table(), "tables", m.layout.describe(), "mode", cfg.Mode.String(),
		"member4", cfg.Member4.String(), "member6", cfg.Member6.String(), "isolation", cfg.Isolation,
		"extra_blocks", len(cfg.Block), "wan_prefixes", len(cfg.WANPrefixes), "allow", len(cfg.Allow))
	if !wasApplied || old == nil || old.Equal(m.deny) || m.fake {
		return nil
	}
	nd := m.deny
	n, err := m.flushTo(m.netns, []netip.Prefix{cfg.Member4, cfg.Member6}, func(a netip.Addr) bool {
		return nd.Denied(a) && !old.Denied(a)
	})
	if err != nil {
		return fmt.Errorf("nat: apply ruleset: %w: %w", ErrConntrackFlush, err)
	}
	m.log.Info("nat: cut member flows to newly denied destinations", "entries", n)
	return nil
}

// ErrConntrackFlush is wrapped by Apply's error when the new ruleset is in
// place but member flows to newly denied destinations could not be cut.
var ErrConntrackFlush = errors.New("flush conntrack of newly denied destinations")

func (m *Manager) applyLocked(cfg Config) error {
	layout, err := m.layoutLocked(cfg.Layout)
	if err != nil {
		return err
	}
	c, err := m.conn()
	if err != nil {
		return err
	}
	if old := m.table; m.applied && old != cfg.table() {
		// Renamed: drop the old tables in the same transaction.
		for _, ref := range allTables(old) {
			c.AddTable(ref.table())
			c.DelTable(ref.table())
		}
	}
	if err := queueRuleset(c, cfg, layout); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return err
	}
	m.table, m.last, m.deny, m.applied, m.layout = cfg.table(), cfg, cfg.DenySet(), true, layout
	m.expected = nil
	if !m.fake {
		// What Watch compares with. Taken right after the commit; an edit
		// in between would be taken for ours (a window of microseconds).
		st, err := m.snapshot(layoutTables(m.table, m.layout))
		if err != nil {
			m.log.Warn("nat: cannot dump the applied table; Watch checks only that it exists", "table", m.table, "err", err)
		} else {
			m.expected = st
		}
	}
	return nil
}

// Remove deletes our tables and nothing else (never the whole ruleset):
// the inet table and the split layout's ip and ip6 tables, whichever
// layout was applied (a fresh Manager in `exitd cleanup` does not know).
// It is idempotent: removing missing tables succeeds, in one transaction.
// Watch stops re-applying.
func (m *Manager) Remove() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return fmt.Errorf("nat: remove ruleset: %w", err)
	}
	// Adding first makes the delete succeed when the table is absent.
	for _, ref := range allTables(m.table) {
		c.AddTable(ref.table())
		c.DelTable(ref.table())
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nat: remove ruleset: %w", err)
	}
	m.applied = false
	m.log.Info("nat: ruleset removed", "table", m.table, "nat_tables", natTable(m.table))
	return nil
}

// Mode describes the table layout of the last Apply: "inet" (one inet
// table) or "split (ip + ip6 nat tables)" (the NAT chains in ip and ip6
// tables, for kernels without inet-family NAT); "" before the first Apply.
func (m *Manager) Mode() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.layout.describe()
}

// Present reports whether all our tables exist: the inet table, and with
// the split layout the ip and ip6 NAT tables too.
func (m *Manager) Present() (bool, error) {
	m.mu.Lock()
	tables := layoutTables(m.table, m.layout)
	m.mu.Unlock()
	ok, err := m.present(tables)
	if err != nil {
		return false, fmt.Errorf("nat: list table: %w", err)
	}
	return ok, nil
}

// present reports whether every one of tables exists.
func (m *Manager) present(tables []tableRef) (bool, error) {
	c, err := m.conn()
	if err != nil {
		return false, err
	}
	for _, ref := range tables {
		if _, err := c.ListTableOfFamily(ref.name, ref.family); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return false, nil
			}
			return false, err
		}
	}
	return true, nil
}

// Counters returns the named counters of our table by name (see the
// Counter* constants).
func (m *Manager) Counters() (map[string]Counter, error) {
	m.mu.Lock()
	table := m.table
	m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return nil, fmt.Errorf("nat: read counters: %w", err)
	}
	objs, err := c.GetObjects(&nftables.Table{Family: nftables.TableFamilyINet, Name: table})
	if err != nil {
		return nil, fmt.Errorf("nat: read counters: %w", err)
	}
	out := make(map[string]Counter, len(objs))
	for _, o := range objs {
		switch o := o.(type) {
		case *nftables.CounterObj:
			out[o.Name] = Counter{Packets: o.Packets, Bytes: o.Bytes}
		case *nftables.NamedObj:
			if ctr, ok := o.Obj.(*expr.Counter); ok {
				out[o.Name] = Counter{Packets: ctr.Packets, Bytes: ctr.Bytes}
			}
		}
	}
	return out, nil
}
