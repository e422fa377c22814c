package etcdstore

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"exitd/keys"
	"exitd/members"
)

func TestParseKey(t *testing.T) {
	ks := keyspace("/exitd/c1/")
	var pub keys.Key
	pub[0], pub[31] = 1, 2
	tests := []struct {
		key   string
		kind  kind
		slot  uint32
		label string
	}{
		{"/exitd/c1/meta", kindMeta, 0, ""},
		{"/exitd/c1/slots/0000000002", kindSlot, 2, ""},
		{"/exitd/c1/slots/4294967295", kindSlot, 4294967295, ""},
		{"/exitd/c1/labels/alice@example.org", kindLabel, 0, "alice@example.org"},
		{"/exitd/c1/keys/" + hex.EncodeToString(pub[:]), kindKey, 0, ""},
		{"/exitd/c1/nodes/exit-1", kindNode, 0, ""},
		{"/exitd/c1/slots/2", kindForeign, 0, ""},
		{"/exitd/c1/slots/4294967296", kindForeign, 0, ""},
		{"/exitd/c1/slots/00000000x2", kindForeign, 0, ""},
		{"/exitd/c1/labels/a b", kindForeign, 0, ""},
		{"/exitd/c1/labels/", kindForeign, 0, ""},
		{"/exitd/c1/keys/0102", kindForeign, 0, ""},
		{"/exitd/c1/metadata", kindForeign, 0, ""},
		{"/exitd/c1", kindForeign, 0, ""},
		{"/exitd/c2/meta", kindForeign, 0, ""},
	}
	for _, tc := range tests {
		k, slot, label, p := ks.parseKey(tc.key)
		if k != tc.kind || slot != tc.slot || label != tc.label || k == kindKey && p != pub {
			t.Errorf("parseKey(%q) = %v %d %q %v, want %v %d %q", tc.key, k, slot, label, p, tc.kind, tc.slot, tc.label)
		}
	}
	if got := ks.slot(7); got != "/exitd/c1/slots/0000000007" {
		t.Errorf("slot key %q", got)
	}
}

func TestSlotValueRoundTrip(t *testing.T) {
	priv, _ := keys.Generate(nil)
	m := &members.Member{ID: 5, Index: 5, Label: "alice", PublicKey: priv.Public(), PrivateKey: &priv,
		IPv4: netip.MustParseAddr("10.99.0.5"), Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Weight: 3, MaxConns: 900}
	v, err := encodeSlot(members.Record{Slot: 5, Member: m})
	if err != nil || bytes.Contains(v, []byte(priv.String())) {
		t.Fatalf("encoded %s %v (must not hold the private key)", v, err)
	}
	rec, err := decodeSlot(5, 9, v)
	if err != nil || rec.Rev != 9 || rec.Member.Label != "alice" || rec.Member.MaxConns != 900 || rec.Member.PrivateKey != nil {
		t.Fatalf("%+v %v", rec, err)
	}
	freed := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	v, _ = encodeSlot(members.Record{Slot: 5, Freed: freed})
	if rec, err := decodeSlot(5, 9, v); err != nil || !rec.Freed.Equal(freed) || rec.Member != nil {
		t.Fatalf("%+v %v", rec, err)
	}
	if v, _ := encodeSlot(members.Record{Slot: 5}); v != nil {
		t.Fatalf("a slot without a record encodes as %q", v)
	}
	for _, bad := range []string{
		``, `{}`, `null`, `{"x":1}`, `{"freed":"0001-01-01T00:00:00Z"}`,
		`{"member":{"label":"a","index":5}}`,                                                                              // no key
		`{"member":{"label":"a b","index":5,"public_key":"` + priv.Public().String() + `"}}`,                              // bad label
		`{"member":{"label":"a","index":6,"public_key":"` + priv.Public().String() + `"}}`,                                // other slot
		`{"member":{"label":"a","index":5,"public_key":"` + priv.Public().String() + `"},"freed":"2026-01-01T00:00:00Z"}`, // both
	} {
		if rec, err := decodeSlot(5, 1, []byte(bad)); err == nil {
			t.Errorf("%q decoded as %+v", bad, rec)
		}
	}
}

// FuzzDecodeSlot: values under the prefix are not trusted; decoding never
// panics, and what decodes encodes back to the same record.
func FuzzDecodeSlot(f *testing.F) {
	f.Add([]byte(`{"freed":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"member":{"label":"a","index":5,"public_key":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAI="}}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		rec, err := decodeSlot(5, 1, v)
		if err != nil {
			return
		}
		w, err := encodeSlot(rec)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeSlot(5, 1, w)
		if err != nil || (again.Member == nil) != (rec.Member == nil) || !again.Freed.Equal(rec.Freed) {
			t.Fatalf("%q -> %q -> %+v %v", v, w, again, err)
		}
	})
}

// TestSplit: batches are cut to etcd's op and size limits.
func TestSplit(t *testing.T) {
	add := func(n int, label string) []members.Op {
		ops := make([]members.Op, n)
		for i := range ops {
			var k keys.Key
			k[0], k[1] = byte(i), byte(i>>8)
			m := &members.Member{Index: uint32(i + 2), Label: fmt.Sprintf("%s%d", label, i), PublicKey: k}
			ops[i] = members.Op{Prev: members.Record{Slot: m.Index}, Next: members.Record{Slot: m.Index, Member: m}}
		}
		return ops
	}
	remove := func(ops []members.Op) []members.Op {
		out := make([]members.Op, len(ops))
		for i, op := range ops {
			out[i] = members.Op{Prev: op.Next, Next: members.Record{Slot: op.Next.Slot, Freed: time.Unix(1, 0)}}
		}
		return out
	}
	tests := []struct {
		name      string
		ops       []members.Op
		txnOps    int
		reqBytes  int
		wantSizes []int
	}{
		{"one txn", add(42, "m"), 128, 0, []int{42}},
		{"adds at 128 ops", add(100, "m"), 128, 0, []int{42, 42, 16}},
		{"removes at 128 ops", remove(add(100, "m")), 128, 0, []int{42, 42, 16}},
		{"adds at 12 ops", add(10, "m"), 12, 0, []int{4, 4, 2}},
		{"request size", add(10, strings.Repeat("l", 60)), 128, 4096 + 3000, []int{3, 3, 3, 1}},
		{"empty", nil, 128, 0, nil},
	}
	for _, tc := range tests {
		s := &Store{ks: "/exitd/", opts: Options{MaxTxnOps: tc.txnOps, MaxRequestBytes: tc.reqBytes}}
		if s.opts.MaxRequestBytes == 0 {
			s.opts.MaxRequestBytes = 3 << 19
		}
		ends, err := s.split(tc.ops)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var sizes []int
		prev := 0
		for _, e := range ends {
			sizes = append(sizes, e-prev)
			prev = e
		}
		if fmt.Sprint(sizes) != fmt.Sprint(tc.wantSizes) {
			t.Errorf("%s: transactions of %v, want %v", tc.name, sizes, tc.wantSizes)
		}
	}
}

// TestClientLogsAtDebug: the etcd client's zap records reach the injected
// logger, at debug level only.
func TestClientLogsAtDebug(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	newZap(log).With(zap.String("endpoint", "e1")).Warn("retrying", zap.String("err", "refused"))
	out := buf.String()
	for _, want := range []string{"level=DEBUG", "msg=retrying", "component=etcd-client", "endpoint=e1", "err=refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("%q lacks %q", out, want)
		}
	}
	buf.Reset()
	quiet := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	newZap(quiet).Error("noise")
	if buf.Len() != 0 {
		t.Errorf("client record above debug level: %q", buf.String())
	}
}
