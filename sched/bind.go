package sched

import "golang.zx2c4.com/wireguard/conn"

// messageTransportType is WireGuard's data message type (little-endian
// uint32 at offset 0); a bare header plus tag (32 bytes) is a keepalive.
const (
	messageTransportType = 4
	messageKeepaliveSize = 32
)

// bindWrapper passes everything to the real bind and, after each Send,
// credits the in-flight bound with the data messages it carried (and
// notes the extra outer-header bytes of IPv6 endpoints for the pacer).
// Handshake, cookie and keepalive messages are neither delayed nor counted.
type bindWrapper struct {
	conn.Bind
	d *Device
}

var _ conn.Bind = (*bindWrapper)(nil)

// WrapBind returns b wrapped so that sends of download data messages
// release the in-flight bound. Pass the result to device.NewDevice. Sends
// are never delayed; a failed Send still releases its bytes (they are no
// longer in flight).
func (d *Device) WrapBind(b conn.Bind) conn.Bind {
	return &bindWrapper{Bind: b, d: d}
}

// Send sends bufs through the real bind, then credits data messages.
func (b *bindWrapper) Send(bufs [][]byte, ep conn.Endpoint) error {
	err := b.Bind.Send(bufs, ep)
	var sent, msgs int64
	for _, m := range bufs {
		if len(m) > messageKeepaliveSize && m[0] == messageTransportType && m[1]|m[2]|m[3] == 0 {
			sent += int64(len(m))
			msgs++
		}
	}
	if sent > 0 {
		if a := ep.DstIP(); a.Is6() && !a.Is4In6() {
			b.d.outer6.Add(msgs * TunnelOverhead6Extra)
		}
		b.d.infl.credit(sent)
		nudge(b.d.wakeRead)
	}
	return err
}
