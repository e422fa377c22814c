package tuning

import (
	"bufio"
	"bytes"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Conntrack sizing. A conntrack entry costs about ConntrackEntryBytes of
// unswappable kernel memory (struct nf_conn plus extensions, slab overhead;
// 1M entries ≈ 300–400 MB measured), and each hash bucket 8 bytes.
// exitd lets a full table use at most 1/16 of RAM, rounds down to a power of
// two, and keeps the count between ConntrackFloor and ConntrackCap:
//
//	RAM     1 GiB → 131072    2 GiB → 262144    4 GiB → 524288
//	RAM     8 GiB → 1048576  16 GiB → 2097152  ≥32 GiB → 4194304
//
// Buckets equal entries (the kernel's own default ratio): each entry is
// hashed twice (original and reply direction), so a full table averages
// chains of two. Rev 1.6's 10M entries on the default 262144 buckets gave
// chains of ~76.
const (
	ConntrackEntryBytes = 320
	ConntrackFloor      = 65536
	ConntrackCap        = 4194304
	conntrackRAMShare   = 16
)

// Conntrack keys.
const (
	KeyConntrackMax = "net.netfilter.nf_conntrack_max"
)

// Conntrack is a conntrack table size.
type Conntrack struct {
	Max     int `json:"max"`
	Buckets int `json:"buckets"`
}

// ConntrackFor sizes the table for a machine with memBytes of RAM.
func ConntrackFor(memBytes uint64) Conntrack {
	n := memBytes / conntrackRAMShare / ConntrackEntryBytes
	switch {
	case n < ConntrackFloor:
		n = ConntrackFloor
	case n > ConntrackCap:
		n = ConntrackCap
	default:
		n = 1 << (bits.Len64(n) - 1)
	}
	return Conntrack{Max: int(n), Buckets: int(n)}
}

// ConntrackExplicit is the size for an operator-chosen maximum: buckets
// follow it, and it never goes below ConntrackFloor.
func ConntrackExplicit(max int) Conntrack {
	if max < ConntrackFloor {
		max = ConntrackFloor
	}
	return Conntrack{Max: max, Buckets: max}
}

// SizeConntrack returns ConntrackExplicit(explicitMax) when explicitMax > 0,
// otherwise the size for the memory in s's meminfo.
func SizeConntrack(s Sysctl, explicitMax int) (Conntrack, error) {
	if explicitMax > 0 {
		return ConntrackExplicit(explicitMax), nil
	}
	mem, err := s.MemTotal()
	if err != nil {
		return Conntrack{}, err
	}
	return ConntrackFor(mem), nil
}

// MemTotal reads MemTotal from the meminfo file beside Root
// ("/proc/meminfo" for Root "/proc/sys").
func (s Sysctl) MemTotal() (uint64, error) {
	path := filepath.Join(filepath.Dir(filepath.Clean(s.Root)), "meminfo")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("tuning: read memory size: %w", err)
	}
	return parseMemTotal(b)
}

func parseMemTotal(b []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "MemTotal:" {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil || (len(f) > 2 && f[2] != "kB") || kb > 1<<53 {
			return 0, fmt.Errorf("tuning: meminfo: bad MemTotal line %q", sc.Text())
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("tuning: meminfo: no MemTotal line")
}

// WithConntrack returns a copy of p that also sets the conntrack table size
// (buckets first, then max), both optional ("-": the module may not be
// loaded). Existing assignments of those keys in p are replaced.
func (p *Profile) WithConntrack(c Conntrack) *Profile {
	out := &Profile{Name: p.Name, Duplicates: p.Duplicates}
	for _, e := range p.Entries {
		if e.Key != KeyBuckets && e.Key != KeyConntrackMax {
			out.Entries = append(out.Entries, e)
		}
	}
	pos := Position{File: "exitd tune (sized)"}
	out.Entries = append(out.Entries,
		Entry{Key: KeyBuckets, Value: strconv.Itoa(c.Buckets), IgnoreErrors: true, Pos: pos,
			Comment: "hash buckets = entries, so a full table averages chains of two"},
		Entry{Key: KeyConntrackMax, Value: strconv.Itoa(c.Max), IgnoreErrors: true, Pos: pos,
			Comment: "sized from memory: a full table uses at most 1/16 of RAM"},
	)
	return out
}
