// Command exitlab runs exitd in a throwaway network-namespace lab: the demo
// behind `make demo` and the benchmarks behind `make bench`. It needs root
// (namespaces, TUN, nftables) and never touches the host's own network
// namespace; everything it builds is removed when it ends, also on Ctrl-C.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"exitd/internal/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd(os.Stdout).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "exitlab:", err)
		os.Exit(1)
	}
}

type binFlags struct{ exitd, exitctl, wg string }

func (b *binFlags) register(cmd *cobra.Command) {
	self, _ := os.Executable()
	dir := filepath.Dir(self)
	cmd.PersistentFlags().StringVar(&b.exitd, "exitd", filepath.Join(dir, "exitd"), "exitd binary under test")
	cmd.PersistentFlags().StringVar(&b.exitctl, "exitctl", filepath.Join(dir, "exitctl"), "exitctl binary")
	cmd.PersistentFlags().StringVar(&b.wg, "wireguard-go", "wireguard-go", "member WireGuard implementation (Debian's by default)")
}

func (b *binFlags) binaries() harness.Binaries {
	return harness.Binaries{Exitd: b.exitd, Exitctl: b.exitctl, WireguardGo: b.wg}
}

// subcommands is exitlab's dispatch table. Adding a command
// is one line here: each constructor's cobra.Command has the name as Use and
// the one-line help as Short, which `exitlab --help` lists.
var subcommands = []func(*binFlags, io.Writer) *cobra.Command{
	newDemoCmd,
	newBenchCmd,
	newFairnessCmd,
	newMembersBenchCmd,
	newDNSBenchCmd,
	newSocksBenchCmd,
	newFloodBenchCmd,
	newConnBenchCmd,
	newClusterBenchCmd,
}

func newRootCmd(stdout io.Writer) *cobra.Command {
	b := &binFlags{}
	root := &cobra.Command{
		Use:   "exitlab",
		Short: "Run exitd in a network-namespace lab: demo and benchmarks (root)",
		Long: `exitlab builds a lab of network namespaces — members, the exit running
exitd, an internet host and a private management host — runs exitd in it
with real WireGuard members, and removes everything when done.
"exitlab COMMAND --help" says what each command measures and writes.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("needs root: it creates network namespaces, a TUN and nftables tables (try: sudo make demo)")
			}
			return nil
		},
	}
	root.SetOut(stdout)
	b.register(root)
	for _, newCmd := range subcommands {
		root.AddCommand(newCmd(b, stdout))
	}
	return root
}
