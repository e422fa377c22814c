package netlab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// IperfPort is iperf3's default port.
const IperfPort = 5201

// StartIperfServer starts `iperf3 -s -p port` inside the namespace, tracked
// so Lab.Close stops it, and returns once it listens (or fails with its
// output if it exits first). port 0 means IperfPort. ctx bounds the
// start-up only: the server runs until Process.Stop or Lab.Close.
func (n *NS) StartIperfServer(ctx context.Context, port int) (*Process, error) {
	if port == 0 {
		port = IperfPort
	}
	p, err := n.Start(n.Command(context.WithoutCancel(ctx), "iperf3", "-s", "-p", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	err = WaitFor(ctx, 5*time.Second, func() bool {
		select {
		case <-p.Done():
			return true
		default:
		}
		ok, _ := n.listeningTCP(port)
		return ok
	})
	select {
	case <-p.Done():
		return nil, fmt.Errorf("netlab: %s: iperf3 server exited: %v: %s", n.Name, p.Wait(), p.Output())
	default:
	}
	if err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("netlab: %s: iperf3 server not listening on %d: %w", n.Name, port, err)
	}
	return p, nil
}

// listeningTCP reports whether a TCP socket listens on port in the
// namespace, from /proc/thread-self/net (per-thread, so per-namespace).
func (n *NS) listeningTCP(port int) (bool, error) {
	var found bool
	err := n.Run(func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			if tcpListens(b, port) {
				found = true
				return nil
			}
		}
		return nil
	})
	return found, err
}

// tcpListens scans a /proc/net/tcp{,6} table for a LISTEN (0A) socket on
// port.
func tcpListens(table []byte, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(bytes.NewReader(table))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 3 && strings.HasSuffix(f[1], want) && f[3] == "0A" {
			return true
		}
	}
	return false
}

// IperfOptions describe one iperf3 client run (TCP).
type IperfOptions struct {
	Server   netip.Addr
	Port     int           // 0 means IperfPort
	Duration time.Duration // whole seconds, at least 1 s (iperf3 -t)
	Interval time.Duration // report interval; 0 means 1 s (iperf3 -i)
	Streams  int           // parallel streams; 0 means 1 (-P)
	Reverse  bool          // server sends (-R): download towards the client
	Bind     netip.Addr    // source address, optional (-B)
	Bitrate  uint64        // bits/s per stream cap, 0 unlimited (-b)
	Omit     time.Duration // leading time not counted (-O), whole seconds
}

func (o IperfOptions) args() ([]string, error) {
	if !o.Server.IsValid() {
		return nil, errors.New("netlab: iperf: no server address")
	}
	if o.Duration < time.Second || o.Duration%time.Second != 0 {
		return nil, fmt.Errorf("netlab: iperf: duration %v is not a whole number of seconds >= 1s", o.Duration)
	}
	port, streams, interval := o.Port, o.Streams, o.Interval
	if port == 0 {
		port = IperfPort
	}
	if streams == 0 {
		streams = 1
	}
	if interval == 0 {
		interval = time.Second
	}
	a := []string{"-c", o.Server.String(), "-p", strconv.Itoa(port), "-J",
		"-t", strconv.Itoa(int(o.Duration / time.Second)),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64),
		"-P", strconv.Itoa(streams),
		"--connect-timeout", "3000"}
	if o.Reverse {
		a = append(a, "-R")
	}
	if o.Bind.IsValid() {
		a = append(a, "-B", o.Bind.String())
	}
	if o.Bitrate != 0 {
		a = append(a, "-b", strconv.FormatUint(o.Bitrate, 10))
	}
	if o.Omit != 0 {
		a = append(a, "-O", strconv.Itoa(int(o.Omit/time.Second)))
	}
	return a, nil
}

// Iperf runs an iperf3 client inside the namespace and parses its -J
// report. iperf3's own error (from the JSON) is part of the returned error.
func (n *NS) Iperf(ctx context.Context, o IperfOptions) (*IperfResult, error) {
	args, err := o.args()
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		cmd := n.Command(ctx, "iperf3", args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, runErr := cmd.Output()
		res, perr := ParseIperf(out)
		if perr == nil && runErr == nil {
			return res, nil
		}
		err := fmt.Errorf("netlab: %s: iperf3 %s: %w", n.Name, strings.Join(args, " "),
			errors.Join(runErr, perr, stderrErr(stderr.Bytes())))
		if !serverBusy(err) || attempt == iperfBusyTries {
			return res, err
		}
		// The server still tears down the previous test: try again.
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(iperfBusyWait):
		}
	}
}

// An iperf3 server runs one test at a time and refuses a client that
// arrives while it finishes the last one; Iperf tries again.
const (
	iperfBusyTries = 10
	iperfBusyWait  = 200 * time.Millisecond
)

// serverBusy reports whether err is iperf3's refusal of a busy server.
func serverBusy(err error) bool {
	return err != nil && strings.Contains(err.Error(), "the server is busy")
}

func stderrErr(b []byte) error {
	if b = bytes.TrimSpace(b); len(b) == 0 {
		return nil
	}
	return errors.New(string(b))
}

// IperfResult is the part of an iperf3 -J report benchmarks use.
type IperfResult struct {
	Streams     int
	Reverse     bool
	Intervals   []IperfInterval
	SentBps     float64 // end.sum_sent.bits_per_second
	ReceivedBps float64 // end.sum_received.bits_per_second: goodput
	Retransmits int     // end.sum_sent.retransmits (sender side)
}

// IperfInterval is one report interval.
type IperfInterval struct {
	Start, End time.Duration // since the test start
	Streams    []float64     // bits/s per stream
	Sum        float64       // bits/s, all streams
}

// iperfJSON mirrors the fields read from iperf3 -J.
type iperfJSON struct {
	Start struct {
		TestStart struct {
			NumStreams int `json:"num_streams"`
			Reverse    int `json:"reverse"`
		} `json:"test_start"`
	} `json:"start"`
	Intervals []struct {
		Streams []iperfSum `json:"streams"`
		Sum     *iperfSum  `json:"sum"`
	} `json:"intervals"`
	End struct {
		SumSent     *iperfSum `json:"sum_sent"`
		SumReceived *iperfSum `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

type iperfSum struct {
	Start         float64 `json:"start"`
	End           float64 `json:"end"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   int     `json:"retransmits"`
}

// ParseIperf parses iperf3 -J output. A report carrying "error" returns
// what could be parsed together with that error.
func ParseIperf(b []byte) (*IperfResult, error) {
	var j iperfJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("netlab: parse iperf3 json: %w", err)
	}
	r := &IperfResult{Streams: j.Start.TestStart.NumStreams, Reverse: j.Start.TestStart.Reverse != 0}
	for _, iv := range j.Intervals {
		out := IperfInterval{}
		for _, s := range iv.Streams {
			out.Streams = append(out.Streams, s.BitsPerSecond)
			out.Sum += s.BitsPerSecond
		}
		span := iperfSum{}
		if len(iv.Streams) > 0 {
			span = iv.Streams[0]
		}
		if iv.Sum != nil {
			span, out.Sum = *iv.Sum, iv.Sum.BitsPerSecond
		}
		out.Start, out.End = seconds(span.Start), seconds(span.End)
		r.Intervals = append(r.Intervals, out)
	}
	if s := j.End.SumSent; s != nil {
		r.SentBps, r.Retransmits = s.BitsPerSecond, s.Retransmits
	}
	if s := j.End.SumReceived; s != nil {
		r.ReceivedBps = s.BitsPerSecond
	}
	if j.Error != "" {
		return r, fmt.Errorf("netlab: iperf3: %s", j.Error)
	}
	return r, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
