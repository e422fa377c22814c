package etcdstore

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"exitd/keys"
	"exitd/members"
)

// Key layout under the prefix P (always ending in "/"):
//
//	P meta                {"format":"exitd-members","version":1,"layout":"ipv4 10.99.0.0/16 ipv6 fd00:99::/64"}
//	P slots/0000000002    {"member":{…Member JSON, no private key…}}  or  {"freed":"2026-11-22T08:00:00Z"}
//	P labels/alice        "2"  (the slot holding the label)
//	P keys/<pubkey hex>   "2"  (the slot holding the public key)
//	P nodes/…             reserved for node registration
//
// A slot key holds its member, or after a removal the time its member left
// (the quarantine, cluster-wide); it is deleted only when an add that never
// completed is undone. A member enters with one transaction that requires
// its slot unchanged (ModRevision, or CreateRevision 0 for a slot never
// written) and its label and key unclaimed (CreateRevision 0), and writes
// all three; it leaves with one that requires the slot unchanged, writes
// the quarantine and deletes the claims.

const (
	formatName    = "exitd-members"
	formatVersion = 1
	slotDigits    = 10 // a uint32 in decimal, zero-padded so keys sort by slot
)

// ErrForeignData: the prefix holds keys or values exitd did not write.
var ErrForeignData = errors.New("prefix holds data that is not exitd's member store")

type meta struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Layout  string `json:"layout"`
}

// slotValue is a slot key's value: exactly one field is set.
type slotValue struct {
	Member *members.Member `json:"member,omitempty"`
	Freed  *time.Time      `json:"freed,omitempty"`
}

// keyspace names the keys under one prefix.
type keyspace string

func (p keyspace) meta() string          { return string(p) + "meta" }
func (p keyspace) slots() string         { return string(p) + "slots/" }
func (p keyspace) slot(i uint32) string  { return fmt.Sprintf("%sslots/%0*d", p, slotDigits, i) }
func (p keyspace) label(l string) string { return string(p) + "labels/" + l }
func (p keyspace) key(k keys.Key) string { return string(p) + "keys/" + hex.EncodeToString(k[:]) }
func slotText(i uint32) string           { return strconv.FormatUint(uint64(i), 10) }
func encodeMeta(layout string) ([]byte, error) {
	return json.Marshal(meta{formatName, formatVersion, layout})
}

// encodeSlot is a record as stored; nil for a slot without a record.
func encodeSlot(rec members.Record) ([]byte, error) {
	switch {
	case rec.Member != nil:
		m := *rec.Member
		m.PrivateKey = nil // never leaves the node
		return json.Marshal(slotValue{Member: &m})
	case !rec.Freed.IsZero():
		t := rec.Freed.UTC()
		return json.Marshal(slotValue{Freed: &t})
	}
	return nil, nil
}

// decodeSlot parses a slot key's value.
func decodeSlot(slot uint32, rev int64, v []byte) (members.Record, error) {
	var sv slotValue
	if err := json.Unmarshal(v, &sv); err != nil {
		return members.Record{}, err
	}
	rec := members.Record{Slot: slot, Rev: rev}
	switch {
	case sv.Member != nil && sv.Freed == nil:
		m := sv.Member
		if m.Index != slot {
			return members.Record{}, fmt.Errorf("member %q says slot %d", m.Label, m.Index)
		}
		if err := members.CheckLabel(m.Label); err != nil {
			return members.Record{}, err
		}
		if m.PublicKey.IsZero() {
			return members.Record{}, errors.New("member without a public key")
		}
		m.PrivateKey = nil
		rec.Member = m
	case sv.Freed != nil && sv.Member == nil && !sv.Freed.IsZero():
		rec.Freed = *sv.Freed
	default:
		return members.Record{}, errors.New("neither a member nor a quarantine")
	}
	return rec, nil
}

// kind of key under the prefix.
type kind int

const (
	kindForeign kind = iota
	kindMeta
	kindSlot
	kindLabel
	kindKey
	kindNode
)

// parseKey classifies a key under the prefix; name is the slot, label or
// key it names.
func (p keyspace) parseKey(k string) (kind, uint32, string, keys.Key) {
	rel, ok := strings.CutPrefix(k, string(p))
	if !ok {
		return kindForeign, 0, "", keys.Key{}
	}
	switch {
	case rel == "meta":
		return kindMeta, 0, "", keys.Key{}
	case strings.HasPrefix(rel, "slots/"):
		if s, ok := parseSlot(rel[len("slots/"):]); ok {
			return kindSlot, s, "", keys.Key{}
		}
	case strings.HasPrefix(rel, "labels/"):
		if l := rel[len("labels/"):]; members.CheckLabel(l) == nil {
			return kindLabel, 0, l, keys.Key{}
		}
	case strings.HasPrefix(rel, "keys/"):
		b, err := hex.DecodeString(rel[len("keys/"):])
		var pub keys.Key
		if err == nil && len(b) == len(pub) {
			copy(pub[:], b)
			return kindKey, 0, "", pub
		}
	case strings.HasPrefix(rel, "nodes/"):
		return kindNode, 0, "", keys.Key{}
	}
	return kindForeign, 0, "", keys.Key{}
}

func parseSlot(s string) (uint32, bool) {
	if len(s) != slotDigits {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

func parseSlotText(v []byte) (uint32, bool) {
	n, err := strconv.ParseUint(string(v), 10, 32)
	return uint32(n), err == nil
}
