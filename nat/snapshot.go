package nat

// The table as the kernel holds it, in a canonical form that Watch compares
// with the form taken right after exitd's own Apply.
//
// The library's read-back cannot be used for this: GetRules (v0.3.0) drops
// expressions it does not know (rt, byteorder), so an edit of the MSS clamp
// would look like no change. Instead every object of the table is dumped
// over a plain netfilter netlink socket and kept as its attribute bytes,
// less what changes without anyone editing (handles, use counts, counter
// values, padding).

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// tableState is one canonical line per object of our tables: the table,
// each chain, each rule (by chain and position), each set, each set's
// elements (sorted; not of dynamic sets, which traffic fills) and each
// named object. Lines of the split layout's ip
// and ip6 tables begin with "ip " or "ip6 " ("ip6 rule postrouting 0 ...");
// the inet table's have no prefix. A missing table has no lines.
type tableState []string

// Attributes left out of the canonical form, by message type. Numbers not
// in x/sys/unix are from linux/netfilter/nf_tables.h.
var volatileAttrs = map[uint16][]uint16{
	unix.NFT_MSG_NEWTABLE: {unix.NFTA_TABLE_USE, 4 /* HANDLE */, 5 /* PAD */},
	unix.NFT_MSG_NEWCHAIN: {unix.NFTA_CHAIN_HANDLE, unix.NFTA_CHAIN_USE, unix.NFTA_CHAIN_COUNTERS, unix.NFTA_CHAIN_PAD},
	unix.NFT_MSG_NEWRULE:  {unix.NFTA_RULE_HANDLE, unix.NFTA_RULE_POSITION, unix.NFTA_RULE_PAD},
	unix.NFT_MSG_NEWSET:   {unix.NFTA_SET_PAD, 16 /* HANDLE */, 20 /* COUNT: elements, which traffic adds to dynamic sets (Linux 6.x) */},
	unix.NFT_MSG_NEWOBJ:   {unix.NFTA_OBJ_USE, 6 /* HANDLE */, 7 /* PAD */},
}

const nftObjectCounter = 1 // NFT_OBJECT_COUNTER

// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from a type.
const nlaTypeMask = 0x3fff

// snapshot dumps tables from the kernel.
func (m *Manager) snapshot(tables []tableRef) (tableState, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: m.netns})
	if err != nil {
		return nil, fmt.Errorf("dump table: %w", err)
	}
	defer c.Close()
	var st tableState
	for _, ref := range tables {
		lines, err := dumpTable(c, ref)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		prefix := ""
		if ref.family != nftables.TableFamilyINet {
			prefix = familyName(ref.family) + " "
		}
		for _, l := range lines {
			st = append(st, prefix+l)
		}
	}
	slices.Sort(st)
	return st, nil
}

// dumpTable dumps one table's objects as canonical lines (none when the
// table is missing).
func dumpTable(c *netlink.Conn, ref tableRef) ([]string, error) {
	table, family := ref.name, byte(ref.family)
	name := netlink.Attribute{Type: 1, Data: []byte(table + "\x00")} // NFTA_*_TABLE, NFTA_TABLE_NAME
	var st []string
	var sets []string
	rules := map[string]int{} // next position per chain
	for _, typ := range []uint16{unix.NFT_MSG_GETTABLE, unix.NFT_MSG_GETCHAIN, unix.NFT_MSG_GETRULE, unix.NFT_MSG_GETSET, unix.NFT_MSG_GETOBJ} {
		var filter []netlink.Attribute
		if typ == unix.NFT_MSG_GETRULE || typ == unix.NFT_MSG_GETSET || typ == unix.NFT_MSG_GETOBJ {
			filter = []netlink.Attribute{name}
		}
		msgs, err := dump(c, family, typ, filter)
		if errors.Is(err, unix.ENOENT) {
			return nil, nil // deleted since the table dump
		}
		if err != nil {
			return nil, err
		}
		for _, msg := range msgs {
			attrs, err := netlink.UnmarshalAttributes(msg.Data[4:])
			if err != nil {
				return nil, fmt.Errorf("dump table: %w", err)
			}
			if attrString(attrs, 1) != table { // every object's attribute 1 is its table
				continue
			}
			newType := uint16(msg.Header.Type) & 0xff
			key := ""
			switch typ {
			case unix.NFT_MSG_GETTABLE:
				key = "table"
			case unix.NFT_MSG_GETCHAIN:
				key = "chain " + attrString(attrs, unix.NFTA_CHAIN_NAME)
			case unix.NFT_MSG_GETRULE:
				chain := attrString(attrs, unix.NFTA_RULE_CHAIN)
				key = "rule " + chain + " " + strconv.Itoa(rules[chain])
				rules[chain]++
			case unix.NFT_MSG_GETSET:
				set := attrString(attrs, unix.NFTA_SET_NAME)
				if !dynamicSet(attrs) {
					sets = append(sets, set)
				}
				key = "set " + set
			case unix.NFT_MSG_GETOBJ:
				key = "obj " + attrString(attrs, unix.NFTA_OBJ_NAME)
				if t, ok := attrBytes(attrs, unix.NFTA_OBJ_TYPE); ok && len(t) == 4 && binary.BigEndian.Uint32(t) == nftObjectCounter {
					attrs = dropAttrs(attrs, unix.NFTA_OBJ_DATA) // the counts
				}
			}
			st = append(st, key+" "+canonical(dropAttrs(attrs, volatileAttrs[newType]...)))
		}
		if typ == unix.NFT_MSG_GETTABLE && len(st) == 0 {
			return nil, nil // no table: the dumps filtered by it would fail with ENOENT
		}
	}
	for _, set := range sets {
		msgs, err := dump(c, family, unix.NFT_MSG_GETSETELEM, []netlink.Attribute{
			{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(table + "\x00")},
			{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(set + "\x00")},
		})
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var elems []string
		for _, msg := range msgs {
			attrs, err := netlink.UnmarshalAttributes(msg.Data[4:])
			if err != nil {
				return nil, fmt.Errorf("dump set %s: %w", set, err)
			}
			list, _ := attrBytes(attrs, unix.NFTA_SET_ELEM_LIST_ELEMENTS)
			les, err := netlink.UnmarshalAttributes(list)
			if err != nil {
				return nil, fmt.Errorf("dump set %s: %w", set, err)
			}
			for _, le := range les {
				ea, err := netlink.UnmarshalAttributes(le.Data)
				if err != nil {
					return nil, fmt.Errorf("dump set %s: %w", set, err)
				}
				elems = append(elems, canonical(dropAttrs(ea, unix.NFTA_SET_ELEM_EXPIRATION, unix.NFTA_SET_ELEM_PAD)))
			}
		}
		slices.Sort(elems)
		st = append(st, "elements "+set+" "+strings.Join(elems, ","))
	}
	return st, nil
}

// dynamicSet reports whether a set's attributes say the packet path fills
// it ("flags dynamic": NFT_SET_EVAL). Its elements — a rate bucket or a
// connection count per member, the drop sets — change with traffic, not
// by anyone's edit, so the canonical form leaves them out (comparing them
// made every check after traffic re-apply the table, resetting every
// member's counts; dumping them cost a walk of 20,000 elements per set).
func dynamicSet(attrs []netlink.Attribute) bool {
	f, ok := attrBytes(attrs, unix.NFTA_SET_FLAGS)
	return ok && len(f) == 4 && binary.BigEndian.Uint32(f)&unix.NFT_SET_EVAL != 0
}

// dump sends one NLM_F_DUMP request of the nftables subsystem for family
// and returns the replies.
func dump(c *netlink.Conn, family byte, typ uint16, attrs []netlink.Attribute) ([]netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, err
	}
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), Flags: netlink.Request | netlink.Dump},
		Data:   append([]byte{family, unix.NFNETLINK_V0, 0, 0}, data...),
	}
	msgs, err := c.Execute(req)
	if err != nil {
		return nil, fmt.Errorf("dump table: message %d: %w", typ, err)
	}
	var out []netlink.Message
	for _, m := range msgs {
		if len(m.Data) >= 4 && m.Header.Type != netlink.Done {
			out = append(out, m)
		}
	}
	return out, nil
}

func attrBytes(attrs []netlink.Attribute, typ uint16) ([]byte, bool) {
	for _, a := range attrs {
		if a.Type&nlaTypeMask == typ {
			return a.Data, true
		}
	}
	return nil, false
}

func attrString(attrs []netlink.Attribute, typ uint16) string {
	b, _ := attrBytes(attrs, typ)
	return strings.TrimRight(string(b), "\x00")
}

func dropAttrs(attrs []netlink.Attribute, types ...uint16) []netlink.Attribute {
	return slices.DeleteFunc(slices.Clone(attrs), func(a netlink.Attribute) bool {
		return slices.Contains(types, a.Type&nlaTypeMask)
	})
}

// canonical prints attributes sorted by type, as type=hex.
func canonical(attrs []netlink.Attribute) string {
	attrs = slices.Clone(attrs)
	slices.SortStableFunc(attrs, func(a, b netlink.Attribute) int { return int(a.Type&nlaTypeMask) - int(b.Type&nlaTypeMask) })
	var b strings.Builder
	for i, a := range attrs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d=%s", a.Type&nlaTypeMask, hex.EncodeToString(a.Data))
	}
	return b.String()
}

// diff describes the first difference between the expected state and the
// current one, or returns "" when they are the same.
func (want tableState) diff(got tableState) string {
	if len(got) == 0 && len(want) > 0 {
		return "table missing"
	}
	for _, w := range want {
		// One table of the split layout gone, the others there.
		if name := objectName(w); (name == "table" || name == "ip table" || name == "ip6 table") &&
			!slices.ContainsFunc(got, func(g string) bool { return objectName(g) == name }) {
			return name + " missing"
		}
	}
	for i := 0; i < len(want) || i < len(got); i++ {
		switch {
		case i >= len(got):
			return "missing: " + objectName(want[i])
		case i >= len(want):
			return "unexpected: " + objectName(got[i])
		case want[i] != got[i]:
			if objectName(want[i]) == objectName(got[i]) {
				return "changed: " + objectName(want[i])
			}
			if slices.Contains(got, want[i]) {
				return "unexpected: " + objectName(got[i])
			}
			return "missing or changed: " + objectName(want[i])
		}
	}
	return ""
}

// objectName is a line's key: "rule forward 3", "set blocked4", "table",
// "ip6 rule postrouting 0", "ip table", ...
func objectName(line string) string {
	f := strings.Fields(line)
	if len(f) > 1 && (f[0] == "ip" || f[0] == "ip6") {
		return f[0] + " " + objectName(strings.Join(f[1:], " "))
	}
	switch {
	case len(f) >= 3 && f[0] == "rule":
		return strings.Join(f[:3], " ")
	case len(f) >= 2 && f[0] != "table":
		return strings.Join(f[:2], " ")
	}
	return "table"
}
