package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newBenchCmd(b *binFlags, stdout io.Writer) *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "Throughput and CPU per GB against peers"}
}
