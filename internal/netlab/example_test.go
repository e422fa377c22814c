package netlab_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"exitd/internal/netlab"
)

// A benchmark's shape: a shaped lab, an iperf3 server on the internet host,
// a member measuring (here over the underlay; a real run goes through a
// tunnel the member set up).
func Example() {
	ctx := context.Background()
	lab, err := netlab.New(ctx, netlab.Options{Members: 2, DownRate: 50_000_000})
	if err != nil {
		log.Fatal(err)
	}
	defer lab.Close()

	if _, err := lab.Members[0].StartIperfServer(ctx, 0); err != nil {
		log.Fatal(err)
	}
	res, err := lab.Exit.Iperf(ctx, netlab.IperfOptions{Server: lab.Members[0].Addr4, Duration: 2 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	rtt, err := netlab.Ping(ctx, lab.Members[1], netip.MustParseAddr(netlab.ExitUnderlay4), 10, 10*time.Millisecond)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%.0f Mbit/s, p99 %v\n", res.ReceivedBps/1e6, rtt.P99)
}
