package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"exitd/config"
	"exitd/control"
	"exitd/dns"
	"exitd/metrics"
	"exitd/socks"
)

// SOCKS5 inside the tunnel (docs/socks.md): a proxy on the gateway
// addresses, port 1080, for per-application routing. A member is its tunnel
// source address (WireGuard authenticated it), so no password inside the
// tunnel; destinations are checked against the one deny set after name
// resolution; the member's session limit, connect rate and upload cap
// apply. Replies reach the member through the TUN and the scheduler like
// any download.

// socksPort is where members find the proxy.
const socksPort = config.DefaultSOCKSPort

// socksUDPPorts is where UDP ASSOCIATE relay sockets bind: the one UDP
// range the input chain opens to members on the gateway addresses.
const socksUDPFirst, socksUDPLast = 40000, 40999

// socksListeners are the tunnel listeners on the gateway addresses plus
// the operator's extra ones with their client rules.
func socksListeners(c *config.Config) []socks.ListenerConfig {
	var ls []socks.ListenerConfig
	for _, a := range gateways(c) {
		ls = append(ls, socks.ListenerConfig{Addr: netip.AddrPortFrom(a, socksPort), Tunnel: true})
	}
	for _, l := range c.SOCKS.Listen {
		rule := socks.Rule{Allow: l.Allow}
		if len(l.Users) > 0 {
			rule.Users = map[string]string{}
			for _, u := range l.Users {
				user, pass, _ := strings.Cut(u, ":")
				rule.Users[user] = pass
			}
		}
		ls = append(ls, socks.ListenerConfig{Addr: l.Addr, Rules: []socks.Rule{rule}})
	}
	return ls
}

// startSOCKS serves SOCKS5 on the gateway addresses (and extra listeners).
func (n *Node) startSOCKS() (func(), error) {
	c := n.config()
	if !c.SOCKS.On() {
		return nil, nil
	}
	if soft, hard, err := socks.RaiseNoFileLimit(); err != nil {
		n.log.Warn("socks: cannot raise the open-file limit; sessions beyond it are refused and counted", "soft", soft, "hard", hard, "err", err)
	}
	var resolver socks.Resolver // the system's, when the resolver is off
	if n.dns != nil {
		resolver = socksResolver{n.dns}
	}
	s, err := socks.New(socks.Options{
		Logger: n.log, Now: n.now, Deny: n.denied, Resolver: resolver,
		Identify: func(src netip.Addr) (string, bool) {
			m, ok := n.reg.ByAddr(src)
			if !ok || m.Disabled {
				return "", false
			}
			return m.PublicKey.String(), true
		},
		UploadLimit: func(member string) uint64 {
			m, err := n.reg.Get(member)
			if err != nil {
				return 0
			}
			return m.IngressLimit // the member's upload cap holds for proxied traffic too
		},
		MaxSessions: c.SOCKS.MaxSessions, ConnectRate: float64(c.SOCKS.ConnectRate), ConnectBurst: c.SOCKS.ConnectBurst,
		IdleTimeout: c.SOCKS.IdleTimeout.Duration, UDPPorts: [2]uint16{socksUDPFirst, socksUDPLast},
	})
	if err != nil {
		return nil, err
	}
	ls := socksListeners(c)
	if err := s.Start(ls); err != nil {
		s.Close()
		return nil, fmt.Errorf("socks: %w (set [socks] enabled = false to run without the proxy)", err)
	}
	n.socks = s
	n.log.Info("serving SOCKS5 to members", "listeners", len(ls))
	return func() { s.Close() }, nil
}

// socksStatus is the proxy's line in `exitctl status`; nil when off.
func (n *Node) socksStatus() *control.ServiceStatus {
	if n.socks == nil {
		return nil
	}
	st := n.socks.Stats()
	ss := &control.ServiceStatus{}
	for _, l := range socksListeners(n.config()) {
		ss.Listen = append(ss.Listen, l.Addr.String())
	}
	ss.Summary = fmt.Sprintf("%d sessions now, %d total; refused: ruleset %d, limit %d, rate %d, auth %d, no fd %d",
		st.SessionsActive, st.SessionsTotal, st.RefusedRuleset, st.RefusedLimit, st.RefusedRate, st.RefusedAuth, st.RefusedNoFD)
	return ss
}

// socksSource adapts the proxy to its collector.
type socksSource struct{ n *Node }

var _ metrics.SOCKSSource = socksSource{}

func (s socksSource) SOCKSStats() (metrics.SOCKSStats, bool) {
	if s.n.socks == nil {
		return metrics.SOCKSStats{}, false
	}
	st := s.n.socks.Stats()
	return metrics.SOCKSStats{
		SessionsActive: st.SessionsActive, SessionsTotal: st.SessionsTotal,
		ConnectsOK: st.ConnectsOK, ConnectsFailed: st.ConnectsFailed, UDPAssociations: st.UDPAssociations,
		HandshakeErrors: st.HandshakeErrors, BytesUp: st.BytesUp, BytesDown: st.BytesDown,
		Refused: map[string]uint64{"ruleset": st.RefusedRuleset, "limit": st.RefusedLimit, "rate": st.RefusedRate,
			"auth": st.RefusedAuth, "nofd": st.RefusedNoFD},
		UDPDatagramsUp: st.UDPDatagramsUp, UDPDatagramsDown: st.UDPDatagramsDown, UDPDropped: st.UDPDropped,
	}, true
}

// socksResolver resolves SOCKS destinations through exitd's own resolver:
// the same upstreams, cache and blocklist as members' queries, and a name
// its rebinding protection emptied is refused as denied (0x02).
type socksResolver struct{ r *dns.Resolver }

func (s socksResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	as, err := s.r.LookupNetIP(ctx, network, host)
	if errors.Is(err, dns.ErrRebind) {
		return nil, fmt.Errorf("%w: %w", socks.ErrDenied, err)
	}
	return as, err
}
