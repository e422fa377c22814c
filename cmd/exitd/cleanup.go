package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"exitd/config"
	"exitd/nat"
	"exitd/service"
	"exitd/tunnel"
)

// uapiDir is where wireguard-go puts its UAPI sockets.
const uapiDir = "/var/run/wireguard"

func newCleanupCmd(stdout, stderr io.Writer) *cobra.Command {
	var path, unit string
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what a crashed exitd left behind (systemd ExecStopPost)",
		Long: `Remove exitd's nftables tables (inet exitd, and ip/ip6 exitd_nat of the
split NAT layout), its TUN, its UAPI and control sockets and the conntrack
entries of member flows. Nothing else is touched. Safe to run when nothing
is left (it then does nothing) and while no exitd runs.

If the config cannot be read, the defaults (TUN exit0, table exitd) are used.

With --unit (the unit's ExecStopPost), nothing is removed when systemd is
about to start the unit again (a restart, a package upgrade, Restart= after
a crash): the next exitd adopts the TUN and UDP socket from the fd store and
keeps the table and conntrack, so members stay connected.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if unit != "" {
				pending, why, err := service.RestartPending(unit, os.Getenv, systemctl)
				if err != nil {
					fmt.Fprintf(stderr, "exitd cleanup: %v; cleaning up\n", err)
				} else if pending {
					fmt.Fprintf(stdout, "exitd cleanup: %s; leaving the data path to the next exitd\n", why)
					return nil
				}
			}
			cfg, err := config.Load(path)
			if err != nil {
				fmt.Fprintf(stderr, "exitd cleanup: %v; using defaults\n", err)
				cfg = &config.Config{
					Tunnel:  config.Tunnel{Name: config.DefaultTunName},
					Control: config.Control{Socket: config.DefaultSocket},
				}
			}
			return cleanup(cfg, stdout)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", DefaultConfig, "config file (TOML)")
	cmd.Flags().StringVar(&unit, "unit", "", "systemd unit this runs for (ExecStopPost); keep everything when it restarts")
	return cmd
}

func systemctl(args ...string) (string, error) {
	out, err := exec.Command("systemctl", args...).Output()
	return string(out), err
}

func cleanup(cfg *config.Config, out io.Writer) error {
	var errs []error
	if sock := cfg.Control.Socket; sock != "" {
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("cleanup: an exitd is still answering on %s; stop it first", sock)
		}
	}
	m, err := nat.New(nat.Options{})
	if err == nil {
		err = m.Remove()
	}
	if err == nil {
		err = m.RemoveForwards()
	}
	if err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintln(out, "nftables tables inet exitd, ip exitd_nat, ip6 exitd_nat, ip exitd_pf: removed (or absent)")
	}
	if err := tunnel.DeleteLink(cfg.Tunnel.Name); err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintf(out, "TUN %s: removed (or absent)\n", cfg.Tunnel.Name)
	}
	for _, f := range []string{filepath.Join(uapiDir, cfg.Tunnel.Name+".sock"), cfg.Control.Socket} {
		if f == "" {
			continue
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if ps := cfg.Tunnel.Prefixes(); len(ps) > 0 {
		if n, err := nat.FlushConntrack(0, ps...); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(out, "conntrack: %d member entries flushed\n", n)
		}
	}
	return errors.Join(errs...)
}
