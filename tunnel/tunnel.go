// Package tunnel owns the WireGuard side of the node: the TUN device, the
// wireguard-go device behind it, the UDP socket members dial, the UAPI socket
// that makes `wg show <tun>` work, the netlink configuration of the TUN
// (addresses, MTU, up) and the peer set synced from the member registry.
//
// Packet path (see ARCHITECTURE.md):
//
//	TUN --(WrapTUN, e.g. the scheduler)--> wireguard-go --(WrapBind)--> UDP
//
// It imports wireguard-go, netlink and exitd/keys; it knows nothing of the
// registry, nat or the scheduler, which the daemon injects through Options.
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

// Options configure Open.
type Options struct {
	Name       string         // TUN name, e.g. "exit0"
	MTU        int            // inner MTU
	Port       int            // UDP listen port
	PrivateKey keys.Key       // the node's identity
	Addrs      []netip.Prefix // gateway addresses with the member prefix length
	Logger     *slog.Logger

	// WrapTUN and WrapBind let the daemon put the scheduler between the
	// real devices and wireguard-go. Nil means no wrapper.
	WrapTUN  func(tun.Device) (tun.Device, error)
	WrapBind func(conn.Bind) conn.Bind
	// NoUAPI skips the /var/run/wireguard socket (unit tests).
	NoUAPI bool

	// TUN and UDP are a previous process's TUN and UDP sockets (systemd's
	// fd store, see adopt.go), adopted instead of created; Open takes
	// ownership. Unusable ones are closed and logged, and fresh ones made.
	TUN *os.File
	UDP []*os.File
}

// Tunnel is a running WireGuard endpoint.
type Tunnel struct {
	log  *slog.Logger
	name string
	dev  *device.Device
	uapi net.Listener
	raw  tun.Device // the TUN itself, under any WrapTUN
	bind *udpBind   // owns the UDP sockets for the Tunnel's life

	closeOnce sync.Once
	closeErr  error
	uapiDone  chan struct{}
}

// Open creates the TUN, configures it, starts the wireguard-go device on the
// UDP port and opens the UAPI socket. On error everything it made is removed.
func Open(opts Options) (t *Tunnel, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
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
	ub := newUDPBind(v4, v6, opts.Port)
	defer func() {
		if err != nil {
			ub.release()
		}
	}()
	var td tun.Device = raw
	defer func() {
		if err != nil && td != nil {
			td.Close()
		}
	}()
	if err := configureLink(opts.Name, opts.MTU, opts.Addrs); err != nil {
		return nil, err
	}
	if opts.WrapTUN != nil {
		w, err := opts.WrapTUN(raw)
		if err != nil {
			return nil, fmt.Errorf("tunnel: wrap TUN: %w", err)
		}
		td = w
	}
	var bind conn.Bind = ub
	if opts.WrapBind != nil {
		bind = opts.WrapBind(bind)
	}
	dev := device.NewDevice(td, bind, wgLogger(log))
	td = nil // owned by dev now
	t = &Tunnel{log: log, name: opts.Name, dev: dev, raw: raw, bind: ub, uapiDone: make(chan struct{})}
	defer func() {
		if err != nil {
			dev.Close()
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
		t.closeErr = t.bind.release()
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
