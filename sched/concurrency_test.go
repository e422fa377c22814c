package sched

import (
	"errors"
	"net/netip"
	"os"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// Read, Write, the bind, member changes, reconfiguration, stats and Close
// all at once; meant for -race. Real goroutines, no sleeps: every loop is
// bounded or stops on a channel.
func TestDeviceConcurrent(t *testing.T) {
	ch := tuntest.NewChannelTUN()
	d := newTestDevice(t, ch.TUN(), Config{InflightBytes: 32 << 10, LimitPackets: 256}, 16)
	b := d.WrapBind(bindtest.NewChannelBinds()[0])
	stop := make(chan struct{})
	var wg, loops sync.WaitGroup

	wg.Add(1)
	go func() { // wireguard-go's TUN reader + sender
		defer wg.Done()
		bufs, sizes := wgBufs(16)
		msg := make([]byte, 1452)
		msg[0] = 4
		for {
			n, err := d.Read(bufs, sizes, wgOffset)
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if err != nil {
				t.Errorf("Read: %v", err)
				return
			}
			for range n {
				b.Send([][]byte{msg}, bindtest.ChannelEndpoint(1))
			}
		}
	}()
	wg.Add(1)
	go func() { // the kernel side of the TUN: absorb uploads
		defer wg.Done()
		for {
			select {
			case <-ch.Inbound:
			case <-stop:
				return
			}
		}
	}()
	loops.Add(1)
	go func() { // download traffic
		defer loops.Done()
		for i := range 3000 {
			p := ipv4Packet(serverAddr, memberAddr(i%20), protoUDP, uint16(i%7), 1, 100+i%1300, byte(i%4))
			select {
			case ch.Outbound <- p:
			case <-stop:
				return
			}
		}
	}()
	for w := range 3 { // per-peer receivers calling Write
		loops.Add(1)
		go func() {
			defer loops.Done()
			for i := range 1000 {
				p := ipv4Packet(memberAddr((i+w)%20), serverAddr, protoTCP, uint16(i%5), 80, 60+i%1400, 0)
				d.Write([][]byte{append(make([]byte, wgOffset), p...)}, wgOffset)
			}
		}()
	}
	loops.Add(1)
	go func() { // control plane
		defer loops.Done()
		for i := range 300 {
			id := uint32(i % 24)
			if i%3 == 0 {
				d.RemoveMember(id)
			} else {
				d.UpsertMember(id, []netip.Addr{memberAddr(int(id))}, 1+i%4)
			}
			cfg := Config{LimitPackets: 128 + i}
			if i%2 == 0 {
				cfg.Discipline = DisciplineFIFO
			}
			if i%5 == 0 {
				cfg.EgressRate, cfg.IngressRate = 1e9, 5e8
			}
			if err := d.SetConfig(cfg); err != nil {
				t.Error(err)
			}
			d.Stats()
			d.MemberStats(id)
			d.ForEachMember(func(uint32, MemberStats) {})
		}
	}()
	loops.Wait()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	st := d.Stats()
	for _, ds := range []DirStats{st.Down, st.Up} {
		if ds.EnqueuedPackets != ds.SentPackets+ds.OverflowDrops+ds.CoDelDrops+uint64(ds.QueuedPackets) {
			t.Fatalf("accounting broken after concurrent run: %+v", ds)
		}
	}
	// Uploads either went straight to the TUN (nothing queued) or through
	// the queue; none is lost.
	if got := st.Up.EnqueuedPackets + st.UpBypassPackets; got != 3000 {
		t.Fatalf("upload enqueued %d + bypassed %d, want 3000", st.Up.EnqueuedPackets, st.UpBypassPackets)
	}
}
