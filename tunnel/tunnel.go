// Package tunnel owns the WireGuard side of the node: the TUN device, the
// wireguard-go device behind it, the UDP socket members dial, the UAPI socket
// that makes `wg show <tun>` work, the netlink configuration of the TUN
// (addresses, MTU, up) and the peer set synced from the member registry.
//
// Two phases, so the caller can wrap the devices without callbacks:
//
//	OpenLink: TUN (created or adopted) + UDP sockets, link configured
//	Start:    wireguard-go on the (wrapped) TUN and bind, key, port, up, UAPI
//
// It imports wireguard-go, netlink and exitd/keys; it knows nothing of the
// registry, nat or the scheduler (dataplane puts those together).
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"

	"exitd/keys"
)

// Options configure OpenLink.
type Options struct {
	Name       string         // TUN name, e.g. "exit0"
	MTU        int            // inner MTU
	Port       int            // UDP listen port
	PrivateKey keys.Key       // the node's identity
	Addrs      []netip.Prefix // gateway addresses with the member prefix length
	Logger     *slog.Logger

	// NoUAPI skips the /var/run/wireguard socket (unit tests).
	NoUAPI bool

	// StrictSource never answers a member from another address than the
	// one it dialled: when that address has gone from the node (a cluster
	// address moved to another node) sends to the member fail instead of
	// leaving from the node's own address — which would pull the member
	// back to this node and away from the one now holding the address.
	StrictSource bool

	// TUN and UDP are a previous process's TUN and UDP sockets (systemd's
	// fd store, see adopt.go), adopted instead of created; OpenLink takes
	// ownership. Unusable ones are closed and logged, and fresh ones made.
	TUN *os.File
	UDP []*os.File

	// Device and Bind, when both set, replace the TUN and the UDP socket
	// (test doubles such as tuntest.ChannelTUN and bindtest.ChannelBind):
	// no link is created or configured and nothing can be handed over.
	Device tun.Device
	Bind   conn.Bind
}

// Link is the TUN and the UDP sockets, opened or adopted and configured,
// before wireguard-go runs on them. The caller wraps TUN() and Bind() as
// it likes (the scheduler, health stages) and passes the wrapped pair to
// Start; Start takes ownership.
type Link struct {
	log     *slog.Logger
	opts    Options
	raw     tun.Device // the TUN itself
	bind    conn.Bind  // ub, or the injected Bind
	ub      *udpBind   // nil with an injected Bind
	adopted map[string]bool
}

// OpenLink creates (or adopts) the TUN, configures its addresses and MTU
// and brings it up, and adopts (or prepares) the UDP sockets. On error
// everything it made is removed.
func OpenLink(opts Options) (l *Link, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Device != nil && opts.Bind != nil {
		return &Link{log: log, opts: opts, raw: opts.Device, bind: opts.Bind}, nil
	}
	raw, adopted, adoptErr, err := openTUN(opts)
	if adoptErr != nil {
		log.Warn("tunnel: inherited TUN not adopted", "err", adoptErr)
	}
	if err != nil {
		for _, f := range opts.UDP {
			f.Close()
		}
		return nil, err
	}
	v4, v6, problems := adoptUDP(opts.UDP, opts.Port)
	for _, p := range problems {
		log.Warn("tunnel: inherited UDP socket not adopted", "err", p)
	}
	if adopted || v4 != nil || v6 != nil {
		log.Info("tunnel: adopted the previous process's devices", "tun", adopted, "udp4", v4 != nil, "udp6", v6 != nil)
	}
	if v4 == nil && v6 == nil {
		// Made here, on the caller's thread, so they live in the caller's
		// network namespace: wireguard-go opens the bind later from
		// goroutines on other threads, which may be in another one.
		if v4, v6, err = ListenUDP(opts.Port); err != nil {
			raw.Close()
			return nil, portError(opts.Port, err)
		}
	}
	ub := newUDPBind(v4, v6, localPort(v4, v6))
	ub.strict = opts.StrictSource
	if err := configureLink(opts.Name, opts.MTU, opts.Addrs); err != nil {
		ub.release()
		raw.Close()
		return nil, err
	}
	adoptedSet := map[string]bool{HandoverTUN: adopted, HandoverUDP4: v4 != nil, HandoverUDP6: v6 != nil}
	return &Link{log: log, opts: opts, raw: raw, bind: ub, ub: ub, adopted: adoptedSet}, nil
}

// TUN is the TUN device itself.
func (l *Link) TUN() tun.Device { return l.raw }

// Bind is the members' UDP side.
func (l *Link) Bind() conn.Bind { return l.bind }

// Close removes what OpenLink made; only for a Link that was never started.
func (l *Link) Close() {
	if l.ub != nil {
		l.ub.release()
	}
	l.raw.Close()
}

// Tunnel is a running WireGuard endpoint.
type Tunnel struct {
	log  *slog.Logger
	name string
	dev  *device.Device
	uapi net.Listener
	raw  tun.Device // the TUN itself, under any wrapper
	ub   *udpBind   // owns the UDP sockets for the Tunnel's life; nil with an injected Bind

	adopted map[string]bool // Handover names whose file came from a predecessor

	closeOnce sync.Once
	closeErr  error
	uapiDone  chan struct{}
}

// Start runs wireguard-go on td (the Link's TUN, possibly wrapped) and
// bind (the Link's Bind, possibly wrapped), sets the node's key and port,
// brings the device up and opens the UAPI socket. It takes ownership of
// td, bind and the Link: on error all of them are closed.
func (l *Link) Start(td tun.Device, bind conn.Bind) (t *Tunnel, err error) {
	opts := l.opts
	dev := device.NewDevice(td, bind, wgLogger(l.log))
	t = &Tunnel{log: l.log, name: opts.Name, dev: dev, raw: l.raw, ub: l.ub, adopted: l.adopted, uapiDone: make(chan struct{})}
	defer func() {
		if err != nil {
			dev.Close()
			if l.ub != nil {
				l.ub.release()
			}
		}
	}()
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=%d\n", opts.PrivateKey.Hex(), opts.Port)
	if err := dev.IpcSet(cfg); err != nil {
		// Setting listen_port binds at once when the TUN already reported up.
		return nil, portError(opts.Port, err)
	}
	if err := dev.Up(); err != nil {
		return nil, portError(opts.Port, err)
	}
	if opts.NoUAPI {
		close(t.uapiDone)
		return t, nil
	}
	if err := t.openUAPI(); err != nil {
		return nil, err
	}
	return t, nil
}

func createError(name string, err error) error {
	switch {
	case errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES):
		return fmt.Errorf("tunnel: create TUN %s: permission denied (exitd needs CAP_NET_ADMIN and access to /dev/net/tun)", name)
	case strings.Contains(err.Error(), "does not exist") || errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("tunnel: create TUN %s: /dev/net/tun does not exist (load the tun module: modprobe tun)", name)
	case errors.Is(err, syscall.EBUSY):
		return fmt.Errorf("tunnel: create TUN %s: device busy (another process owns an interface of that name)", name)
	}
	return fmt.Errorf("tunnel: create TUN %s: %w", name, err)
}

func portError(port int, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("tunnel: UDP port %d is already in use (another WireGuard or exitd?); set [listen] port", port)
	}
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("tunnel: UDP port %d: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)", port)
	}
	return fmt.Errorf("tunnel: bring device up on UDP port %d: %w", port, err)
}

func (t *Tunnel) openUAPI() error {
	f, err := ipc.UAPIOpen(t.name)
	if err != nil {
		return fmt.Errorf("tunnel: open UAPI socket for %s: %w", t.name, err)
	}
	l, err := ipc.UAPIListen(t.name, f)
	if err != nil {
		f.Close()
		return fmt.Errorf("tunnel: listen on UAPI socket for %s: %w", t.name, err)
	}
	t.uapi = l
	go t.routineUAPI()
	return nil
}

// routineUAPI serves `wg` on /var/run/wireguard/<name>.sock.
func (t *Tunnel) routineUAPI() {
	defer close(t.uapiDone)
	for {
		c, err := t.uapi.Accept()
		if err != nil {
			return
		}
		go t.dev.IpcHandle(c)
	}
}

// Name is the TUN's interface name.
func (t *Tunnel) Name() string { return t.name }

// Device exposes the wireguard-go device (for health checks).
func (t *Tunnel) Device() *device.Device { return t.dev }

// Close stops the device, removes the TUN and the UAPI socket. Idempotent.
func (t *Tunnel) Close() error {
	t.closeOnce.Do(func() {
		if t.uapi != nil {
			t.uapi.Close()
		}
		t.dev.Close()
		<-t.uapiDone
		if t.ub != nil {
			t.closeErr = t.ub.release()
		}
	})
	return t.closeErr
}

// wgLogger adapts wireguard-go's printf logger to slog: its errors at Warn
// (they are mostly per-peer noise such as failed handshakes), verbose at Debug.
func wgLogger(log *slog.Logger) *device.Logger {
	return &device.Logger{
		// wireguard-go logs every peer added and every handshake verbosely:
		// format only when debug is on (20,000 adds, handshake storms).
		Verbosef: func(format string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("wireguard: " + fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) { log.Warn("wireguard: " + fmt.Sprintf(format, args...)) },
	}
}
