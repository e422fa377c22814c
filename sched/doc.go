// Package sched is exitd's fair scheduler and the tun.Device wrapper that
// applies it between the kernel TUN and wireguard-go.
//
// It owns: per-member, per-flow queues (two-level DRR++ with CoDel and ECN
// marking, or a FIFO with the same limits for A/B measurement), the download
// pacer and in-flight bound that make the queue form here rather than inside
// wireguard-go or the kernel, the upload drain, and the scheduler statistics.
//
// It must import only the standard library, wireguard-go's tun and conn
// packages (tun/tuntest and conn/bindtest in tests) and exitd/bounds (the
// weight and rate limits it shares with the registry and the config); never
// nat, tuning, members, node or any other exitd package. The composition root maps member
// identities and TOML config onto UpsertMember and Config.
//
// Typical wiring:
//
//	sd := sched.NewDevice(realTUN, cfg, sched.Options{Logger: log})
//	wg := device.NewDevice(sd, sd.WrapBind(conn.NewDefaultBind()), wglog)
//	sd.UpsertMember(id, []netip.Addr{v4, v6}, 1)
package sched
