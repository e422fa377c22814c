package tuning

import "strings"

// want is one key to apply or verify.
type want struct {
	Entry
	critical   bool
	safe       func(string) bool
	verifyOnly bool // a critical key the profile does not set
}

// plan turns a profile into the keys to handle, in a safe order, adding
// the safety-critical keys the profile does not set (verified, never
// written: writing a default could lower an operator's larger value).
func plan(p *Profile) []want {
	var ws []want
	have := make(map[string]bool)
	for _, e := range p.Settings() {
		w := want{Entry: e}
		if c, ok := criticalKeys[e.Key]; ok {
			w.critical, w.safe = true, c.safe
		}
		have[e.Key] = true
		ws = append(ws, w)
	}
	for _, k := range CriticalKeys() {
		if !have[k] {
			c := criticalKeys[k]
			ws = append(ws, want{
				Entry:    Entry{Key: k, Value: c.want, Pos: Position{File: "exitd safety-critical set"}},
				critical: true, safe: c.safe, verifyOnly: true,
			})
		}
	}
	return orderForApply(ws)
}

// phase orders keys: forwarding first (turning ip_forward on or off rewrites
// the accept_redirects switches, so those must come after it), conntrack
// last (its keys exist only once nf_conntrack is loaded; buckets before max
// keeps the order WithConntrack gives).
func phase(key string) int {
	switch {
	case key == KeyIPForward || (strings.HasPrefix(key, "net.ipv4.conf.") || strings.HasPrefix(key, "net.ipv6.conf.")) && strings.HasSuffix(key, ".forwarding"):
		return 0
	case isConntrackKey(key):
		return 2
	}
	return 1
}

func isConntrackKey(key string) bool {
	return strings.HasPrefix(key, "net.netfilter.nf_conntrack_") || key == "net.nf_conntrack_max"
}

func orderForApply(ws []want) []want {
	out := make([]want, 0, len(ws))
	for ph := 0; ph <= 2; ph++ {
		for _, w := range ws {
			if phase(w.Key) == ph {
				out = append(out, w)
			}
		}
	}
	return out
}

// Check reads every key of p (and every safety-critical key) and compares
// it with the wanted value. It writes nothing, so the daemon can call it
// under ProtectKernelTunables=yes.
func Check(params Params, p *Profile) Report {
	var r Report
	for _, w := range plan(p) {
		r.Results = append(r.Results, verify(params, w, nil))
	}
	return r
}

// verify reads w back. writeErr is the error of writing it, if any: a key
// that could not be written but already holds the wanted value is ok.
func verify(params Params, w want, writeErr error) Result {
	res := Result{Key: w.Key, Wanted: w.Value, Critical: w.critical, Optional: w.IgnoreErrors, Source: w.Pos}
	if isGlob(w.Key) {
		res.Status, res.Detail = StatusSkipped, "glob patterns are applied by systemd-sysctl only"
		res.Safe = !w.critical
		return res
	}
	v, err := params.Read(w.Key)
	switch {
	case err != nil:
		res.Status, res.Detail = statusOf(err), err.Error()
		if res.Status == StatusReadOnly {
			res.Status = StatusError // unreadable, not unwritable
		}
	case NormalizeValue(v) == NormalizeValue(w.Value), w.verifyOnly && w.safe(v):
		// A key the profile does not set only has to be safe.
		res.InForce, res.Status = v, StatusOK
	case writeErr != nil:
		res.InForce, res.Status, res.Detail = v, statusOf(writeErr), writeErr.Error()
	default:
		res.InForce, res.Status = v, StatusDrift
	}
	if w.critical {
		res.Safe = err == nil && w.safe(v)
	} else {
		res.Safe = true
	}
	return res
}
