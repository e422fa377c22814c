package tunnel

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"exitd/keys"
)

// Peer is a member as the device sees it.
type Peer struct {
	PublicKey keys.Key
	Allowed   []netip.Prefix
	// Endpoint, when valid, is set in the same transaction (a restart's
	// last known endpoint): a peer that never exists without one cannot
	// try a handshake to nowhere, which wireguard-go then holds against
	// the next attempt for 5 s.
	Endpoint netip.AddrPort
}

// PeerStats is live session state of one peer.
type PeerStats struct {
	PublicKey     keys.Key
	Endpoint      string
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
}

// AddPeers adds (or updates the allowed IPs of) peers in one UAPI
// transaction; other peers' sessions are untouched.
func (t *Tunnel) AddPeers(peers []Peer) error {
	var b strings.Builder
	for _, p := range peers {
		fmt.Fprintf(&b, "public_key=%s\nreplace_allowed_ips=true\n", p.PublicKey.Hex())
		if p.Endpoint.IsValid() && p.Endpoint.Port() != 0 {
			fmt.Fprintf(&b, "endpoint=%s\n", p.Endpoint)
		}
		for _, a := range p.Allowed {
			fmt.Fprintf(&b, "allowed_ip=%s\n", a)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	if err := t.dev.IpcSet(b.String()); err != nil {
		return fmt.Errorf("tunnel: add peers: %w", err)
	}
	return nil
}

// RemovePeers removes peers; their sessions end at once.
func (t *Tunnel) RemovePeers(pubs ...keys.Key) error {
	var b strings.Builder
	for _, k := range pubs {
		fmt.Fprintf(&b, "public_key=%s\nremove=true\n", k.Hex())
	}
	if b.Len() == 0 {
		return nil
	}
	if err := t.dev.IpcSet(b.String()); err != nil {
		return fmt.Errorf("tunnel: remove peers: %w", err)
	}
	return nil
}

// SyncPeers makes the device's peer set equal to want: it removes peers not
// in want and adds missing ones, leaving existing sessions alone.
func (t *Tunnel) SyncPeers(want []Peer) error {
	have, err := t.Stats()
	if err != nil {
		return err
	}
	wantSet := make(map[keys.Key]bool, len(want))
	for _, p := range want {
		wantSet[p.PublicKey] = true
	}
	var stale []keys.Key
	for _, s := range have {
		if !wantSet[s.PublicKey] {
			stale = append(stale, s.PublicKey)
		}
	}
	if err := t.RemovePeers(stale...); err != nil {
		return err
	}
	return t.AddPeers(want)
}

// Stats reads every peer's session state from the device.
func (t *Tunnel) Stats() ([]PeerStats, error) {
	s, err := t.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("tunnel: read device state: %w", err)
	}
	return parseIpcGet(s)
}

// parseIpcGet parses the UAPI get format (key=value lines; a public_key line
// starts a peer).
func parseIpcGet(s string) ([]PeerStats, error) {
	var out []PeerStats
	var cur *PeerStats
	var sec, nsec int64
	flush := func() {
		if cur != nil {
			if sec != 0 || nsec != 0 {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
			out = append(out, *cur)
		}
		sec, nsec = 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		if k == "public_key" {
			flush()
			var pk keys.Key
			if n, err := hex.Decode(pk[:], []byte(v)); err != nil || n != keys.Len || len(v) != 2*keys.Len {
				return nil, fmt.Errorf("tunnel: bad public_key %q from device", v)
			}
			cur = &PeerStats{PublicKey: pk}
			continue
		}
		if cur == nil {
			continue
		}
		switch k {
		case "endpoint":
			if _, _, err := net.SplitHostPort(v); err == nil {
				cur.Endpoint = v
			}
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			cur.RxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			cur.TxBytes, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	flush()
	return out, sc.Err()
}
