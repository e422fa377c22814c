package nat

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// recorder is a fake NETLINK_NETFILTER peer for nftables.WithTestDial: it
// keeps every batch it is sent and acks each message, or fails the batch
// with err.
type recorder struct {
	mu      sync.Mutex
	batches [][]netlink.Message
	err     error // returned for the next batch when set
}

func (r *recorder) dial(req []netlink.Message) ([]netlink.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(req) > 0 && req[0].Header.Type == netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN) {
		var batch []netlink.Message
		for _, m := range req {
			if t := m.Header.Type; t != netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN) && t != netlink.HeaderType(unix.NFNL_MSG_BATCH_END) {
				batch = append(batch, m)
			}
		}
		r.batches = append(r.batches, batch)
		if err := r.err; err != nil {
			r.err = nil
			return nil, err
		}
	}
	// One ack (NLMSG_ERROR with errno 0) per Receive the library makes.
	return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 20)}}, nil
}

func (r *recorder) take() [][]netlink.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.batches
	r.batches = nil
	return b
}

func newFakeManager(t *testing.T) (*Manager, *recorder) {
	t.Helper()
	rec := &recorder{}
	m, err := New(Options{ConnOptions: []nftables.ConnOption{nftables.WithTestDial(rec.dial)}})
	if err != nil {
		t.Fatal(err)
	}
	return m, rec
}

// TestRulesetMessages builds each test case's ruleset against the fake
// connection and compares every message with the one nft sent for the
// equivalent command (testdata/<case>.nlmsg, each message commented with its
// nft command).
func TestRulesetMessages(t *testing.T) {
	for _, tc := range testCases() {
		t.Run(tc.name, func(t *testing.T) {
			m, rec := newFakeManager(t)
			if m.Mode() != "" {
				t.Errorf("Mode before Apply = %q, want \"\"", m.Mode())
			}
			if err := m.Apply(tc.cfg); err != nil {
				t.Fatal(err)
			}
			batches := rec.take()
			want, mode := 2, "inet"
			if tc.cfg.Layout == LayoutSplit {
				want, mode = 1, "split (ip + ip6 nat tables)" // forced: no probe
			}
			if len(batches) != want {
				t.Fatalf("Apply sent %d batches, want %d (probe unless split, ruleset)", len(batches), want)
			}
			if want == 2 {
				compareWithNFT(t, batches[0], filepath.Join("testdata", "probe.nlmsg"), probeCommands())
			}
			compareWithNFT(t, batches[want-1], filepath.Join("testdata", tc.name+".nlmsg"), nftCommands(tc.cfg))
			if got := m.Mode(); got != mode {
				t.Errorf("Mode = %q, want %q", got, mode)
			}

			// The probe runs once per Manager.
			if err := m.Apply(tc.cfg); err != nil {
				t.Fatal(err)
			}
			if b := rec.take(); len(b) != 1 {
				t.Fatalf("second Apply sent %d batches, want 1", len(b))
			}
		})
	}
}

func compareWithNFT(t *testing.T, got []netlink.Message, path string, cmds []string) {
	t.Helper()
	want, err := readNlmsg(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != len(cmds) {
		t.Fatalf("%s holds %d messages, the reference model has %d commands: run TestCaptureNFT -update as root", path, len(want), len(cmds))
	}
	for i := range want {
		if want[i].cmd != cmds[i] {
			t.Fatalf("%s message %d is for %q, the reference model now says %q: run TestCaptureNFT -update as root", path, i, want[i].cmd, cmds[i])
		}
	}
	if len(got) != len(want) {
		t.Errorf("sent %d messages, nft sends %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if diff := diffMessage(got[i], want[i]); diff != "" {
			t.Errorf("message %d, nft %s:\n%s", i, want[i].cmd, diff)
		}
	}
}

// Attributes nft sends that the library does not, or that differ without
// changing what the kernel does. Everything else must be byte-identical,
// rule expressions included.
var ignoredAttrs = map[[2]uint16]string{
	{unix.NFT_MSG_NEWSET, unix.NFTA_SET_USERDATA}:  "nft's display hints (key byte order, auto-merge)",
	{unix.NFT_MSG_DELTABLE, unix.NFTA_TABLE_FLAGS}: "the library sends flags 0 with a delete; the kernel ignores them there",
}

// diffMessage returns "" when got matches nft's message, else a description.
func diffMessage(got netlink.Message, want nlmsg) string {
	if uint16(got.Header.Type) != want.typ {
		return fmt.Sprintf("message type %#04x, nft sends %#04x", uint16(got.Header.Type), want.typ)
	}
	if len(got.Data) < 4 || len(want.body) < 4 || !bytes.Equal(got.Data[:4], want.body[:4]) {
		return fmt.Sprintf("nfgenmsg header % x, nft sends % x", got.Data[:min(4, len(got.Data))], want.body[:min(4, len(want.body))])
	}
	msgType := want.typ & 0xff
	ga, err := canonicalAttrs(msgType, got.Data[4:])
	if err != nil {
		return "ours: " + err.Error()
	}
	wa, err := canonicalAttrs(msgType, want.body[4:])
	if err != nil {
		return "nft's: " + err.Error()
	}
	var b strings.Builder
	for _, typ := range attrTypes(ga, wa) {
		g, w := ga[typ], wa[typ]
		switch {
		case g == nil:
			fmt.Fprintf(&b, "attribute %d missing; nft sends:\n%s", typ, nfdump(w))
		case w == nil:
			fmt.Fprintf(&b, "attribute %d not sent by nft; ours:\n%s", typ, nfdump(g))
		case !bytes.Equal(g, w):
			fmt.Fprintf(&b, "attribute %d differs:\n%s", typ, linediff(nfdump(g), nfdump(w)))
		}
	}
	return b.String()
}

// canonicalAttrs decodes the top-level attributes by type (their order is not
// significant to the kernel), drops ignoredAttrs and canonicalises set
// elements.
func canonicalAttrs(msgType uint16, data []byte) (map[uint16][]byte, error) {
	attrs, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		return nil, err
	}
	out := map[uint16][]byte{}
	for _, a := range attrs {
		typ := a.Type & nlaTypeMask
		if _, ok := ignoredAttrs[[2]uint16{msgType, typ}]; ok {
			continue
		}
		d := a.Data
		if msgType == unix.NFT_MSG_NEWSETELEM && typ == unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			if d, err = canonicalElements(d); err != nil {
				return nil, err
			}
		}
		if msgType == unix.NFT_MSG_NEWRULE && typ == unix.NFTA_RULE_EXPRESSIONS {
			if d, err = canonicalDynsets(d); err != nil {
				return nil, err
			}
		}
		if _, dup := out[typ]; dup {
			return nil, fmt.Errorf("attribute %d twice", typ)
		}
		out[typ] = d
	}
	return out, nil
}

// canonicalDynsets re-encodes a rule's expression list with each lookup's
// attributes sorted by type and each dynset expression spelled as nft
// spells it: library v0.3.0 always sends
// NFTA_DYNSET_FLAGS (nft omits it when 0) and sends NFTA_DYNSET_EXPR
// without the nested flag; the kernel parses both the same way.
func canonicalDynsets(data []byte) ([]byte, error) {
	exprs, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		return nil, err
	}
	for i, e := range exprs {
		attrs, err := netlink.UnmarshalAttributes(e.Data)
		if err != nil {
			return nil, err
		}
		if len(attrs) == 2 && string(attrs[0].Data) == "lookup\x00" {
			// The library puts NFTA_LOOKUP_FLAGS first, nft last.
			op, err := netlink.UnmarshalAttributes(attrs[1].Data)
			if err != nil {
				return nil, err
			}
			slices.SortStableFunc(op, func(a, b netlink.Attribute) int { return int(a.Type&nlaTypeMask) - int(b.Type&nlaTypeMask) })
			if attrs[1].Data, err = netlink.MarshalAttributes(op); err != nil {
				return nil, err
			}
			if exprs[i].Data, err = netlink.MarshalAttributes(attrs); err != nil {
				return nil, err
			}
			continue
		}
		if len(attrs) != 2 || string(attrs[0].Data) != "dynset\x00" {
			continue
		}
		op, err := netlink.UnmarshalAttributes(attrs[1].Data)
		if err != nil {
			return nil, err
		}
		op = slices.DeleteFunc(op, func(a netlink.Attribute) bool {
			return a.Type&nlaTypeMask == unix.NFTA_DYNSET_FLAGS && bytes.Equal(a.Data, []byte{0, 0, 0, 0})
		})
		for j := range op {
			if op[j].Type&nlaTypeMask != unix.NFTA_DYNSET_EXPR {
				continue
			}
			op[j].Type = unix.NFTA_DYNSET_EXPR | unix.NLA_F_NESTED
			// A zero counter: the library sends packets 0 and bytes 0,
			// nft an empty NFTA_EXPR_DATA.
			inner, err := netlink.UnmarshalAttributes(op[j].Data)
			if err != nil {
				return nil, err
			}
			if len(inner) == 2 && string(inner[0].Data) == "counter\x00" {
				inner[1].Data, inner[1].Length = nil, 4
				if op[j].Data, err = netlink.MarshalAttributes(inner); err != nil {
					return nil, err
				}
				op[j].Length = uint16(4 + len(op[j].Data))
			}
		}
		if attrs[1].Data, err = netlink.MarshalAttributes(op); err != nil {
			return nil, err
		}
		attrs[1].Length = uint16(4 + len(attrs[1].Data))
		if exprs[i].Data, err = netlink.MarshalAttributes(attrs); err != nil {
			return nil, err
		}
		exprs[i].Length = uint16(4 + len(exprs[i].Data))
	}
	return netlink.MarshalAttributes(exprs)
}

// canonicalElements re-encodes a set element list with each element's
// attributes sorted by type, without NFTA_SET_ELEM_USERDATA (nft marks the
// open-ended last interval there for its listing) and with the nested flag
// cleared on NFTA_SET_ELEM_FLAGS (library v0.3.0 sets it; the kernel parses
// the attribute the same either way).
func canonicalElements(data []byte) ([]byte, error) {
	elems, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		return nil, err
	}
	for i, e := range elems {
		attrs, err := netlink.UnmarshalAttributes(e.Data)
		if err != nil {
			return nil, err
		}
		attrs = slices.DeleteFunc(attrs, func(a netlink.Attribute) bool {
			return a.Type&nlaTypeMask == unix.NFTA_SET_ELEM_USERDATA
		})
		for j := range attrs {
			if attrs[j].Type&nlaTypeMask == unix.NFTA_SET_ELEM_FLAGS {
				attrs[j].Type = unix.NFTA_SET_ELEM_FLAGS
			}
		}
		slices.SortStableFunc(attrs, func(a, b netlink.Attribute) int {
			return int(a.Type&nlaTypeMask) - int(b.Type&nlaTypeMask)
		})
		if elems[i].Data, err = netlink.MarshalAttributes(attrs); err != nil {
			return nil, err
		}
		elems[i].Length = uint16(4 + len(elems[i].Data))
	}
	return netlink.MarshalAttributes(elems)
}

func attrTypes(ms ...map[uint16][]byte) []uint16 {
	var types []uint16
	for _, m := range ms {
		for typ := range m {
			if !slices.Contains(types, typ) {
				types = append(types, typ)
			}
		}
	}
	slices.Sort(types)
	return types
}

// nfdump prints 4 bytes a line, like nft --debug=mnl.
func nfdump(b []byte) string {
	var s strings.Builder
	for i := 0; i < len(b); i += 4 {
		fmt.Fprintf(&s, "% x\n", b[i:min(i+4, len(b))])
	}
	return s.String()
}

// linediff shows two nfdumps side by side, flagging differing lines with "!".
func linediff(a, b string) string {
	var s strings.Builder
	s.WriteString("  ours -- nft\n")
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		mark := "  "
		if x != y {
			mark = "! "
		}
		fmt.Fprintf(&s, "%s%-11s -- %s\n", mark, x, y)
	}
	return s.String()
}

// splitCase is the test case that forces the split layout.
func splitCase(t *testing.T) Config {
	t.Helper()
	for _, tc := range testCases() {
		if tc.name == "split" {
			return tc.cfg
		}
	}
	t.Fatal("no split test case")
	return Config{}
}

// TestProbeUnsupported: on a kernel that refuses inet NAT, LayoutInet fails
// with ErrInetNATUnsupported after the probe alone, and LayoutAuto falls
// back to the split layout, byte for byte the forced one.
func TestProbeUnsupported(t *testing.T) {
	for _, refusal := range []error{unix.EOPNOTSUPP, unix.ENOENT} { // 4.18 says ENOENT: no nat chain type for inet
		t.Run(refusal.Error(), func(t *testing.T) {
			cfg := splitCase(t)
			cfg.Layout = LayoutInet
			m, rec := newFakeManager(t)
			rec.err = refusal
			err := m.Apply(cfg)
			if !errors.Is(err, ErrInetNATUnsupported) || !errors.Is(err, refusal) {
				t.Fatalf("Apply(LayoutInet) on a kernel without inet NAT: %v, want ErrInetNATUnsupported", err)
			}
			if !strings.HasPrefix(err.Error(), "nat: apply ruleset: ") {
				t.Errorf("error %q lacks the operation", err)
			}
			if b := rec.take(); len(b) != 1 {
				t.Fatalf("sent %d batches, want only the probe", len(b))
			}
			// The answer is kept: no second probe, the same refusal.
			if err := m.Apply(cfg); !errors.Is(err, ErrInetNATUnsupported) {
				t.Fatalf("second Apply(LayoutInet): %v", err)
			}
			if b := rec.take(); len(b) != 0 {
				t.Fatalf("second Apply sent %d batches, want none", len(b))
			}
			if m.Mode() != "" {
				t.Errorf("Mode after failed Applies = %q", m.Mode())
			}

			// Auto: the probe, then the split ruleset in one batch.
			cfg.Layout = LayoutAuto
			m, rec = newFakeManager(t)
			rec.err = refusal
			if err := m.Apply(cfg); err != nil {
				t.Fatalf("Apply(LayoutAuto) on a kernel without inet NAT: %v", err)
			}
			b := rec.take()
			if len(b) != 2 {
				t.Fatalf("sent %d batches, want probe and ruleset", len(b))
			}
			compareWithNFT(t, b[0], filepath.Join("testdata", "probe.nlmsg"), probeCommands())
			compareWithNFT(t, b[1], filepath.Join("testdata", "split.nlmsg"), nftCommands(splitCase(t)))
			if got, want := m.Mode(), "split (ip + ip6 nat tables)"; got != want {
				t.Errorf("Mode = %q, want %q", got, want)
			}
			if err := m.Apply(cfg); err != nil {
				t.Fatal(err)
			}
			if b := rec.take(); len(b) != 1 {
				t.Fatalf("second Apply sent %d batches, want 1 (no probe)", len(b))
			}
		})
	}
	// Other errors are not mistaken for an old kernel, nor remembered.
	m, rec := newFakeManager(t)
	rec.err = unix.EPERM
	if err := m.Apply(testCases()[0].cfg); err == nil || errors.Is(err, ErrInetNATUnsupported) || !errors.Is(err, unix.EPERM) {
		t.Fatalf("Apply with EPERM: %v", err)
	}
	if err := m.Apply(testCases()[0].cfg); err != nil {
		t.Fatalf("Apply after EPERM went away: %v", err)
	}
	if got := m.Mode(); got != "inet" {
		t.Errorf("Mode = %q, want inet", got)
	}
}

func TestRemoveMessages(t *testing.T) {
	m, rec := newFakeManager(t)
	for range 2 { // idempotent: the same transaction every time
		if err := m.Remove(); err != nil {
			t.Fatal(err)
		}
		b := rec.take()
		if len(b) != 1 {
			t.Fatalf("Remove sent %d batches", len(b))
		}
		compareWithNFT(t, b[0], filepath.Join("testdata", "remove.nlmsg"), removeCommands(DefaultTable))
	}
}
