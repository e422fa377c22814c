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
	rep := n.kernel.CheckNow() // logs each key that is not as wanted
	if len(rep.Failures()) > 0 {
		n.log.Warn("kernel profile not fully in force; see `exitd tune check`, fix with `exitd tune apply`",
			"failing", len(rep.Failures()), "safety_critical", len(rep.CriticalFailures()))
	}
	return nil, nil
}
