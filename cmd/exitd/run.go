package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"exitd/config"
	"exitd/node"
	"exitd/service"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// DefaultConfig is where packages install the config.
const DefaultConfig = "/etc/exitd/exitd.toml"

func newRunCmd(stderr io.Writer) *cobra.Command {
	var path string
	var sampleEvery time.Duration
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the exit node in the foreground (what the systemd unit starts)",
		Long: `Run the exit node in the foreground, logging to stderr.

Start order: check the WAN interface and kernel forwarding, load the node key
and member registry from state_dir, install the nftables table, create the
TUN and listen on UDP [listen] port, add every member as a WireGuard peer,
open the control socket for exitctl, then tell systemd READY=1.

SIGTERM/SIGINT stop the node (only exitd's own table and TUN are removed);
SIGHUP reloads the config and the member list without dropping sessions.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			log := newLogger(stderr, cfg.Log.Level)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			reload := make(chan struct{}, 1)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					select {
					case reload <- struct{}{}:
					default:
					}
				}
			}()
			svc, err := service.New()
			if err != nil {
				return err
			}
			n := node.New(node.Options{
				Config: cfg, Logger: log, Version: version, Notify: svc, Service: svc, SampleInterval: sampleEvery,
				LoadConfig: func() (*config.Config, error) { return config.Load(path) },
			})
			return n.Run(ctx, reload)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", DefaultConfig, "config file (TOML)")
	// Lab tests sample the load report every second instead of 15 s.
	cmd.Flags().DurationVar(&sampleEvery, "sample-interval", 0, "load report sampling period (default 15s)")
	cmd.Flags().MarkHidden("sample-interval")
	return cmd
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})
	if os.Getenv("JOURNAL_STREAM") != "" {
		return slog.New(journalHandler{Handler: slog.NewTextHandler(w, &slog.HandlerOptions{
			Level: l,
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if len(groups) == 0 && a.Key == slog.TimeKey {
					return slog.Attr{} // journald stamps lines itself
				}
				return a
			},
		}), w: w})
	}
	return slog.New(h)
}

// journalHandler prefixes each line with the syslog priority "<N>" so
// journald records the right PRIORITY without a journald dependency.
type journalHandler struct {
	slog.Handler
	w io.Writer
}

func (h journalHandler) Handle(ctx context.Context, r slog.Record) error {
	p := 6
	switch {
	case r.Level >= slog.LevelError:
		p = 3
	case r.Level >= slog.LevelWarn:
		p = 4
	case r.Level < slog.LevelInfo:
		p = 7
	}
	fmt.Fprintf(h.w, "<%d>", p)
	return h.Handler.Handle(ctx, r)
}

func (h journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return journalHandler{Handler: h.Handler.WithAttrs(as), w: h.w}
}

func (h journalHandler) WithGroup(g string) slog.Handler {
	return journalHandler{Handler: h.Handler.WithGroup(g), w: h.w}
}
