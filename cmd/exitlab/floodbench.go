package main

// flood-bench: a WireGuard handshake flood against exitd while a real
// member downloads (docs/reliability.md, "Handshake flood").
//
//	member1 (flooder) ── 148-byte initiations from --sources addresses ──▶ exit UDP/443
//	  sources: netlab's extra addresses (198.18.128.0/17), routed by the
//	  exit through member 1 (one neighbour entry, not thousands)
//	  routineFlood × --senders: token bucket, sendmmsg batches (WriteBatch),
//	  IP_PKTINFO picks each packet's source; stops at its deadline
//	  nft in member 1 counts and drops what the exit sends back
//	  (type 3 cookie replies, type 2 responses, anything else)
//	member2 (Debian wireguard-go) ◀── iperf3 -R from the internet host,
//	  through a 100 Mbit/s TBF on the hub port towards member 2 only
//
// Runs, each --seconds long: no flood, then every kind at every rate, per
// rep; a last no-flood run at the end. Per run: member goodput and its ratio
// to the median no-flood run, exitd CPU (/proc/PID/stat) and peak sampled
// RSS (VmRSS), this process's CPU (the flooder's), replies counted, and
// whether exitd is still running and answers `exitctl status`.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/blake2s"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"exitd/control"
	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/keys"
)

// WireGuard message layout (the whitepaper, §5.4; wireguard-go
// device/noise-protocol.go).
const (
	wgTypeInitiation = 1
	wgTypeResponse   = 2
	wgTypeCookie     = 3
	wgInitiationSize = 148
	wgMAC1Offset     = 116 // mac1 covers msg[:116]
	wgMAC2Offset     = 132
	wgLabelMAC1      = "mac1----"
)

const (
	floodPort      = 443
	floodRate      = 100_000_000 // the member's TBF, bits/s
	floodMaxRate   = 200_000     // pkt/s: a bound on what the flag accepts
	floodMaxSecs   = 60
	floodNftTable  = "exitlab_flood"
	floodLead      = time.Second     // flood runs this long before iperf3 starts
	floodGap       = 2 * time.Second // between runs: wireguard-go stays "under load" 1 s
	floodRSSPeriod = 100 * time.Millisecond
	// "RSS bounded": the flood peak stays under MEASURING.md's RSS target
	// for 20,000 members, and the last rep's peak is within 10 % + 8 MiB
	// of the first rep's (it levels off instead of growing run by run).
	floodRSSCeiling = 1024 // MiB
)

// The flood kinds.
const (
	floodNone   = "none"   // baseline: no flood
	floodInit   = "init"   // random initiations with a valid MAC1 for the exit's key
	floodReplay = "replay" // one captured initiation of the real member, replayed
	floodBadMAC = "badmac" // random initiations, MAC1 wrong (dropped cheaply)
)

type floodOpts struct {
	rates   []int
	kinds   []string
	secs    int
	omit    int
	reps    int
	sources int
	senders int
	batch   int
	shape   string // "member": TBF on member 2's hub port; "exit": netlab's DownRate
	out     string
}

func newFloodBenchCmd(b *binFlags, stdout io.Writer) *cobra.Command {
	o := floodOpts{}
	cmd := &cobra.Command{
		Use:   "flood-bench",
		Short: "Handshake flood at 20k/50k/100k pkt/s: member goodput vs no flood, exitd CPU, RSS, cookie replies",
		Long: `A flooder namespace sends WireGuard handshake initiations to exitd's UDP/443
from --sources addresses while a real member (Debian wireguard-go) downloads
with iperf3 through a 100 Mbit/s TBF on its own path:

  init    148-byte initiations, random sender index, ephemeral, static and
          timestamp (unknown keys) with a valid MAC1 for the exit's key, so
          exitd does real work (a DH, or a cookie reply under load)
  replay  the member's own first initiation, captured on its link, replayed
  badmac  as init with a wrong MAC1 (only with --kinds; dropped cheaply)

Per rep: a no-flood run, then each kind at each --rates; one more no-flood
run at the end. Reports per run the achieved flood rate, the member's
goodput and its ratio to the median no-flood run, exitd's CPU and peak RSS,
the flooder's CPU, the cookie replies that came back, and whether exitd
still answers exitctl status. Target: >= 0.90 of goodput at 50,000/s, no
crash, RSS bounded. Writes flood.json to --out and prints a table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			r, err := floodBench(cmd.Context(), b.binaries(), o, stdout)
			if r != nil {
				printFloodReport(stdout, r)
				err = saveReport(stdout, o.out, "flood.json", r, err)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&o.rates, "rates", []int{20_000, 50_000, 100_000}, "flood rates, packets/s")
	f.StringSliceVar(&o.kinds, "kinds", []string{floodInit, floodReplay}, "flood kinds: init, replay, badmac")
	f.IntVar(&o.secs, "seconds", 10, "seconds per run (iperf3 -t)")
	f.IntVar(&o.omit, "omit", 1, "leading seconds of each run not counted (iperf3 -O)")
	f.IntVar(&o.reps, "reps", 3, "repetitions of the sweep (medians reported)")
	f.IntVar(&o.sources, "sources", 4096, "flood source addresses")
	f.IntVar(&o.senders, "senders", 1, "sending goroutines (sockets), 1 or 2")
	f.IntVar(&o.batch, "batch", 64, "packets per sendmmsg")
	f.StringVar(&o.shape, "shape", "member", "where the 100 Mbit/s TBF sits: member (member 2's path only) or exit (the exit's underlay, shared with the cookie replies)")
	f.StringVar(&o.out, "out", "bench-results", "directory for flood.json (empty: none)")
	return cmd
}

// check bounds the flood before anything is built.
func (o floodOpts) check() error {
	for _, r := range o.rates {
		if r <= 0 || r > floodMaxRate {
			return fmt.Errorf("--rates: %d out of range [1, %d]", r, floodMaxRate)
		}
	}
	for _, k := range o.kinds {
		if k != floodInit && k != floodReplay && k != floodBadMAC {
			return fmt.Errorf("--kinds: unknown kind %q (want init, replay or badmac)", k)
		}
	}
	switch {
	case o.secs < 2 || o.secs > floodMaxSecs:
		return fmt.Errorf("--seconds: %d out of range [2, %d]", o.secs, floodMaxSecs)
	case o.omit < 0 || o.omit >= o.secs:
		return fmt.Errorf("--omit: %d must be below --seconds", o.omit)
	case o.reps < 1:
		return fmt.Errorf("--reps: %d, want at least 1", o.reps)
	case o.sources < 1 || o.sources > netlab.MaxExtraAddrs:
		return fmt.Errorf("--sources: %d out of range [1, %d]", o.sources, netlab.MaxExtraAddrs)
	case o.senders < 1 || o.senders > 2:
		return fmt.Errorf("--senders: %d, want 1 or 2", o.senders)
	case o.batch < 1 || o.batch > 1024:
		return fmt.Errorf("--batch: %d out of range [1, 1024]", o.batch)
	case o.shape != "member" && o.shape != "exit":
		return fmt.Errorf("--shape: %q, want member or exit", o.shape)
	}
	return nil
}

// floodRun is one run of flood.json.
type floodRun struct {
	Rep         int     `json:"rep"`
	Kind        string  `json:"kind"`
	Rate        int     `json:"target_pps"`
	AchievedPPS float64 `json:"achieved_pps"`
	Sent        uint64  `json:"sent"`
	SendErrors  uint64  `json:"send_errors"`
	GoodputMbps float64 `json:"goodput_mbps"`
	Ratio       float64 `json:"ratio_to_no_flood"`
	Retransmits int     `json:"retransmits"`
	ExitdCPU    float64 `json:"exitd_cpu_cores"`   // CPU-seconds per second while iperf3 ran
	FlooderCPU  float64 `json:"flooder_cpu_cores"` // this process, same window
	RSSPeakMiB  float64 `json:"exitd_rss_peak_mib"`
	HeapInuse   float64 `json:"exitd_heap_inuse_mib,omitempty"` // Go runtime, after the run
	Goroutines  float64 `json:"exitd_goroutines,omitempty"`
	Cookies     uint64  `json:"cookie_replies"`
	CookiePPS   float64 `json:"cookie_replies_per_s"`
	Responses   uint64  `json:"handshake_responses"`
	OtherReply  uint64  `json:"other_replies"`
	Alive       bool    `json:"exitd_running"`
	StatusOK    bool    `json:"exitctl_status_ok"`
	StatusErr   string  `json:"exitctl_status_error,omitempty"`
	LoadAvg     string  `json:"loadavg_before"`
}

// floodRow is the median of one kind × rate over the reps.
type floodRow struct {
	Kind        string  `json:"kind"`
	Rate        int     `json:"target_pps"`
	Runs        int     `json:"runs"`
	AchievedPPS float64 `json:"achieved_pps"`
	GoodputMbps float64 `json:"goodput_mbps"`
	Ratio       float64 `json:"ratio_to_no_flood"`
	ExitdCPU    float64 `json:"exitd_cpu_cores"`
	FlooderCPU  float64 `json:"flooder_cpu_cores"`
	RSSPeakMiB  float64 `json:"exitd_rss_peak_mib"` // highest of the runs
	CookiePPS   float64 `json:"cookie_replies_per_s"`
	Responses   uint64  `json:"handshake_responses"` // sum
	AllAlive    bool    `json:"exitd_alive_all_runs"`
}

// floodVerdict judges the target.
type floodVerdict struct {
	GoodputAt50k map[string]float64 `json:"ratio_at_50k_by_kind"`
	GoodputOK    bool               `json:"goodput_ok"`
	NoCrash      bool               `json:"no_crash"`
	RSSBaseMiB   float64            `json:"rss_before_flood_mib"` // the first no-flood run's peak
	RSSFloodMiB  float64            `json:"rss_flood_peak_mib"`
	RSSFirstRep  float64            `json:"rss_flood_peak_first_rep_mib"`
	RSSLastRep   float64            `json:"rss_flood_peak_last_rep_mib"`
	RSSBounded   bool               `json:"rss_bounded"`
	Pass         bool               `json:"pass"`
	Notes        []string           `json:"notes,omitempty"`
}

// floodReport is flood.json.
type floodReport struct {
	When        time.Time     `json:"when"`
	Machine     string        `json:"machine"`
	LoadStart   string        `json:"loadavg_start"`
	LoadEnd     string        `json:"loadavg_end"`
	Seconds     int           `json:"seconds"`
	Omit        int           `json:"omit_seconds"`
	Reps        int           `json:"reps"`
	Sources     int           `json:"sources"`
	Senders     int           `json:"senders"`
	Batch       int           `json:"batch"`
	Shape       string        `json:"tbf_at"`
	TBFMbps     float64       `json:"tbf_mbps"`
	NoFloodMbps float64       `json:"no_flood_median_mbps"`
	Runs        []floodRun    `json:"runs"`
	Rows        []floodRow    `json:"rows"`
	Verdict     *floodVerdict `json:"verdict,omitempty"`
}

// floodLab is what the runs need from the built lab.
type floodLab struct {
	lab     *netlab.Lab
	node    *harness.Node
	flooder *netlab.NS
	member  *netlab.NS
	senders []*floodSender
	dst     *net.UDPAddr
	pools   map[string][][]byte // kind → payloads
}

func floodBench(ctx context.Context, bins harness.Binaries, o floodOpts, w io.Writer) (*floodReport, error) {
	r := &floodReport{When: time.Now().UTC(), Machine: dnsbMachine(), LoadStart: dnsbLoadAvg(),
		Seconds: o.secs, Omit: o.omit, Reps: o.reps, Sources: o.sources, Senders: o.senders, Batch: o.batch,
		Shape: o.shape, TBFMbps: floodRate / 1e6}
	step := func(format string, args ...any) { fmt.Fprintf(w, "flood-bench: "+format+"\n", args...) }
	fl, cleanup, err := floodSetup(ctx, bins, o, step)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	plan := floodPlan(o)
	step("%d runs of %d s", len(plan), o.secs)
	for i, p := range plan {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if i > 0 {
			sleepCtx(ctx, floodGap)
		}
		run, err := fl.run(ctx, p, o)
		if err == nil {
			err = ctx.Err() // an interrupted run measured nothing
		}
		if err != nil {
			return r, fmt.Errorf("run %d (%s at %d/s): %w", i+1, p.Kind, p.Rate, err)
		}
		r.Runs = append(r.Runs, run)
		fmt.Fprintf(w, "rep %d  %-6s %6d/s  sent %7.0f/s  goodput %6.2f Mbit/s  exitd %4.0f%% CPU  %5.0f MiB  cookies %7.0f/s  flooder %4.0f%% CPU  alive %v\n",
			run.Rep, run.Kind, run.Rate, run.AchievedPPS, run.GoodputMbps, run.ExitdCPU*100, run.RSSPeakMiB,
			run.CookiePPS, run.FlooderCPU*100, run.Alive && run.StatusOK)
		if !run.Alive {
			r.LoadEnd = dnsbLoadAvg()
			r.summarise()
			return r, fmt.Errorf("exitd exited during %s at %d/s: %s", p.Kind, p.Rate, fl.node.Proc.Output())
		}
	}
	r.LoadEnd = dnsbLoadAvg()
	r.summarise()
	return r, nil
}

// floodPlan lists the runs: per rep a no-flood run, then each kind at each
// rate; a final no-flood run.
func floodPlan(o floodOpts) []floodRun {
	var plan []floodRun
	for rep := 1; rep <= o.reps; rep++ {
		plan = append(plan, floodRun{Rep: rep, Kind: floodNone})
		for _, rate := range o.rates {
			for _, k := range o.kinds {
				plan = append(plan, floodRun{Rep: rep, Kind: k, Rate: rate})
			}
		}
	}
	return append(plan, floodRun{Rep: o.reps, Kind: floodNone})
}

// floodSetup builds the lab, starts exitd and the member, captures the
// member's initiation and opens the flood sockets. cleanup is always
// non-nil and undoes everything, also after an error.
func floodSetup(ctx context.Context, bins harness.Binaries, o floodOpts, step func(string, ...any)) (*floodLab, func(), error) {
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	opts := netlab.Options{Members: 2, ExtraMemberAddrs: o.sources, OffloadsOff: true}
	if o.shape == "exit" {
		opts.DownRate = floodRate
	}
	step("lab: flooder with %d source addresses, one member, 100 Mbit/s TBF at the %s", o.sources, o.shape)
	lab, err := netlab.New(ctx, opts)
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { lab.Close() })
	fl := &floodLab{lab: lab, flooder: lab.Members[0], member: lab.Members[1],
		dst: &net.UDPAddr{IP: net.ParseIP(netlab.ExitUnderlay4), Port: floodPort}}
	if o.shape == "member" {
		if err := shapeMemberPort(ctx, lab); err != nil {
			return nil, cleanup, err
		}
	}
	// The exit answers the flood sources through member 1: one neighbour
	// entry instead of one per source (the kernel's table holds 1,024).
	if err := lab.Exit.AddRoute(netip.MustParsePrefix(netlab.ExtraPrefix4), fl.flooder.Addr4); err != nil {
		return nil, cleanup, err
	}
	if err := nftCounters(ctx, fl.flooder); err != nil {
		return nil, cleanup, err
	}
	if _, err := lab.Internet.StartIperfServer(ctx, 0); err != nil {
		return nil, cleanup, err
	}
	dir, err := os.MkdirTemp("", "exitd-flood")
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { os.RemoveAll(dir) })
	step("starting exitd and the member")
	fl.node, err = harness.StartNode(ctx, lab, harness.NodeOptions{Bin: bins, Dir: dir, Port: floodPort})
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { fl.node.Proc.Stop() })
	st, err := control.NewClient(fl.node.Socket).Status(ctx)
	if err != nil {
		return nil, cleanup, err
	}
	exitKey, err := keys.Parse(st.PublicKey)
	if err != nil {
		return nil, cleanup, err
	}
	captured, m, err := captureMemberInitiation(ctx, fl)
	if m != nil {
		undo = append(undo, func() { m.Down() })
	}
	if err != nil {
		return nil, cleanup, err
	}
	key := mac1Key(exitKey)
	if !validMAC1(captured, &key) {
		return nil, cleanup, errors.New("the member's initiation fails our MAC1 check for the exit's key")
	}
	step("captured the member's initiation (MAC1 checks out against the exit's key)")
	rnd := rand.New(rand.NewChaCha8([32]byte{'f', 'l', 'o', 'o', 'd'}))
	fl.pools = map[string][][]byte{}
	for _, k := range o.kinds {
		fl.pools[k] = floodPayloads(k, 4096, rnd, &key, captured)
	}
	for i := range o.senders {
		part := partition(fl.flooder.ExtraAddrs, i, o.senders)
		s, err := openFloodSender(fl.flooder, part)
		if err != nil {
			return nil, cleanup, err
		}
		undo = append(undo, func() { s.conn.Close() })
		fl.senders = append(fl.senders, s)
	}
	return fl, cleanup, nil
}

// shapeMemberPort puts the TBF on the hub's port towards member 2 (netlab
// names it "m2"), so only the member's download is shaped, not the
// replies to the flooder: ~85 Mbit/s of cookie replies at 100,000/s would
// otherwise share it and measure the link, not exitd. Same bucket and
// queue bound as netlab's own TBF (4 ms at the rate, 50 ms).
func shapeMemberPort(ctx context.Context, lab *netlab.Lab) error {
	const port = "m2"
	burst := max(netlab.MinBurst, floodRate/8*4/1000)
	_, err := lab.Hub.Exec(ctx, "tc", "qdisc", "replace", "dev", port, "root", "tbf",
		"rate", fmt.Sprint(floodRate)+"bit", "burst", fmt.Sprint(burst), "latency", "50ms")
	return err
}

// nftCounters installs counters in the flooder namespace for what the exit
// sends back, by WireGuard message type, and drops it there: nothing
// reads it and the counters see every packet (a socket would drop some).
func nftCounters(ctx context.Context, ns *netlab.NS) error {
	match := fmt.Sprintf("ip saddr %s ip daddr %s udp sport %d", netlab.ExitUnderlay4, netlab.ExtraPrefix4, floodPort)
	rules := fmt.Sprintf(`table inet %[1]s {
	counter cookie { }
	counter response { }
	counter other { }
	chain input {
		type filter hook input priority filter; policy accept;
		%[2]s @th,64,8 %[3]d counter name "cookie" drop
		%[2]s @th,64,8 %[4]d counter name "response" drop
		%[2]s counter name "other" drop
	}
}
`, floodNftTable, match, wgTypeCookie, wgTypeResponse)
	cmd := ns.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("flood: nft counters in %s: %v: %s", ns.Name, err, out)
	}
	return nil
}

// readCounters returns the flooder's reply counters by name.
func readCounters(ctx context.Context, ns *netlab.NS) (map[string]uint64, error) {
	out, err := ns.Exec(ctx, "nft", "-j", "list", "table", "inet", floodNftTable)
	if err != nil {
		return nil, err
	}
	return harness.ParseNftCounters(out)
}

// captureMemberInitiation brings the member up with a packet socket open
// on its link and returns the first handshake initiation it sends to the
// exit (the config has a persistent keepalive, so it handshakes at once;
// a ping makes sure).
func captureMemberInitiation(ctx context.Context, fl *floodLab) ([]byte, *harness.Member, error) {
	fd, err := openCapture(fl.member)
	if err != nil {
		return nil, nil, err
	}
	defer unix.Close(fd)
	m, err := fl.node.AddMember(ctx, fl.member, "member")
	if err != nil {
		return nil, nil, err
	}
	msg, err := captureInitiation(ctx, fd, floodPort, 3*time.Second)
	if err != nil {
		netlab.Ping(ctx, fl.member, netip.MustParseAddr(netlab.Internet4), 1, time.Second)
		msg, err = captureInitiation(ctx, fd, floodPort, 10*time.Second)
	}
	return msg, m, err
}

// openCapture opens an AF_PACKET socket on ns's underlay link that sees
// the packets the namespace sends (only ETH_P_ALL taps see outgoing ones).
func openCapture(ns *netlab.NS) (int, error) {
	fd := -1
	err := ns.Run(func() error {
		ifi, err := net.InterfaceByName(netlab.MemberIface)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("flood: capture socket in %s: %w", ns.Name, err)
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// captureInitiation reads fd until an initiation to UDP port arrives or d
// passes.
func captureInitiation(ctx context.Context, fd int, port uint16, d time.Duration) ([]byte, error) {
	buf := make([]byte, 65536)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, fmt.Errorf("flood: capture: %w", err)
		}
		if msg, ok := initiationIn(buf[:n], port); ok {
			return append([]byte(nil), msg...), nil
		}
	}
	return nil, fmt.Errorf("flood: no handshake initiation to port %d seen in %v", port, d)
}

// initiationIn returns the WireGuard initiation carried by the IPv4 packet
// p to UDP dstPort, if it is one (unfragmented, 148 bytes, type 1).
func initiationIn(p []byte, dstPort uint16) ([]byte, bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_UDP {
		return nil, false
	}
	ihl, total := int(p[0]&0x0f)*4, int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < 20 || total > len(p) || total < ihl+8 || binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 {
		return nil, false // short, truncated, or a fragment (MF set or an offset)
	}
	udp := p[ihl:total]
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if binary.BigEndian.Uint16(udp[2:4]) != dstPort || ulen < 8 || ulen > len(udp) {
		return nil, false
	}
	msg := udp[8:ulen]
	if len(msg) != wgInitiationSize || binary.LittleEndian.Uint32(msg[:4]) != wgTypeInitiation {
		return nil, false
	}
	return msg, true
}

// mac1Key is BLAKE2s-256("mac1----" ‖ the responder's static public key).
func mac1Key(pub [32]byte) [32]byte {
	h, _ := blake2s.New256(nil)
	h.Write([]byte(wgLabelMAC1))
	h.Write(pub[:])
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// mac1 is BLAKE2s-128 keyed with key over msg up to the mac1 field.
func mac1(msg []byte, key *[32]byte) [16]byte {
	h, _ := blake2s.New128(key[:])
	h.Write(msg[:wgMAC1Offset])
	var m [16]byte
	h.Sum(m[:0])
	return m
}

// setMAC1 writes a valid MAC1 into the initiation msg and zeroes MAC2 (no
// cookie: under load the exit answers with a cookie reply).
func setMAC1(msg []byte, key *[32]byte) {
	m := mac1(msg, key)
	copy(msg[wgMAC1Offset:wgMAC2Offset], m[:])
	clear(msg[wgMAC2Offset:wgInitiationSize])
}

// validMAC1 reports whether the initiation msg carries key's MAC1.
func validMAC1(msg []byte, key *[32]byte) bool {
	if len(msg) != wgInitiationSize {
		return false
	}
	m := mac1(msg, key)
	return string(m[:]) == string(msg[wgMAC1Offset:wgMAC2Offset])
}

// floodPayloads returns the messages a kind sends, cycled by the senders:
// n random initiations for init and badmac (MAC1 valid or not), the
// captured one for replay.
func floodPayloads(kind string, n int, rnd *rand.Rand, key *[32]byte, captured []byte) [][]byte {
	if kind == floodReplay {
		return [][]byte{append([]byte(nil), captured...)}
	}
	buf := make([]byte, n*wgInitiationSize)
	out := make([][]byte, n)
	for i := range out {
		msg := buf[i*wgInitiationSize : (i+1)*wgInitiationSize : (i+1)*wgInitiationSize]
		for j := 4; j < wgInitiationSize; j += 8 {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], rnd.Uint64())
			copy(msg[j:], w[:])
		}
		binary.LittleEndian.PutUint32(msg[:4], wgTypeInitiation)
		switch kind {
		case floodInit:
			setMAC1(msg, key)
		case floodBadMAC:
			clear(msg[wgMAC2Offset:])
			if validMAC1(msg, key) { // 2^-128, but then make it wrong
				msg[wgMAC1Offset] ^= 1
			}
		}
		out[i] = msg
	}
	return out
}

// partition returns the i-th of n contiguous parts of s.
func partition[T any](s []T, i, n int) []T {
	return s[i*len(s)/n : (i+1)*len(s)/n]
}

// pacer is a token bucket of rate tokens per second holding at most burst.
// It starts empty and is driven by the caller's clock.
type pacer struct {
	rate, burst, tokens float64
	last                time.Time
}

func newPacer(rate float64, burst int, now time.Time) *pacer {
	return &pacer{rate: rate, burst: float64(burst), last: now}
}

// take returns want when that many tokens are banked (and spends them),
// else 0 and how long until they will be.
func (p *pacer) take(now time.Time, want int) (int, time.Duration) {
	if dt := now.Sub(p.last); dt > 0 {
		p.tokens = min(p.burst, p.tokens+dt.Seconds()*p.rate)
		p.last = now
	}
	if p.tokens >= float64(want) {
		p.tokens -= float64(want)
		return want, 0
	}
	return 0, time.Duration((float64(want) - p.tokens) / p.rate * float64(time.Second))
}

// floodSender is one UDP socket in the flooder namespace with the
// IP_PKTINFO control message of each of its source addresses.
type floodSender struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn
	oobs [][]byte
}

func openFloodSender(ns *netlab.NS, sources []netip.Addr) (*floodSender, error) {
	if len(sources) == 0 {
		return nil, errors.New("flood: no source addresses")
	}
	var conn *net.UDPConn
	err := ns.Run(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("flood: socket in %s: %w", ns.Name, err)
	}
	conn.SetWriteBuffer(4 << 20)
	s := &floodSender{conn: conn, pc: ipv4.NewPacketConn(conn)}
	for _, a := range sources {
		s.oobs = append(s.oobs, (&ipv4.ControlMessage{Src: a.AsSlice()}).Marshal())
	}
	return s, nil
}

// floodResult is what one sender did.
type floodResult struct {
	Sent, Errors uint64
	Elapsed      time.Duration
}

// routineFlood sends payloads round-robin, each from the next source, to
// dst at rate packets/s in batches until ctx ends or d has passed.
func (s *floodSender) routineFlood(ctx context.Context, dst net.Addr, payloads [][]byte, rate float64, batch int, d time.Duration) floodResult {
	ms := make([]ipv4.Message, batch)
	for i := range ms {
		ms[i].Buffers, ms[i].Addr = [][]byte{nil}, dst
	}
	start := time.Now()
	end := start.Add(d)
	// A burst of 50 ms at the rate lets the sender catch up after a late
	// wake-up on a loaded machine without exceeding the rate on average.
	p := newPacer(rate, max(2*batch, int(rate/20)), start)
	var r floodResult
	var pi, si int
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		n, wait := p.take(now, batch)
		if n == 0 {
			time.Sleep(min(wait, end.Sub(now)))
			continue
		}
		for i := range n {
			ms[i].Buffers[0], ms[i].OOB = payloads[pi], s.oobs[si]
			if pi++; pi == len(payloads) {
				pi = 0
			}
			if si++; si == len(s.oobs) {
				si = 0
			}
		}
		sent := 0
		for sent < n {
			k, err := s.pc.WriteBatch(ms[sent:n], 0)
			sent += max(k, 0)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					r.Elapsed = time.Since(start)
					return r
				}
				r.Errors += uint64(n - sent) // dropped: the bucket already paid for them
				break
			}
		}
		r.Sent += uint64(sent)
	}
	r.Elapsed = time.Since(start)
	return r
}

// run measures one run of the plan.
func (fl *floodLab) run(ctx context.Context, p floodRun, o floodOpts) (floodRun, error) {
	p.LoadAvg = dnsbLoadAvg()
	pid := fl.node.Proc.Pid()
	before, err := readCounters(ctx, fl.flooder)
	if err != nil {
		return p, err
	}
	rssStop := make(chan struct{})
	rssPeak := make(chan float64, 1)
	go routineRSSPeak(pid, rssStop, rssPeak)

	floodCtx, stopFlood := context.WithCancel(ctx)
	defer stopFlood()
	var wg sync.WaitGroup
	results := make([]floodResult, len(fl.senders))
	if p.Kind != floodNone {
		pool := fl.pools[p.Kind]
		for i, s := range fl.senders {
			wg.Go(func() {
				// A deadline of its own: the flood stops even if nothing cancels it.
				d := floodLead + time.Duration(o.secs+5)*time.Second
				results[i] = s.routineFlood(floodCtx, fl.dst, pool[i*len(pool)/len(fl.senders):], float64(p.Rate)/float64(len(fl.senders)), o.batch, d)
			})
		}
		sleepCtx(ctx, floodLead)
	}
	cpu0, _ := harness.CPUSeconds(pid)
	self0, _ := harness.CPUSeconds(os.Getpid())
	t0 := time.Now()
	res, ierr := fl.member.Iperf(ctx, netlab.IperfOptions{Server: netip.MustParseAddr(netlab.Internet4),
		Duration: time.Duration(o.secs) * time.Second, Reverse: true, Omit: time.Duration(o.omit) * time.Second})
	wall := time.Since(t0).Seconds()
	cpu1, _ := harness.CPUSeconds(pid)
	self1, _ := harness.CPUSeconds(os.Getpid())
	stopFlood()
	wg.Wait()
	close(rssStop)
	p.RSSPeakMiB = <-rssPeak
	p.ExitdCPU, p.FlooderCPU = (cpu1-cpu0)/wall, (self1-self0)/wall

	var elapsed time.Duration
	for _, r := range results {
		p.Sent += r.Sent
		p.SendErrors += r.Errors
		elapsed = max(elapsed, r.Elapsed)
	}
	if elapsed > 0 {
		p.AchievedPPS = float64(p.Sent) / elapsed.Seconds()
	}
	sleepCtx(ctx, 300*time.Millisecond) // the last replies in flight
	after, err := readCounters(ctx, fl.flooder)
	if err != nil {
		return p, err
	}
	p.Cookies = after["cookie"] - before["cookie"]
	p.Responses = after["response"] - before["response"]
	p.OtherReply = after["other"] - before["other"]
	if elapsed > 0 {
		p.CookiePPS = float64(p.Cookies) / elapsed.Seconds()
	}
	p.Alive, p.StatusOK, p.StatusErr = fl.health(ctx)
	if g, ok := scrapeRuntime(ctx, fl.lab); ok {
		p.HeapInuse, p.Goroutines = g.HeapInuseMiB, g.Goroutines
	}
	if ierr != nil {
		// A flood that stalls the member entirely is a result, not a
		// failure of the benchmark: goodput 0.
		p.StatusErr = strings.TrimSpace(p.StatusErr + " iperf3: " + ierr.Error())
		return p, nil
	}
	p.GoodputMbps, p.Retransmits = res.ReceivedBps/1e6, res.Retransmits
	return p, nil
}

// health reports whether exitd still runs and answers exitctl status.
func (fl *floodLab) health(ctx context.Context) (alive, statusOK bool, msg string) {
	select {
	case <-fl.node.Proc.Done():
		return false, false, "exitd exited"
	default:
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := fl.node.Exitctl(sctx, "status"); err != nil {
		return true, false, err.Error()
	}
	return true, true, ""
}

// routineRSSPeak samples pid's VmRSS until stop closes and sends the peak.
func routineRSSPeak(pid int, stop <-chan struct{}, peak chan<- float64) {
	t := time.NewTicker(floodRSSPeriod)
	defer t.Stop()
	m := rssMiB(pid)
	for {
		select {
		case <-stop:
			peak <- max(m, rssMiB(pid))
			return
		case <-t.C:
			m = max(m, rssMiB(pid))
		}
	}
}

// summarise fills the no-flood median, each run's ratio, the rows and the
// verdict.
func (r *floodReport) summarise() {
	var base []float64
	var firstRSS, firstRep, lastRep float64 // RSS does not shrink back after a flood
	for _, run := range r.Runs {
		switch {
		case run.Kind == floodNone:
			if len(base) == 0 {
				firstRSS = run.RSSPeakMiB
			}
			base = append(base, run.GoodputMbps)
		case run.Rep == 1:
			firstRep = max(firstRep, run.RSSPeakMiB)
		}
		if run.Kind != floodNone && run.Rep == r.Reps {
			lastRep = max(lastRep, run.RSSPeakMiB)
		}
	}
	r.NoFloodMbps = median(base)
	for i := range r.Runs {
		if r.NoFloodMbps > 0 {
			r.Runs[i].Ratio = r.Runs[i].GoodputMbps / r.NoFloodMbps
		}
	}
	r.Rows = nil
	type key struct {
		kind string
		rate int
	}
	groups := map[key][]floodRun{}
	var order []key
	for _, run := range r.Runs {
		k := key{run.Kind, run.Rate}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], run)
	}
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].rate != order[j].rate {
			return order[i].rate < order[j].rate
		}
		return order[i].kind < order[j].kind
	})
	v := &floodVerdict{GoodputAt50k: map[string]float64{}, NoCrash: true,
		RSSBaseMiB: firstRSS, RSSFirstRep: firstRep, RSSLastRep: lastRep}
	for _, k := range order {
		runs := groups[k]
		row := floodRow{Kind: k.kind, Rate: k.rate, Runs: len(runs), AllAlive: true}
		pick := func(f func(floodRun) float64) float64 {
			var v []float64
			for _, run := range runs {
				v = append(v, f(run))
			}
			return median(v)
		}
		row.AchievedPPS = pick(func(x floodRun) float64 { return x.AchievedPPS })
		row.GoodputMbps = pick(func(x floodRun) float64 { return x.GoodputMbps })
		row.Ratio = pick(func(x floodRun) float64 { return x.Ratio })
		row.ExitdCPU = pick(func(x floodRun) float64 { return x.ExitdCPU })
		row.FlooderCPU = pick(func(x floodRun) float64 { return x.FlooderCPU })
		row.CookiePPS = pick(func(x floodRun) float64 { return x.CookiePPS })
		for _, run := range runs {
			row.RSSPeakMiB = max(row.RSSPeakMiB, run.RSSPeakMiB)
			row.Responses += run.Responses
			row.AllAlive = row.AllAlive && run.Alive && run.StatusOK
		}
		v.NoCrash = v.NoCrash && row.AllAlive
		if k.kind != floodNone {
			v.RSSFloodMiB = max(v.RSSFloodMiB, row.RSSPeakMiB)
		}
		if k.rate == 50_000 {
			v.GoodputAt50k[k.kind] = row.Ratio
		}
		r.Rows = append(r.Rows, row)
	}
	v.RSSBounded = v.RSSFloodMiB <= floodRSSCeiling && v.RSSLastRep <= v.RSSFirstRep*1.1+8
	if !v.RSSBounded {
		v.Notes = append(v.Notes, fmt.Sprintf("RSS: flood peak %.0f MiB (ceiling %d), rep 1 %.0f → rep %d %.0f MiB",
			v.RSSFloodMiB, floodRSSCeiling, v.RSSFirstRep, r.Reps, v.RSSLastRep))
	}
	v.GoodputOK = len(v.GoodputAt50k) > 0
	for kind, ratio := range v.GoodputAt50k {
		if ratio < 0.90 {
			v.GoodputOK = false
			v.Notes = append(v.Notes, fmt.Sprintf("%s at 50k/s: %.2f of the no-flood goodput, below 0.90", kind, ratio))
		}
	}
	if len(v.GoodputAt50k) == 0 {
		v.Notes = append(v.Notes, "no run at 50,000/s: the goodput target is not judged")
	}
	for _, row := range r.Rows {
		if row.Kind != floodNone && row.AchievedPPS < 0.95*float64(row.Rate) {
			v.Notes = append(v.Notes, fmt.Sprintf("%s: the sender reached %.0f of %d/s", row.Kind, row.AchievedPPS, row.Rate))
		}
	}
	sort.Strings(v.Notes)
	v.Pass = v.GoodputOK && v.NoCrash && v.RSSBounded
	r.Verdict = v
}

func printFloodReport(w io.Writer, r *floodReport) {
	fmt.Fprintf(w, "\nHandshake flood vs a member's download through a %.0f Mbit/s TBF (%s path); %d s runs, medians of %d rep(s)\n",
		r.TBFMbps, r.Shape, r.Seconds, r.Reps)
	fmt.Fprintf(w, "%s; load %s → %s; %d sources, %d sender(s), batch %d\n", r.Machine, r.LoadStart, r.LoadEnd, r.Sources, r.Senders, r.Batch)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "flood\ttarget/s\tsent/s\tgoodput Mbit/s\t× no flood\texitd CPU\texitd RSS MiB\tcookies/s\tresponses\tflooder CPU\tstatus\t")
	for _, row := range r.Rows {
		target, sent := "-", "-"
		if row.Kind != floodNone {
			target, sent = fmt.Sprintf("%dk", row.Rate/1000), fmt.Sprintf("%.0f", row.AchievedPPS)
		}
		status := "ok"
		if !row.AllAlive {
			status = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%.2f\t%.0f%%\t%.0f\t%.0f\t%d\t%.0f%%\t%s\t\n", row.Kind, target, sent, row.GoodputMbps,
			row.Ratio, row.ExitdCPU*100, row.RSSPeakMiB, row.CookiePPS, row.Responses, row.FlooderCPU*100, status)
	}
	tw.Flush()
	v := r.Verdict
	if v == nil {
		return
	}
	verdict := "FAIL"
	if v.Pass {
		verdict = "PASS"
	}
	kinds := make([]string, 0, len(v.GoodputAt50k))
	for k := range v.GoodputAt50k {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var at50 []string
	for _, k := range kinds {
		at50 = append(at50, fmt.Sprintf("%s %.2f", k, v.GoodputAt50k[k]))
	}
	fmt.Fprintf(w, "\ntarget: >= 0.90 of goodput at 50k/s (%s), no crash (%v), RSS bounded (%v: %.0f MiB before any flood, flood peak %.0f in rep 1, %.0f in rep %d): %s\n",
		strings.Join(at50, ", "), v.NoCrash, v.RSSBounded, v.RSSBaseMiB, v.RSSFirstRep, v.RSSLastRep, r.Reps, verdict)
	for _, n := range v.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}
