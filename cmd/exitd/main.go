// Command exitd is the exit-node daemon. main stays thin: it builds the
// command tree and maps errors to exit codes; the work is in run.go
// (daemon), cleanup.go and tune.go.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := newRootCmd(os.Stdout, os.Stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "exitd:", err)
		os.Exit(exitCode(err))
	}
}

// exitCoder lets a subcommand choose its exit status (e.g. `tune check`).
type exitCoder interface{ ExitCode() int }

func exitCode(err error) int {
	if ec, ok := err.(exitCoder); ok {
		return ec.ExitCode()
	}
	return 1
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "exitd",
		Short: "exitd — a WireGuard VPN exit node with fair scheduling and NAT",
		Long: `exitd terminates WireGuard sessions of members on UDP/443, forwards their
traffic through a TUN device, schedules it fairly across members
(stochastic round-robin, not FIFO) and source-NATs it out of the WAN
interface with an nftables table it owns.

Operate a running node with exitctl.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCmd(stderr), newCleanupCmd(stdout, stderr), newTuneCmd(stdout, stderr), newVersionCmd(stdout))
	return root
}
