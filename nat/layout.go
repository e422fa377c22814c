package nat

import (
	"strconv"

	"github.com/google/nftables"
)

// Layout says where the NAT chains (postrouting, and prerouting with
// CaptureDNS) live. Everything else — counters, sets, the filter chains —
// is always in the inet table.
type Layout int

const (
	// LayoutAuto asks the kernel at the first Apply: LayoutInet when it
	// accepts a NAT chain in an inet table, else LayoutSplit.
	LayoutAuto Layout = iota
	// LayoutInet keeps the NAT chains in the inet table. Apply fails with
	// ErrInetNATUnsupported on a kernel that refuses them.
	LayoutInet
	// LayoutSplit moves the NAT chains, with their family's rules, to an
	// ip and an ip6 table named <table>_nat: the fallback for kernels
	// without inet-family NAT (before 5.2, e.g. RHEL 8's 4.18).
	LayoutSplit
)

// String returns "auto", "inet" or "split" (the words of [wan] nat_tables).
func (l Layout) String() string {
	switch l {
	case LayoutAuto:
		return "auto"
	case LayoutInet:
		return "inet"
	case LayoutSplit:
		return "split"
	}
	return "Layout(" + strconv.Itoa(int(l)) + ")"
}

// describe is the layout in force for humans (Manager.Mode).
func (l Layout) describe() string {
	switch l {
	case LayoutInet:
		return "inet"
	case LayoutSplit:
		return "split (ip + ip6 nat tables)"
	}
	return ""
}

// natSuffix names the split layout's ip and ip6 tables after the inet one.
const natSuffix = "_nat"

// natTable is the name of the split layout's ip and ip6 tables.
func natTable(table string) string { return table + natSuffix }

// tableRef is one table of ours.
type tableRef struct {
	family nftables.TableFamily
	name   string
}

func (t tableRef) table() *nftables.Table { return &nftables.Table{Family: t.family, Name: t.name} }

// String is the table as nft names it ("inet exitd", "ip exitd_nat").
func (t tableRef) String() string { return familyName(t.family) + " " + t.name }

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	}
	return "family" + strconv.Itoa(int(f))
}

// allTables are every table exitd may own under the name table, whatever
// the layout: what Remove deletes.
func allTables(table string) []tableRef {
	return []tableRef{
		{nftables.TableFamilyINet, table},
		{nftables.TableFamilyIPv4, natTable(table)},
		{nftables.TableFamilyIPv6, natTable(table)},
	}
}

// layoutTables are the tables layout l uses (LayoutAuto, before the first
// Apply: the inet table only).
func layoutTables(table string, l Layout) []tableRef {
	if l == LayoutSplit {
		return allTables(table)
	}
	return allTables(table)[:1]
}
