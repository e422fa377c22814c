package tuning

import (
	"context"
	"errors"
	"log/slog"
)

// ApplyOptions tunes Apply.
type ApplyOptions struct {
	// Logger receives one line per failed write; nil discards.
	Logger *slog.Logger
	// LoadConntrack, if set, is called once before the conntrack keys when
	// nf_conntrack_max is absent (module not loaded yet — on RHEL
	// systemd-sysctl can run before it autoloads). It typically runs
	// `modprobe nf_conntrack`. Its error is logged; the conntrack keys are
	// then reported absent.
	LoadConntrack func(ctx context.Context) error
}

// Apply writes p through params in a safe order (see phase), then reads
// every key back and classifies each failure. It never stops at a failed
// key. If ctx is cancelled, the remaining keys are not written but are
// still read back, so the report says what is in force.
func Apply(ctx context.Context, params Params, p *Profile, opts ApplyOptions) Report {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ws := plan(p)
	writeErrs := make(map[string]error)
	triedLoad := false
	for _, w := range ws {
		if w.verifyOnly || isGlob(w.Key) {
			continue // verified only
		}
		if ctx.Err() != nil {
			break
		}
		if isConntrackKey(w.Key) && !triedLoad {
			triedLoad = true
			loadConntrack(ctx, params, opts.LoadConntrack, log)
		}
		if err := params.Write(w.Key, w.Value); err != nil {
			writeErrs[w.Key] = err
			level := slog.LevelWarn
			if w.IgnoreErrors {
				level = slog.LevelDebug
			}
			log.Log(ctx, level, "tuning: write failed", "key", w.Key, "value", w.Value, "status", statusOf(err), "err", err)
		}
	}
	var r Report
	for _, w := range ws {
		r.Results = append(r.Results, verify(params, w, writeErrs[w.Key]))
	}
	return r
}

func loadConntrack(ctx context.Context, params Params, load func(context.Context) error, log *slog.Logger) {
	if load == nil {
		return
	}
	if _, err := params.Read(KeyConntrackMax); !errors.Is(err, ErrAbsent) {
		return
	}
	if err := load(ctx); err != nil {
		log.Warn("tuning: load nf_conntrack", "err", err)
	}
}
