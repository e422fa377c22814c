package node

import (
	"exitd/tuning"
)

// startKernel makes sure forwarding is on (refusing to start otherwise) and
// takes a first reading of the kernel profile; drift is reported, not fought.
func (n *Node) startKernel() (func(), error) {
	params := tuning.Host()
	if err := tuning.EnsureForwarding(params); err != nil {
		return nil, err
	}
	profile, err := tuning.Bundled()
	if err != nil {
		return nil, err
	}
	if ct, err := tuning.SizeConntrack(params, 0); err == nil {
		profile = profile.WithConntrack(ct)
	}
	n.kernel = tuning.NewMonitor(tuning.MonitorConfig{Params: params, Profile: profile, Logger: n.log, Now: n.now})
	rep := n.kernel.CheckNow()
	for _, f := range rep.CriticalFailures() {
		n.log.Warn("kernel profile: safety-critical key not in force", "key", f.Key, "want", f.Wanted, "have", f.InForce, "status", f.Status)
	}
	if len(rep.Failures()) > 0 {
		n.log.Info("kernel profile drift (run `exitd tune check`)", "keys", len(rep.Failures()))
	}
	return nil, nil
}
