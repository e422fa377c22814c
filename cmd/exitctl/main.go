// Command exitctl operates a running exitd through its control socket.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"exitd/control"
)

// defaultSocket matches exitd's [control] socket default.
const defaultSocket = "/run/exitd/control.sock"

func main() {
	if err := newRootCmd(os.Stdout, os.Stderr, os.Getenv).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "exitctl:", err)
		os.Exit(1)
	}
}

// flags holds the global flags.
type flags struct {
	socket string
	json   bool
}

func (f *flags) client() *control.Client { return control.NewClient(f.socket) }

func newRootCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	f := &flags{}
	root := &cobra.Command{
		Use:   "exitctl",
		Short: "Operate an exitd exit node",
		Long: `exitctl talks to a running exitd over its control socket
(root or the exitd group only).

  exitctl member add --label alice > alice.conf   add a member, print its wg-quick config
  exitctl member add --label bob --qr             ... as a QR code for the mobile apps
  exitctl member list --sort -rate --limit 20     members, state, handshake, traffic, rate
  exitctl member show alice                       one member in detail
  exitctl member set alice --weight 4             change weight or rate cap live
  exitctl member disable alice                    end its session, keep its address
  exitctl member import /etc/wireguard/wg0.conf   migrate peers from wg-quick
  exitctl member remove alice                     remove by label or public key
  exitctl status                                  the node at a glance

Add --json to any command for output scripts can read.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	sock := getenv("EXITCTL_SOCKET")
	if sock == "" {
		sock = defaultSocket
	}
	root.PersistentFlags().StringVar(&f.socket, "socket", sock, "control socket of exitd (env EXITCTL_SOCKET)")
	root.PersistentFlags().BoolVar(&f.json, "json", false, "print JSON for scripts instead of tables")
	root.AddCommand(newMemberCmd(f, stdout), newStatusCmd(f, stdout), newTopCmd(f, stdout), newReportCmd(f, stdout), newClusterCmd(f, stdout))
	return root
}
