package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"exitd/internal/harness"
	"exitd/internal/netlab"
)

// demoCluster is the demo's last part: three exit nodes share one member
// database on a three-member etcd cluster and one WireGuard key; a member
// added on A is served by B and C with the same config (the member's
// Endpoint pointed at each node in turn), and exitctl cluster status
// shows the fleet. Skipped, with a note, where etcd is not installed.
func demoCluster(ctx context.Context, bins harness.Binaries, w io.Writer, s *stepper) error {
	if _, err := harness.EtcdBinary(""); err != nil {
		s.step("A small cluster: skipped (%v; apt-get install etcd-server)", err)
		return nil
	}
	s.step("A small cluster: three exit nodes, one member database on a three-member etcd, one WireGuard key")
	lab, err := netlab.New(ctx, netlab.Options{Exits: 3, Members: 1})
	if err != nil {
		return err
	}
	defer lab.Close()
	web, err := lab.Internet.ServeHTTP(ctx, netip.MustParseAddrPort(netlab.Internet4+":80"))
	if err != nil {
		return err
	}
	defer web.Close()
	dir, err := os.MkdirTemp("", "exd")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	etcd, err := harness.StartEtcd(ctx, lab, harness.EtcdOptions{Dir: filepath.Join(dir, "etcd")})
	if err != nil {
		return err
	}
	defer etcd.Close()
	cl, err := harness.StartCluster(ctx, lab, harness.ClusterOptions{Bin: bins, Dir: dir, Etcd: etcd})
	if err != nil {
		return err
	}
	defer cl.Close()
	a := cl.Nodes[0]
	plans := make([]netlab.ExitPlan, 3)
	for i := range plans {
		if plans[i], err = netlab.ExitAddrs(i); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "    nodes A, B, C on exits %s, %s, %s; the cluster address %s is on A\n",
		plans[0].Underlay4, plans[1].Underlay4, plans[2].Underlay4, netlab.FloatingUnderlay4)
	fmt.Fprintf(w, "    every node: [cluster] endpoints = the etcd members, wireguard_key = one shared key file\n")

	s.step("exitctl member add --label carol   on node A")
	out, err := a.Exitctl(ctx, "member", "add", "--label", "carol")
	if err != nil {
		return err
	}
	m := &harness.Member{NS: lab.Members[0], Label: "carol", Dev: harness.DeviceName(), Config: string(out)}
	if err := m.Up(ctx, bins.WireguardGo, filepath.Join(dir, "carol.conf")); err != nil {
		return err
	}
	defer m.Down()
	for i, name := range []string{"A (cluster address)", "B", "C"} {
		if i > 0 {
			if err := m.SetEndpoint(ctx, plans[i].Underlay4.String()+":443"); err != nil {
				return err
			}
		}
		var got string
		err := netlab.WaitFor(ctx, 15*time.Second, func() bool {
			body, err := harness.Get(ctx, m.NS, "http://"+netlab.Internet4+"/ip", 2*time.Second)
			got = strings.TrimSpace(body)
			return err == nil && got == plans[i].WAN4.String()
		})
		if err != nil {
			return fmt.Errorf("carol through %s: the internet host saw %q", name, got)
		}
		fmt.Fprintf(w, "    through node %-20s the internet host sees %s\n", name+":", got)
	}
	s.step("exitctl cluster status   (on node C)")
	out, err = cl.Nodes[2].Exitctl(ctx, "cluster", "status")
	if err != nil {
		return err
	}
	fmt.Fprint(w, indent(string(out)))
	return nil
}
