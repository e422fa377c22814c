package dataplane

/* The fd hand-over and the rejoin (the unit is packaging/exitd.service):

   Open:    take the TUN and UDP sockets the previous process left in the
            fd store (they stay stored: a crash now loses nothing) →
            tunnel adopts them → store the current ones, replacing only
            files that were not adopted
   Rejoin:  point peers at their persisted endpoints and start handshakes,
            paced (routineRejoin) so 20,000 members are not one burst
   running: PersistEndpoints when members' endpoints changed
   Close:   with the files stored, the TUN survives in the store for the
            successor; `exitd cleanup` removes it when none follows.
*/

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"exitd/keys"
	"exitd/members"
	"exitd/service"
	"exitd/tunnel"
)

var _ FileStore = (*service.Manager)(nil)

// takeFiles puts the previous process's TUN and UDP sockets into o.
func (p *Plane) takeFiles(o *tunnel.Options) {
	if p.store == nil || o.Device != nil {
		return
	}
	if fs := p.store.TakeFiles(tunnel.HandoverTUN); len(fs) > 0 {
		o.TUN = fs[0]
		for _, f := range fs[1:] {
			f.Close()
		}
	}
	o.UDP = append(p.store.TakeFiles(tunnel.HandoverUDP4), p.store.TakeFiles(tunnel.HandoverUDP6)...)
}

// storeFiles puts the TUN and UDP sockets into the fd store. Only when all
// of them are stored does the plane hand over at stop.
func (p *Plane) storeFiles() {
	if p.store == nil {
		return
	}
	files := p.tun.Handover()
	if len(files) == 0 {
		return
	}
	var errs []error
	for name, c := range files {
		if !p.tun.Adopted(name) {
			// A new file replaces whatever a predecessor stored under name;
			// an adopted one is already in the store and stays there.
			if err := p.store.RemoveFiles(name); err != nil {
				errs = append(errs, err)
			}
		}
		if err := p.store.StoreFile(name, c); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	switch {
	case err == nil:
		p.handover.Store(true)
		p.log.Info("TUN and UDP sockets are in systemd's fd store; a restart keeps members connected")
	case errors.Is(err, service.ErrNoManager):
	default:
		p.log.Warn("fd store refused the TUN or UDP socket; a restart will drop sessions (FileDescriptorStoreMax?)", "err", err)
	}
}

// endpointState is the endpoints file.
type endpointState struct {
	Endpoints map[string]string `json:"endpoints"` // public key (base64) → ip:port
}

// loadEndpoints reads the persisted endpoints; a missing file is empty.
func loadEndpoints(path string) (map[keys.Key]netip.AddrPort, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dataplane: endpoints: %w", err)
	}
	var st endpointState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("dataplane: endpoints %s: %w", path, err)
	}
	out := make(map[keys.Key]netip.AddrPort, len(st.Endpoints))
	for k, v := range st.Endpoints {
		key, kerr := keys.Parse(k)
		ap, aerr := netip.ParseAddrPort(v)
		if kerr != nil || aerr != nil {
			continue // one bad entry must not cost the others
		}
		out[key] = ap
	}
	return out, nil
}

// saveEndpoints writes eps atomically (temp file, fsync, rename, fsync of
// the directory), mode 0600.
func saveEndpoints(path string, eps map[keys.Key]netip.AddrPort) error {
	st := endpointState{Endpoints: make(map[string]string, len(eps))}
	for k, v := range eps {
		st.Endpoints[k.String()] = v.String()
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(path, data, 0o600); err != nil {
		return fmt.Errorf("dataplane: endpoints: %w", err)
	}
	return nil
}

// writeFileSync replaces path with data durably: a crash leaves the old
// file or the new one, never a torn or missing one.
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// endpointsOf are the endpoints in a sample of the device.
func endpointsOf(s Sample) map[keys.Key]netip.AddrPort {
	out := make(map[keys.Key]netip.AddrPort, len(s.Cur))
	for k, ps := range s.Cur {
		if ap, err := netip.ParseAddrPort(ps.Endpoint); err == nil {
			out[k] = ap
		}
	}
	return out
}

// Rejoin starts handshakes to the last known endpoints of the enabled
// members in ms, paced by routineRejoin in the background. Problems are
// logged: members then reconnect on their own timers.
func (p *Plane) Rejoin(ms []members.Member) {
	if p.cfg.EndpointsPath == "" {
		return
	}
	eps, err := loadEndpoints(p.cfg.EndpointsPath)
	if err != nil {
		p.log.Warn("cannot read members' last endpoints; they reconnect on their own timers", "err", err)
		return
	}
	want := map[keys.Key]netip.AddrPort{}
	for _, m := range ms {
		if ep, ok := eps[m.PublicKey]; ok && !m.Disabled {
			want[m.PublicKey] = ep
		}
	}
	if len(want) == 0 {
		return
	}
	set, err := p.tun.SetEndpoints(want)
	if err != nil {
		p.log.Warn("rejoin: some members skipped", "err", err)
	}
	p.epMu.Lock()
	p.lastEndpoints = want
	p.epMu.Unlock()
	p.bg.Add(1)
	go p.routineRejoin(set)
}

// Rejoin pacing: initiations go out rejoinChunk at a time, each chunk
// followed by a pause of rejoinSpacing times what sending it took (at
// least rejoinMinPause). Creating an initiation and consuming its answer
// cost the node about as much each, so the rejoin takes roughly a third of
// a CPU and slows down by itself on a busy one. Sent at once, 20,000
// initiations came back as 20,000 answers in a burst: wireguard-go's
// handshake queue overflowed (answers dropped, or met with cookie replies
// under load), and each lost answer cost a retransmission 5 s later.
const (
	rejoinChunk    = 128
	rejoinSpacing  = 2
	rejoinMinPause = 5 * time.Millisecond
)

// routineRejoin (started by Rejoin) initiates handshakes with ks, paced,
// until done or the plane closes.
func (p *Plane) routineRejoin(ks []keys.Key) {
	defer p.bg.Done()
	start := p.now()
	for lo := 0; lo < len(ks); lo += rejoinChunk {
		hi := min(lo+rejoinChunk, len(ks))
		t0 := p.now()
		p.tun.Initiate(ks[lo:hi])
		if hi == len(ks) {
			break
		}
		pause := max(rejoinSpacing*p.now().Sub(t0), rejoinMinPause)
		select {
		case <-p.closing:
			p.log.Info("rejoin stopped: closing", "members", hi, "of", len(ks))
			return
		case <-p.after(pause):
		}
	}
	p.log.Info("started handshakes to members' last endpoints", "members", len(ks), "took", p.now().Sub(start).Round(time.Millisecond))
}

// PersistEndpoints saves members' endpoints when they changed since the
// last save; known reports whether a key is still a member (removed
// members are forgotten). Called periodically it reads the background
// sample and does nothing until that is renewed (with 20,000 members,
// parsing and merging every endpoint each time cost more than the dump);
// final (at stop) reads a request-fresh sample and always merges.
func (p *Plane) PersistEndpoints(known func(keys.Key) bool, final bool) {
	if p.cfg.EndpointsPath == "" {
		return
	}
	sample := p.BackgroundSample()
	if final {
		sample = p.Sample()
	}
	p.epMu.Lock()
	defer p.epMu.Unlock()
	if !final && !sample.At.IsZero() && sample.At.Equal(p.epSampleAt) {
		return
	}
	p.epSampleAt = sample.At
	merged := maps.Clone(p.lastEndpoints)
	if merged == nil {
		merged = map[keys.Key]netip.AddrPort{}
	}
	maps.Copy(merged, endpointsOf(sample)) // members not seen since start keep their old endpoint
	for k := range merged {
		if !known(k) {
			delete(merged, k)
		}
	}
	if maps.Equal(merged, p.lastEndpoints) {
		return
	}
	if err := saveEndpoints(p.cfg.EndpointsPath, merged); err != nil {
		p.log.Warn("cannot persist members' endpoints", "err", err)
		return
	}
	p.lastEndpoints = merged
}
