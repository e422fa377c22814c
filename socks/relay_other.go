//go:build !linux

package socks

import "net"

// newSpliceDir: splice is Linux-only; elsewhere the relay copies.
func newSpliceDir(src, dst net.Conn, p *pacer, done <-chan struct{}) direction {
	return nil
}
