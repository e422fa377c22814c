package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"exitd/internal/netlab"
)

// ExitKind names an exit implementation the benchmarks compare.
type ExitKind string

// The kinds StartExit starts.
const (
	// ExitExitd is exitd with its default configuration.
	ExitExitd ExitKind = "exitd"
	// ExitSRR is exitd with the srr scheduler discipline.
	ExitSRR ExitKind = "srr"
	// ExitFIFO is exitd with the fifo scheduler discipline.
	ExitFIFO ExitKind = "fifo"
	// ExitUpstream is wireguard-go built from the module version go.mod
	// pins, as a plain exit (StartPlainExit).
	ExitUpstream ExitKind = "upstream"
	// ExitDebian is Debian's wireguard-go as a plain exit.
	ExitDebian ExitKind = "debian"
	// ExitBareback is no tunnel: member 1 routed and masqueraded by the
	// exit's kernel (StartBareback).
	ExitBareback ExitKind = "bareback"
)

// ExitKinds returns every kind, in the order the benchmarks report them.
func ExitKinds() []ExitKind {
	return []ExitKind{ExitExitd, ExitSRR, ExitFIFO, ExitUpstream, ExitDebian, ExitBareback}
}

// ErrUnknownExitKind is returned for a kind StartExit does not know.
var ErrUnknownExitKind = errors.New("unknown exit kind")

// ParseExitKind returns the kind named s, as a command-line flag gives it.
func ParseExitKind(s string) (ExitKind, error) {
	for _, k := range ExitKinds() {
		if string(k) == s {
			return k, nil
		}
	}
	names := make([]string, 0, len(ExitKinds()))
	for _, k := range ExitKinds() {
		names = append(names, string(k))
	}
	return "", fmt.Errorf("harness: %w %q (want one of %s)", ErrUnknownExitKind, s, strings.Join(names, ", "))
}

// isExitd reports whether k runs exitd.
func (k ExitKind) isExitd() bool { return k == ExitExitd || k == ExitSRR || k == ExitFIFO }

// ExitOptions configure StartExit.
type ExitOptions struct {
	// Bin names exitd and exitctl (exitd kinds) and the members'
	// wireguard-go (every kind but bareback).
	Bin Binaries
	// Dir holds the exit's config, state and member configs; it must exist.
	Dir string
	// Upstream is the upstream-built wireguard-go (BuildUpstream);
	// ExitUpstream needs it.
	Upstream string
	// Debian is Debian's wireguard-go for ExitDebian; default
	// "wireguard-go" from PATH.
	Debian string
	// EgressRate is exitd's scheduler egress_rate (e.g. "95mbit"). The
	// other kinds have no pacer and ignore it, as a user's would.
	EgressRate string
}

// check validates o for kind without touching the lab.
func (o ExitOptions) check(kind ExitKind) error {
	if _, err := ParseExitKind(string(kind)); err != nil {
		return err
	}
	switch {
	case o.Dir == "" && kind != ExitBareback:
		return fmt.Errorf("harness: %s exit: no Dir", kind)
	case kind == ExitUpstream && o.Upstream == "":
		return fmt.Errorf("harness: %s exit: no Upstream binary (see BuildUpstream)", kind)
	}
	return nil
}

// RunningExit is an exit started by StartExit.
type RunningExit struct {
	Kind ExitKind
	// Exit is what members attach to and whose CPU is measured; nil for
	// ExitBareback, which has neither a tunnel nor a process.
	Exit Exit
	// Node is exitd for the exitd kinds, else nil.
	Node *Node

	close     func() error
	closeOnce sync.Once
	closeErr  error
}

// Close stops the exit and removes what it set up; members added through
// Exit.AddMember are the caller's to Down. It is idempotent.
func (r *RunningExit) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.close() })
	return r.closeErr
}

// StartExit starts an exit of the given kind in the lab's exit namespace:
//
//	exitd, srr, fifo   exitd (StartNode), srr and fifo with that
//	                   [scheduler] discipline
//	upstream, debian   that wireguard-go as a plain exit (StartPlainExit)
//	bareback           member 1 routed without a tunnel (StartBareback)
//
// An unknown kind or missing option is an error before anything starts.
func StartExit(ctx context.Context, lab *netlab.Lab, kind ExitKind, o ExitOptions) (*RunningExit, error) {
	if err := o.check(kind); err != nil {
		return nil, err
	}
	if lab == nil {
		return nil, fmt.Errorf("harness: %s exit: no lab", kind)
	}
	r := &RunningExit{Kind: kind}
	switch {
	case kind.isExitd():
		n, err := StartNode(ctx, lab, NodeOptions{Bin: o.Bin, Dir: o.Dir, Extra: schedulerTable(kind, o.EgressRate)})
		if err != nil {
			return nil, err
		}
		r.Exit, r.Node, r.close = n, n, n.Close
	case kind == ExitUpstream || kind == ExitDebian:
		bin := o.Upstream
		if kind == ExitDebian {
			bin = o.Debian
			if bin == "" {
				bin = "wireguard-go"
			}
		}
		p, err := StartPlainExit(ctx, lab, bin, o.Bin.WireguardGo, o.Dir)
		if err != nil {
			return nil, err
		}
		r.Exit, r.close = p, p.Close
	case kind == ExitBareback:
		if len(lab.Members) == 0 {
			return nil, fmt.Errorf("harness: %s exit: the lab has no member namespace", kind)
		}
		b, err := StartBareback(ctx, lab, lab.Members[0])
		if err != nil {
			return nil, err
		}
		r.close = b.Close
	}
	return r, nil
}

// schedulerTable is the [scheduler] TOML for an exitd kind: empty for
// ExitExitd without a rate, so exitd's defaults apply.
func schedulerTable(kind ExitKind, egressRate string) string {
	var b strings.Builder
	if kind == ExitSRR || kind == ExitFIFO {
		fmt.Fprintf(&b, "discipline = %q\n", kind)
	}
	if egressRate != "" {
		fmt.Fprintf(&b, "egress_rate = %q\n", egressRate)
	}
	if b.Len() == 0 {
		return ""
	}
	return "[scheduler]\n" + b.String()
}
