package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

func testRand() *rand.Rand { return rand.New(rand.NewChaCha8([32]byte{1})) }

// wgChecker is wireguard-go's own responder-side MAC check for pub.
func wgChecker(pub [32]byte) *device.CookieChecker {
	var c device.CookieChecker
	c.Init(device.NoisePublicKey(pub))
	return &c
}

// TestMAC1AgainstWireGuardGo: our MAC1 is what wireguard-go's
// CookieGenerator writes and its CookieChecker accepts (the reference
// model is the implementation exitd runs).
func TestMAC1AgainstWireGuardGo(t *testing.T) {
	rnd := testRand()
	for i := range 20 {
		var pub [32]byte
		for j := range pub {
			pub[j] = byte(rnd.Uint32())
		}
		key := mac1Key(pub)
		msg := floodPayloads(floodInit, 1, rnd, &key, nil)[0]

		var gen device.CookieGenerator
		gen.Init(device.NoisePublicKey(pub))
		want := bytes.Clone(msg)
		clear(want[wgMAC1Offset:])
		gen.AddMacs(want) // no cookie yet: MAC2 stays zero
		if !bytes.Equal(msg, want) {
			t.Fatalf("key %d: ours\n%x\nwireguard-go\n%x", i, msg[wgMAC1Offset:], want[wgMAC1Offset:])
		}
		if !wgChecker(pub).CheckMAC1(msg) || !validMAC1(msg, &key) {
			t.Fatalf("key %d: MAC1 rejected", i)
		}
		msg[5] ^= 1
		if wgChecker(pub).CheckMAC1(msg) || validMAC1(msg, &key) {
			t.Fatalf("key %d: MAC1 accepted over a changed message", i)
		}
	}
}

// TestMAC1Vector pins one value: public key bytes 0..31, message bytes
// i%251. wireguard-go's CookieGenerator and, independently, Python's
// hashlib.blake2s(msg[:116], digest_size=16, key=blake2s(b"mac1----"+pub))
// both give 3a7d1b86....
func TestMAC1Vector(t *testing.T) {
	var pub [32]byte
	for i := range pub {
		pub[i] = byte(i)
	}
	msg := make([]byte, wgInitiationSize)
	for i := range msg {
		msg[i] = byte(i % 251)
	}
	var gen device.CookieGenerator
	gen.Init(device.NoisePublicKey(pub))
	ref := bytes.Clone(msg)
	gen.AddMacs(ref)
	key := mac1Key(pub)
	got := mac1(msg, &key)
	if hex.EncodeToString(got[:]) != "3a7d1b865f062f4af4677f1d88d7ea74" {
		t.Fatalf("mac1 = %x", got)
	}
	if !bytes.Equal(got[:], ref[wgMAC1Offset:wgMAC2Offset]) {
		t.Fatalf("mac1 = %x, wireguard-go %x", got, ref[wgMAC1Offset:wgMAC2Offset])
	}
	if validMAC1(msg[:100], &key) {
		t.Fatal("a short message has no valid MAC1")
	}
}

func TestFloodPayloads(t *testing.T) {
	var pub [32]byte
	pub[0] = 9
	key := mac1Key(pub)
	check := wgChecker(pub)
	captured := floodPayloads(floodInit, 1, testRand(), &key, nil)[0]

	for _, tc := range []struct {
		kind      string
		n, wantN  int
		wantValid bool
	}{
		{floodInit, 100, 100, true},
		{floodBadMAC, 100, 100, false},
		{floodReplay, 100, 1, true},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			ps := floodPayloads(tc.kind, tc.n, testRand(), &key, captured)
			if len(ps) != tc.wantN {
				t.Fatalf("%d payloads, want %d", len(ps), tc.wantN)
			}
			seen := map[string]bool{}
			for i, p := range ps {
				if len(p) != wgInitiationSize || binary.LittleEndian.Uint32(p) != wgTypeInitiation {
					t.Fatalf("payload %d: len %d type %d", i, len(p), binary.LittleEndian.Uint32(p))
				}
				if check.CheckMAC1(p) != tc.wantValid {
					t.Fatalf("payload %d: wireguard-go CheckMAC1 = %v", i, !tc.wantValid)
				}
				if !bytes.Equal(p[wgMAC2Offset:], make([]byte, 16)) {
					t.Fatalf("payload %d: MAC2 not zero", i)
				}
				seen[string(p[4:8])] = true // sender index
			}
			if len(seen) != len(ps) {
				t.Errorf("%d distinct sender indexes of %d", len(seen), len(ps))
			}
			if tc.kind == floodReplay && !bytes.Equal(ps[0], captured) {
				t.Error("replay payload is not the captured message")
			}
		})
	}
}

// ipv4UDP builds an IPv4/UDP packet to dport carrying payload.
func ipv4UDP(dport uint16, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[6:], 0x4000) // DF
	binary.BigEndian.PutUint16(p[20:], 51820)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

func TestInitiationIn(t *testing.T) {
	init := make([]byte, wgInitiationSize)
	init[0] = wgTypeInitiation
	init[10] = 0xaa
	good := ipv4UDP(443, init)
	withOptions := func() []byte { // IHL 6: 4 bytes of options
		p := append(append(append([]byte(nil), good[:20]...), 1, 1, 1, 1), good[20:]...)
		p[0] = 0x46
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		return p
	}
	mut := func(f func(p []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"initiation", good, true},
		{"with IP options", withOptions(), true},
		{"trailing link padding", append(bytes.Clone(good), 0, 0, 0, 0), true},
		{"other port", ipv4UDP(444, init), false},
		{"response type", ipv4UDP(443, append([]byte{wgTypeResponse}, init[1:]...)), false},
		{"type with high bytes", mut(func(p []byte) []byte { p[29] = 1; return p }), false},
		{"short message", ipv4UDP(443, init[:147]), false},
		{"long message", ipv4UDP(443, append(bytes.Clone(init), 0)), false},
		{"TCP", mut(func(p []byte) []byte { p[9] = 6; return p }), false},
		{"IPv6 version", mut(func(p []byte) []byte { p[0] = 0x65; return p }), false},
		{"IHL below 5", mut(func(p []byte) []byte { p[0] = 0x44; return p }), false},
		{"truncated", good[:100], false},
		{"more fragments", mut(func(p []byte) []byte { p[6] |= 0x20; return p }), false},
		{"fragment offset", mut(func(p []byte) []byte { p[7] = 1; return p }), false},
		{"UDP length beyond packet", mut(func(p []byte) []byte { binary.BigEndian.PutUint16(p[24:], 500); return p }), false},
		{"UDP length below header", mut(func(p []byte) []byte { binary.BigEndian.PutUint16(p[24:], 4); return p }), false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, ok := initiationIn(tc.p, 443)
			if ok != tc.want {
				t.Fatalf("ok = %v, want %v", ok, tc.want)
			}
			if ok && !bytes.Equal(msg, init) {
				t.Fatalf("message %x", msg)
			}
		})
	}
}

func FuzzInitiationIn(f *testing.F) {
	init := make([]byte, wgInitiationSize)
	init[0] = wgTypeInitiation
	f.Add(ipv4UDP(443, init))
	f.Add(ipv4UDP(443, init[:20]))
	f.Add([]byte{0x4f, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		msg, ok := initiationIn(p, 443)
		if ok && (len(msg) != wgInitiationSize || msg[0] != wgTypeInitiation) {
			t.Fatalf("accepted %x", msg)
		}
	})
}

func TestPacer(t *testing.T) {
	for _, rate := range []float64{20_000, 50_000, 100_000} {
		start := time.Unix(0, 0)
		now := start
		p := newPacer(rate, max(128, int(rate/50)), now)
		sent := 0
		for now.Sub(start) < time.Second {
			n, wait := p.take(now, 64)
			if n == 0 {
				if wait <= 0 {
					t.Fatalf("rate %v: nothing to send and no wait", rate)
				}
				now = now.Add(wait)
				continue
			}
			sent += n
		}
		if math.Abs(float64(sent)-rate) > 64 {
			t.Errorf("rate %v: %d packets in 1 s", rate, sent)
		}
	}
}

// TestPacerLateWakeup: a sender that oversleeps catches up by at most the
// burst, and the average over time stays at the rate.
func TestPacerLateWakeup(t *testing.T) {
	start := time.Unix(0, 0)
	p := newPacer(50_000, 1000, start)
	now := start.Add(time.Second) // slept a whole second
	got := 0
	for {
		n, _ := p.take(now, 64)
		if n == 0 {
			break
		}
		got += n
	}
	if got > 1000 || got < 1000-64 {
		t.Fatalf("after a late wake-up %d packets at once, want the burst (1000)", got)
	}
	if n, wait := p.take(now, 64); n != 0 || wait <= 0 || wait > 64*time.Second/50_000+time.Microsecond {
		t.Fatalf("empty bucket: n %d wait %v", n, wait)
	}
	if allocs := testing.AllocsPerRun(100, func() { p.take(now, 64) }); allocs != 0 {
		t.Fatalf("take allocates %v times", allocs)
	}
}

func TestFloodOptsCheck(t *testing.T) {
	good := floodOpts{rates: []int{20_000, 50_000, 100_000}, kinds: []string{floodInit, floodReplay},
		secs: 10, omit: 1, reps: 1, sources: 4096, senders: 1, batch: 64, shape: "member"}
	if err := good.check(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*floodOpts)
		want string
	}{
		{"rate 0", func(o *floodOpts) { o.rates = []int{0} }, "--rates"},
		{"rate too high", func(o *floodOpts) { o.rates = []int{1_000_000} }, "--rates"},
		{"unknown kind", func(o *floodOpts) { o.kinds = []string{"syn"} }, `unknown kind "syn"`},
		{"long run", func(o *floodOpts) { o.secs = 600 }, "--seconds"},
		{"omit all", func(o *floodOpts) { o.omit = 10 }, "--omit"},
		{"no reps", func(o *floodOpts) { o.reps = 0 }, "--reps"},
		{"too many sources", func(o *floodOpts) { o.sources = 40_000 }, "--sources"},
		{"three senders", func(o *floodOpts) { o.senders = 3 }, "--senders"},
		{"batch", func(o *floodOpts) { o.batch = 0 }, "--batch"},
		{"shape", func(o *floodOpts) { o.shape = "hub" }, "--shape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.mod(&o)
			if err := o.check(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFloodPlan(t *testing.T) {
	plan := floodPlan(floodOpts{rates: []int{20_000, 50_000}, kinds: []string{floodInit, floodReplay}, reps: 2})
	var got []string
	for _, p := range plan {
		got = append(got, fmt.Sprintf("%s@%d", p.Kind, p.Rate))
	}
	if len(plan) != 2*(1+4)+1 || plan[0].Kind != floodNone || plan[len(plan)-1].Kind != floodNone || plan[5].Kind != floodNone {
		t.Fatalf("plan %v", got)
	}
	if plan[1].Kind != floodInit || plan[1].Rate != 20_000 || plan[4].Kind != floodReplay || plan[4].Rate != 50_000 {
		t.Fatalf("plan %v", got)
	}
}

func TestPartition(t *testing.T) {
	s := []int{0, 1, 2, 3, 4}
	a, b := partition(s, 0, 2), partition(s, 1, 2)
	if len(a)+len(b) != 5 || a[0] != 0 || b[0] != len(a) || len(partition(s, 0, 1)) != 5 {
		t.Fatalf("%v %v", a, b)
	}
}

func TestFloodSummaryAndTable(t *testing.T) {
	r := &floodReport{Seconds: 10, Reps: 1, TBFMbps: 100, Shape: "member", Runs: []floodRun{
		{Rep: 1, Kind: floodNone, GoodputMbps: 94, RSSPeakMiB: 30, Alive: true, StatusOK: true},
		{Rep: 1, Kind: floodInit, Rate: 20_000, AchievedPPS: 20_000, GoodputMbps: 93, RSSPeakMiB: 60, CookiePPS: 15_000, Alive: true, StatusOK: true},
		{Rep: 1, Kind: floodInit, Rate: 50_000, AchievedPPS: 49_900, GoodputMbps: 90, RSSPeakMiB: 80, CookiePPS: 40_000, Alive: true, StatusOK: true},
		{Rep: 1, Kind: floodReplay, Rate: 50_000, AchievedPPS: 30_000, GoodputMbps: 80, RSSPeakMiB: 90, Alive: true, StatusOK: true},
		{Rep: 1, Kind: floodNone, GoodputMbps: 96, RSSPeakMiB: 32, Alive: true, StatusOK: true},
	}}
	r.summarise()
	v := r.Verdict
	if r.NoFloodMbps != 95 || v.GoodputAt50k[floodInit] < 0.94 || v.GoodputAt50k[floodReplay] > 0.85 {
		t.Fatalf("no flood %v, at 50k %v", r.NoFloodMbps, v.GoodputAt50k)
	}
	if v.GoodputOK || !v.NoCrash || !v.RSSBounded || v.Pass || v.RSSBaseMiB != 30 || v.RSSFloodMiB != 90 || v.RSSFirstRep != 90 {
		t.Fatalf("verdict %+v", v)
	}
	if len(r.Rows) != 4 || r.Rows[0].Kind != floodNone || r.Rows[0].Runs != 2 {
		t.Fatalf("rows %+v", r.Rows)
	}
	var b bytes.Buffer
	printFloodReport(&b, r)
	s := b.String()
	for _, want := range []string{"49900", "0.95", "40000", "FAIL", "replay at 50k/s: 0.84", "reached 30000 of 50000/s"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in\n%s", want, s)
		}
	}

	r.Runs[3].GoodputMbps, r.Runs[3].AchievedPPS = 93, 50_000
	r.Runs[2].Alive = false
	r.summarise()
	if r.Verdict.NoCrash || r.Verdict.Pass || !r.Verdict.GoodputOK {
		t.Fatalf("crash not judged: %+v", r.Verdict)
	}
	r.Runs[2].Alive = true
	r.Runs[3].RSSPeakMiB = floodRSSCeiling + 1
	r.summarise()
	if r.Verdict.RSSBounded || r.Verdict.Pass {
		t.Fatalf("RSS above the ceiling not judged: %+v", r.Verdict)
	}
	r.Runs[3].RSSPeakMiB = 90
	// A second rep whose flood peak keeps growing.
	r.Reps = 2
	r.Runs = append(r.Runs, floodRun{Rep: 2, Kind: floodInit, Rate: 50_000, AchievedPPS: 50_000, GoodputMbps: 94,
		RSSPeakMiB: 120, Alive: true, StatusOK: true})
	r.summarise()
	if r.Verdict.RSSBounded || r.Verdict.RSSLastRep != 120 || !strings.Contains(strings.Join(r.Verdict.Notes, "\n"), "rep 2 120 MiB") {
		t.Fatalf("RSS growth across reps not judged: %+v", r.Verdict)
	}
	r.Runs[len(r.Runs)-1].RSSPeakMiB = 95
	r.summarise()
	if !r.Verdict.Pass {
		t.Fatalf("want a pass: %+v", r.Verdict)
	}
}
