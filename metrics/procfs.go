package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Host reads the host's counters from procfs. /proc/net is the reading
// process's network namespace, so the figures are the node's namespace's.
type Host struct {
	// Root is procfs; "" means "/proc" (tests point it at a fake tree).
	Root string
	// TUN and WAN name the interfaces whose counters are read.
	TUN, WAN string
}

// UDPStats are one family's UDP error counters (/proc/net/snmp{,6}).
type UDPStats struct {
	InErrors, RcvbufErrors, SndbufErrors uint64
}

// LinkStats are one interface's counters (/proc/net/dev).
type LinkStats struct {
	Present                                 bool
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// HostStats are the network figures of the node's namespace.
type HostStats struct {
	UDP4, UDP6 UDPStats
	// IPHdrErrors4 and IPHdrErrors6 count IP packets the kernel dropped
	// for a malformed header (Ip InHdrErrors, Ip6InHdrErrors): garbage
	// members put into their tunnels ends here.
	IPHdrErrors4, IPHdrErrors6 uint64
	TUN, WAN                   LinkStats
	// Conntrack entries in use and the table's size; -1 when unknown
	// (nf_conntrack not loaded).
	Conntrack, ConntrackMax int64
}

// ProcStats are CPU and memory figures for the load report.
type ProcStats struct {
	// CPUBusy and CPUTotal are /proc/stat's aggregate ticks (busy excludes
	// idle and iowait); SelfCPU is this process's utime+stime in ticks.
	CPUBusy, CPUTotal, SelfCPU uint64
	NCPU                       int
	SelfRSS                    uint64 // bytes
	MemTotal, MemAvailable     uint64 // bytes
	SwapTotal, SwapFree        uint64
}

// ClockTicks is USER_HZ, the unit of /proc/stat (100 on every Linux
// architecture exitd runs on).
const ClockTicks = 100

func (h Host) path(p ...string) string {
	root := h.Root
	if root == "" {
		root = "/proc"
	}
	return filepath.Join(append([]string{root}, p...)...)
}

// Read returns the network figures. Parts that cannot be read are left
// zero (-1 for conntrack) and reported in the joined error.
func (h Host) Read() (HostStats, error) {
	st := HostStats{Conntrack: -1, ConntrackMax: -1}
	var errs []error
	if b, err := os.ReadFile(h.path("net", "snmp")); err != nil {
		errs = append(errs, err)
	} else {
		if st.UDP4, err = parseSNMP(b); err != nil {
			errs = append(errs, err)
		}
		st.IPHdrErrors4 = snmpLine(b, "Ip:")["InHdrErrors"]
	}
	if b, err := os.ReadFile(h.path("net", "snmp6")); err == nil { // absent without IPv6
		st.UDP6 = parseSNMP6(b)
		st.IPHdrErrors6 = snmp6Value(b, "Ip6InHdrErrors")
	}
	if b, err := os.ReadFile(h.path("net", "dev")); err != nil {
		errs = append(errs, err)
	} else {
		links, err := parseNetDev(b)
		if err != nil {
			errs = append(errs, err)
		}
		st.TUN, st.WAN = links[h.TUN], links[h.WAN]
	}
	st.Conntrack = readInt(h.path("sys", "net", "netfilter", "nf_conntrack_count"))
	st.ConntrackMax = readInt(h.path("sys", "net", "netfilter", "nf_conntrack_max"))
	if err := errors.Join(errs...); err != nil {
		return st, fmt.Errorf("metrics: host counters: %w", err)
	}
	return st, nil
}

// ReadProc returns CPU and memory figures of the host and this process.
func (h Host) ReadProc() (ProcStats, error) {
	var st ProcStats
	var errs []error
	if b, err := os.ReadFile(h.path("stat")); err != nil {
		errs = append(errs, err)
	} else if st.CPUBusy, st.CPUTotal, st.NCPU, err = parseStat(b); err != nil {
		errs = append(errs, err)
	}
	if b, err := os.ReadFile(h.path("self", "stat")); err != nil {
		errs = append(errs, err)
	} else if cpu, rssPages, err := parseSelfStat(b); err != nil {
		errs = append(errs, err)
	} else {
		st.SelfCPU, st.SelfRSS = cpu, rssPages*uint64(os.Getpagesize())
	}
	if b, err := os.ReadFile(h.path("meminfo")); err != nil {
		errs = append(errs, err)
	} else {
		mi := parseMeminfo(b)
		st.MemTotal, st.MemAvailable, st.SwapTotal, st.SwapFree = mi["MemTotal"], mi["MemAvailable"], mi["SwapTotal"], mi["SwapFree"]
	}
	if err := errors.Join(errs...); err != nil {
		return st, fmt.Errorf("metrics: process counters: %w", err)
	}
	return st, nil
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// parseSNMP reads the Udp: header/value line pair of /proc/net/snmp.
func parseSNMP(b []byte) (UDPStats, error) {
	vals := snmpLine(b, "Udp:")
	if vals == nil {
		return UDPStats{}, errors.New("no Udp: lines in snmp")
	}
	return UDPStats{InErrors: vals["InErrors"], RcvbufErrors: vals["RcvbufErrors"], SndbufErrors: vals["SndbufErrors"]}, nil
}

// snmpLine reads one header/value line pair of /proc/net/snmp ("Ip:",
// "Udp:", ...) into a map; nil when absent.
func snmpLine(b []byte, prefix string) map[string]uint64 {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != prefix {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		vals := map[string]uint64{}
		for i, v := range f[1:] {
			if i < len(names) {
				n, _ := strconv.ParseUint(v, 10, 64)
				vals[names[i]] = n
			}
		}
		return vals
	}
	return nil
}

// snmp6Value reads one "Name value" line of /proc/net/snmp6.
func snmp6Value(b []byte, name string) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			return v
		}
	}
	return 0
}

// parseSNMP6 reads "Name value" lines of /proc/net/snmp6.
func parseSNMP6(b []byte) UDPStats {
	var st UDPStats
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Udp6InErrors":
			st.InErrors = v
		case "Udp6RcvbufErrors":
			st.RcvbufErrors = v
		case "Udp6SndbufErrors":
			st.SndbufErrors = v
		}
	}
	return st
}

// parseNetDev reads /proc/net/dev: "iface: rx(8 fields) tx(8 fields)".
func parseNetDev(b []byte) (map[string]LinkStats, error) {
	out := map[string]LinkStats{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			continue
		}
		var v [16]uint64
		bad := false
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				bad = true
				break
			}
			v[i] = n
		}
		if bad {
			continue // the header lines
		}
		out[strings.TrimSpace(name)] = LinkStats{Present: true,
			RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11]}
	}
	if len(out) == 0 {
		return out, errors.New("no interfaces in net/dev")
	}
	return out, nil
}

// parseStat reads the aggregate "cpu" line and counts "cpuN" lines.
func parseStat(b []byte) (busy, total uint64, ncpu int, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	found := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "cpu "):
			f := strings.Fields(line)[1:]
			for i, s := range f {
				v, perr := strconv.ParseUint(s, 10, 64)
				if perr != nil {
					return 0, 0, 0, fmt.Errorf("stat: cpu field %d: %w", i, perr)
				}
				if i >= 8 {
					break // guest time is already in user
				}
				total += v
				if i != 3 && i != 4 { // idle, iowait
					busy += v
				}
			}
			found = true
		case strings.HasPrefix(line, "cpu"):
			ncpu++
		}
	}
	if !found {
		return 0, 0, 0, errors.New("stat: no cpu line")
	}
	return busy, total, max(ncpu, 1), nil
}

// parseSelfStat reads utime+stime and rss (pages) from /proc/self/stat;
// fields are counted after the parenthesised command name.
func parseSelfStat(b []byte) (cpu, rssPages uint64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("self/stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15, rss 24.
	if len(f) < 22 {
		return 0, 0, errors.New("self/stat: too few fields")
	}
	ut, e1 := strconv.ParseUint(f[11], 10, 64)
	stt, e2 := strconv.ParseUint(f[12], 10, 64)
	rss, e3 := strconv.ParseInt(f[21], 10, 64)
	if err := errors.Join(e1, e2, e3); err != nil {
		return 0, 0, fmt.Errorf("self/stat: %w", err)
	}
	return ut + stt, uint64(max(rss, 0)), nil
}

// parseMeminfo returns meminfo's values in bytes.
func parseMeminfo(b []byte) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		out[name] = v
	}
	return out
}
