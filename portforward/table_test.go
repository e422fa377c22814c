package portforward

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestNewTableOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*TableOptions)
		inst    Installer
		wantErr string // "" means success
	}{
		{"defaults", func(o *TableOptions) { *o = TableOptions{FirstPort: 1, LastPort: 1} }, nil, ""},
		{"one port", func(o *TableOptions) { o.LastPort = o.FirstPort }, nil, ""},
		{"whole range", func(o *TableOptions) { o.FirstPort, o.LastPort = 1, 65535 }, nil, ""},
		{"no range", func(o *TableOptions) { o.FirstPort, o.LastPort = 0, 0 }, nil, "port range 0-0 is empty"},
		{"port 0 in range", func(o *TableOptions) { o.FirstPort = 0 }, nil, "port range 0-40009 is empty"},
		{"reversed", func(o *TableOptions) { o.FirstPort, o.LastPort = 5, 4 }, nil, "port range 5-4 is empty"},
		{"negative max", func(o *TableOptions) { o.MaxPerMember = -1 }, nil, "negative limit"},
		{"negative rate", func(o *TableOptions) { o.CreateRate = -1 }, nil, "negative limit"},
		{"negative burst", func(o *TableOptions) { o.CreateBurst = -1 }, nil, "negative limit"},
		{"lifetime under a second", func(o *TableOptions) { o.MaxLifetime = time.Millisecond }, nil, "under a second"},
		{"no installer", func(*TableOptions) {}, Installer(nil), "no Installer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			tc.mod(&o)
			inst := tc.inst
			if inst == nil && tc.name != "no installer" {
				inst = &fakeInstaller{}
			}
			_, err := NewTable(o, inst, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewTableDefaults(t *testing.T) {
	tb, err := NewTable(TableOptions{FirstPort: 1, LastPort: 100}, &fakeInstaller{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := tb.opts
	if o.MaxPerMember != DefaultMaxPerMember || o.MaxLifetime != DefaultMaxLifetime ||
		o.CreateRate != DefaultCreateRate || o.CreateBurst != 2*DefaultMaxPerMember || tb.maxLifetime != 7200 {
		t.Errorf("defaults not applied: %+v", o)
	}
}

// TestNewTableInstallsEmptySet: a fresh table replaces whatever an earlier
// run left installed.
func TestNewTableInstallsEmptySet(t *testing.T) {
	f := newFixture(t, testOptions())
	if calls, last := f.inst.state(); calls != 1 || len(last) != 0 {
		t.Errorf("Apply called %d times with %v, want once with nothing", calls, last)
	}
	if saves, _ := f.store.state(); saves != 0 {
		t.Errorf("nothing changed, yet %d saves", saves)
	}
}

func TestNewTableApplyFails(t *testing.T) {
	_, err := NewTable(testOptions(), &fakeInstaller{fail: errBoom}, nil)
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "install restored mappings") {
		t.Fatalf("error %v", err)
	}
}

// TestMapPolicy covers each rule of §3.3 and of the policy, in order, as
// one scenario per case.
func TestMapPolicy(t *testing.T) {
	type step struct {
		r       req
		wantExt uint16 // 0: any
		life    uint32
		res     ResultCode
	}
	for _, tc := range []struct {
		name  string
		mod   func(*TableOptions)
		steps []step
	}{
		{"suggested port honoured", nil, []step{
			{r: req{port: 6881, suggested: 40005, lifetime: 600}, wantExt: 40005, life: 600},
		}},
		{"no suggestion: internal port if in range", nil, []step{
			{r: req{port: 40003, lifetime: 600}, wantExt: 40003, life: 600},
		}},
		{"no suggestion, internal port out of range: scan from its position", nil, []step{
			// 6881 % 10 = 1 → 40001
			{r: req{port: 6881, lifetime: 600}, wantExt: 40001, life: 600},
		}},
		{"suggestion out of range: scan from its position", nil, []step{
			{r: req{port: 6881, suggested: 1234, lifetime: 600}, wantExt: 40004, life: 600},
		}},
		{"suggested port taken: next free, wrapping", nil, []step{
			{r: req{port: 1, suggested: 40009, lifetime: 600}, wantExt: 40009, life: 600},
			{r: req{member: "bob", port: 1, suggested: 40009, lifetime: 600}, wantExt: 40000, life: 600},
		}},
		{"lifetime clamped to the maximum", nil, []step{
			{r: req{port: 1, lifetime: 0xffffffff}, life: 3600},
		}},
		{"lifetime of one second", nil, []step{
			{r: req{port: 1, lifetime: 1}, life: 1},
		}},
		{"renewal keeps the external port whatever the suggestion", nil, []step{
			{r: req{port: 6881, suggested: 40002, lifetime: 600}, wantExt: 40002, life: 600},
			{r: req{port: 6881, suggested: 40007, lifetime: 1200}, wantExt: 40002, life: 1200},
		}},
		{"same internal port, other protocol: separate mapping", nil, []step{
			{r: req{proto: TCP, port: 6881, suggested: 40002, lifetime: 600}, wantExt: 40002, life: 600},
			{r: req{proto: UDP, port: 6881, suggested: 40002, lifetime: 600}, wantExt: 40002, life: 600},
		}},
		{"companion port reserved for its member (§3.3)", nil, []step{
			{r: req{proto: TCP, port: 80, suggested: 40000, lifetime: 600}, wantExt: 40000, life: 600},
			{r: req{member: "bob", proto: UDP, port: 80, suggested: 40000, lifetime: 600}, wantExt: 40001, life: 600},
			{r: req{proto: UDP, port: 81, suggested: 40000, lifetime: 600}, wantExt: 40000, life: 600},
		}},
		{"a member cannot take another's port", nil, []step{
			{r: req{port: 1, suggested: 40000, lifetime: 600}, wantExt: 40000, life: 600},
			{r: req{member: "bob", port: 1, suggested: 40000, lifetime: 600}, wantExt: 40001, life: 600},
		}},
		{"internal port 0 with a lifetime: refused", nil, []step{
			{r: req{port: 0, suggested: 40000, lifetime: 600}, res: ResultRefused},
		}},
		{"per-member maximum: out of resources, others unaffected", nil, []step{
			{r: req{port: 1, lifetime: 600}, life: 600},
			{r: req{port: 2, lifetime: 600}, life: 600},
			{r: req{proto: UDP, port: 3, lifetime: 600}, life: 600},
			{r: req{proto: UDP, port: 4, lifetime: 600}, life: 600},
			{r: req{port: 5, lifetime: 600}, res: ResultOutOfResources},
			{r: req{port: 1, lifetime: 900}, life: 900}, // renewal at the maximum is fine
			{r: req{member: "bob", port: 5, lifetime: 600}, life: 600},
		}},
		{"range exhausted: out of resources", func(o *TableOptions) { o.LastPort = o.FirstPort + 1 }, []step{
			{r: req{port: 1, lifetime: 600}, life: 600},
			{r: req{port: 2, lifetime: 600}, life: 600},
			{r: req{member: "bob", port: 1, lifetime: 600}, res: ResultOutOfResources},
			{r: req{member: "bob", proto: UDP, port: 1, lifetime: 600}, res: ResultOutOfResources},
			{r: req{proto: UDP, port: 1, lifetime: 600}, life: 600}, // alice's companion ports are hers
		}},
		{"delete: result 0, port and lifetime 0", nil, []step{
			{r: req{port: 6881, suggested: 40004, lifetime: 600}, wantExt: 40004, life: 600},
			{r: req{port: 6881, suggested: 40004}},
			{r: req{member: "bob", port: 9, suggested: 40004, lifetime: 600}, wantExt: 40004, life: 600},
		}},
		{"delete what does not exist: success", nil, []step{
			{r: req{port: 6881}},
			{r: req{port: 0}},
		}},
		{"creation rate limits new mappings only", func(o *TableOptions) { o.CreateRate, o.CreateBurst = 0.001, 2 }, []step{
			{r: req{port: 1, lifetime: 600}, life: 600},
			{r: req{port: 2, lifetime: 600}, life: 600},
			{r: req{port: 3, lifetime: 600}, res: ResultOutOfResources},
			{r: req{port: 1, lifetime: 600}, life: 600}, // renewal
			{r: req{port: 1}}, // deletion
			{r: req{port: 1, lifetime: 600}, res: ResultOutOfResources},
			{r: req{member: "bob", port: 1, lifetime: 600}, life: 600}, // per member
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			if tc.mod != nil {
				tc.mod(&o)
			}
			f := newFixture(t, o)
			for i, s := range tc.steps {
				ext, life, res := f.do(s.r)
				if res != s.res || life != s.life || (s.wantExt != 0 && ext != s.wantExt) ||
					(res != ResultSuccess || s.life == 0) != (ext == 0) {
					t.Fatalf("step %d %+v: ext %d life %d %v; want ext %d life %d %v",
						i, s.r, ext, life, res, s.wantExt, s.life, s.res)
				}
				if ext != 0 && (ext < o.FirstPort || ext > o.LastPort) {
					t.Fatalf("step %d: external port %d out of range", i, ext)
				}
			}
			if err := checkMappings(f.t.List()); err != nil {
				t.Errorf("table inconsistent: %v", err)
			}
		})
	}
}

func TestRenewal(t *testing.T) {
	f := newFixture(t, testOptions())
	ext := f.mustMap(t, req{port: 6881, lifetime: 60})
	calls, _ := f.inst.state()
	saves, _ := f.store.state()
	f.clock.Advance(30 * time.Second)
	if e, life, res := f.do(req{port: 6881, lifetime: 120}); e != ext || life != 120 || res != ResultSuccess {
		t.Fatalf("renewal: %d %d %v", e, life, res)
	}
	if c, _ := f.inst.state(); c != calls {
		t.Errorf("a renewal called Apply (%d → %d calls)", calls, c)
	}
	if s, _ := f.store.state(); s != saves {
		t.Error("a renewal saved at once; it should wait for Expire")
	}
	want := epoch0.Add(150 * time.Second)
	if ms := f.t.List(); len(ms) != 1 || !ms[0].Expires.Equal(want) {
		t.Fatalf("after renewal: %+v, want expiry %v", ms, want)
	}
	// The renewal reaches the store at the next Expire.
	if err := f.t.Expire(); err != nil {
		t.Fatal(err)
	}
	if s, saved := f.store.state(); s != saves+1 || !sameMappings(saved, f.t.List()) {
		t.Errorf("Expire did not save the renewal: %d saves, %+v", s, saved)
	}
	// The old deadline has passed; the mapping lives.
	f.clock.Advance(60 * time.Second)
	f.t.Expire()
	if f.t.Len() != 1 {
		t.Error("renewed mapping expired at its old deadline")
	}
}

// TestRenewalNewAddress: the member's inner address changed; the mapping
// keeps its external port and is re-pointed (an Apply).
func TestRenewalNewAddress(t *testing.T) {
	f := newFixture(t, testOptions())
	ext := f.mustMap(t, req{port: 6881})
	moved := netip.AddrPortFrom(netip.MustParseAddr("10.99.0.9"), 6881)

	f.inst.setFail(errBoom)
	if e, _, res, changed := f.t.request("alice", TCP, moved, 0, 600); res != ResultNetworkFailure || e != 0 || changed {
		t.Fatalf("with Apply failing: %d %v %v", e, res, changed)
	}
	if ms := f.t.List(); ms[0].Internal.Addr() != inner {
		t.Fatalf("not rolled back: %+v", ms)
	}
	f.inst.setFail(nil)
	e, _, res, changed := f.t.request("alice", TCP, moved, 0, 600)
	if res != ResultSuccess || e != ext || !changed {
		t.Fatalf("re-point: %d %v %v", e, res, changed)
	}
	if _, last := f.inst.state(); len(last) != 1 || last[0].Internal != moved {
		t.Errorf("installed %+v", last)
	}
	if _, saved := f.store.state(); len(saved) != 1 || saved[0].Internal != moved {
		t.Errorf("saved %+v", saved)
	}
}

// TestRenewalNewAddressRateLimited: re-pointing costs a creation token,
// so alternating source addresses cannot force an Apply per request.
func TestRenewalNewAddressRateLimited(t *testing.T) {
	o := testOptions()
	o.CreateRate, o.CreateBurst = 0.001, 2
	f := newFixture(t, o)
	ext := f.mustMap(t, req{port: 6881})
	other := netip.AddrPortFrom(netip.MustParseAddr("10.99.0.9"), 6881)
	if e, _, res, changed := f.t.request("alice", TCP, other, 0, 600); res != ResultSuccess || e != ext || !changed {
		t.Fatalf("first re-point: %d %v %v", e, res, changed)
	}
	calls, _ := f.inst.state()
	if e, life, res, changed := f.t.request("alice", TCP, netip.AddrPortFrom(inner, 6881), 0, 600); res != ResultOutOfResources || e != 0 || life != 0 || changed {
		t.Fatalf("second re-point: %d %d %v %v", e, life, res, changed)
	}
	if c, _ := f.inst.state(); c != calls {
		t.Error("a refused re-point called Apply")
	}
	if ms := f.t.List(); ms[0].Internal != other || !ms[0].Expires.Equal(epoch0.Add(600*time.Second)) {
		t.Errorf("refused re-point changed the mapping: %+v", ms)
	}
	// Renewing from the current address still works.
	if e, _, res, _ := f.t.request("alice", TCP, other, 0, 900); res != ResultSuccess || e != ext {
		t.Errorf("renewal: %d %v", e, res)
	}
}

func TestDeleteAll(t *testing.T) {
	f := newFixture(t, testOptions())
	f.mustMap(t, req{proto: TCP, port: 1})
	f.mustMap(t, req{proto: TCP, port: 2})
	udp := f.mustMap(t, req{proto: UDP, port: 1})
	bob := f.mustMap(t, req{member: "bob", proto: TCP, port: 1})
	// Internal port 0, lifetime 0: all of alice's TCP mappings; the
	// suggested port is ignored.
	if ext, life, res := f.do(req{proto: TCP, port: 0, suggested: 40001}); ext != 0 || life != 0 || res != ResultSuccess {
		t.Fatalf("delete all: %d %d %v", ext, life, res)
	}
	ms := f.t.List()
	if len(ms) != 2 || ms[0].Member != "alice" || ms[0].External != udp || ms[1].Member != "bob" || ms[1].External != bob {
		t.Fatalf("left: %+v", ms)
	}
	if _, last := f.inst.state(); !sameMappings(last, ms) {
		t.Errorf("installed %+v", last)
	}
	if _, saved := f.store.state(); !sameMappings(saved, ms) {
		t.Errorf("saved %+v", saved)
	}
}

// TestApplyFailureRollsBack: a request whose Apply fails answers 3 and
// leaves the table as it was.
func TestApplyFailureRollsBack(t *testing.T) {
	f := newFixture(t, testOptions())
	keep := f.mustMap(t, req{port: 1, suggested: 40001})
	before := f.t.List()
	saves, _ := f.store.state()

	f.inst.setFail(errBoom)
	for _, r := range []req{
		{port: 2, suggested: 40002, lifetime: 600}, // create
		{port: 1}, // delete one
		{port: 0}, // delete all
		{member: "bob", port: 2, lifetime: 600},
	} {
		if ext, life, res := f.do(r); res != ResultNetworkFailure || ext != 0 || life != 0 {
			t.Errorf("%+v: %d %d %v, want network failure", r, ext, life, res)
		}
		if ms := f.t.List(); !sameMappings(ms, before) {
			t.Errorf("%+v: table changed to %+v", r, ms)
		}
	}
	if s, _ := f.store.state(); s != saves {
		t.Error("a failed request was saved")
	}
	if f.t.applyErrors.Load() != 4 {
		t.Errorf("ApplyErrors = %d, want 4", f.t.applyErrors.Load())
	}
	// Nothing leaked: the ports and the quota are free again.
	f.inst.setFail(nil)
	if ext := f.mustMap(t, req{port: 2, suggested: 40002}); ext != 40002 {
		t.Errorf("port 40002 still held: got %d", ext)
	}
	if ext := f.mustMap(t, req{port: 1, lifetime: 700}); ext != keep {
		t.Errorf("renewal got %d, want %d", ext, keep)
	}
}

func TestExpire(t *testing.T) {
	f := newFixture(t, testOptions())
	f.mustMap(t, req{port: 1, lifetime: 10})
	long := f.mustMap(t, req{port: 2, lifetime: 20})
	calls, _ := f.inst.state()

	f.clock.Advance(9 * time.Second)
	if err := f.t.Expire(); err != nil || f.t.Len() != 2 {
		t.Fatalf("before the deadline: %v, %d mappings", err, f.t.Len())
	}
	if c, _ := f.inst.state(); c != calls {
		t.Error("Expire with nothing to do called Apply")
	}
	f.clock.Advance(time.Second) // exactly at the deadline: gone
	if err := f.t.Expire(); err != nil {
		t.Fatal(err)
	}
	ms := f.t.List()
	if len(ms) != 1 || ms[0].External != long {
		t.Fatalf("after expiry: %+v", ms)
	}
	if _, last := f.inst.state(); !sameMappings(last, ms) {
		t.Errorf("installed %+v", last)
	}
	if _, saved := f.store.state(); !sameMappings(saved, ms) {
		t.Errorf("saved %+v", saved)
	}
	if f.t.expired.Load() != 1 {
		t.Errorf("Expired = %d", f.t.expired.Load())
	}
}

// TestExpireApplyFailure: an expired mapping leaves the table even when
// Apply fails; Expire retries the Apply until it works.
func TestExpireApplyFailure(t *testing.T) {
	f := newFixture(t, testOptions())
	f.mustMap(t, req{port: 1, lifetime: 10})
	f.clock.Advance(10 * time.Second)
	f.inst.setFail(errBoom)
	if err := f.t.Expire(); !errors.Is(err, errBoom) {
		t.Fatalf("Expire = %v", err)
	}
	if f.t.Len() != 0 {
		t.Fatal("expired mapping kept")
	}
	if _, last := f.inst.state(); len(last) != 1 {
		t.Fatalf("installed set should still hold the mapping: %+v", last)
	}
	if err := f.t.Expire(); !errors.Is(err, errBoom) {
		t.Fatalf("retry: %v", err)
	}
	f.inst.setFail(nil)
	if err := f.t.Expire(); err != nil {
		t.Fatal(err)
	}
	if _, last := f.inst.state(); len(last) != 0 {
		t.Errorf("installed set not caught up: %+v", last)
	}
	calls, _ := f.inst.state()
	f.t.Expire()
	if c, _ := f.inst.state(); c != calls {
		t.Error("Expire applied again after catching up")
	}
}

// TestPendingRemovalRidesWithNextRequest: a request's Apply carries a
// pending removal; if it fails, only the request is rolled back.
func TestPendingRemovalRidesWithNextRequest(t *testing.T) {
	f := newFixture(t, testOptions())
	f.mustMap(t, req{member: "bob", port: 1})
	f.inst.setFail(errBoom)
	if err := f.t.RemoveMember("bob"); !errors.Is(err, errBoom) {
		t.Fatalf("RemoveMember = %v", err)
	}
	if ext, _, res := f.do(req{port: 1, lifetime: 60}); res != ResultNetworkFailure || ext != 0 {
		t.Fatalf("request: %d %v", ext, res)
	}
	if f.t.Len() != 0 {
		t.Fatalf("table: %+v", f.t.List())
	}
	f.inst.setFail(nil)
	f.mustMap(t, req{port: 1})
	if _, last := f.inst.state(); len(last) != 1 || last[0].Member != "alice" {
		t.Errorf("installed %+v", last)
	}
	if f.t.applyPending {
		t.Error("removal still pending after a successful Apply")
	}
}

func TestRemoveMember(t *testing.T) {
	o := testOptions()
	o.CreateRate, o.CreateBurst = 0.001, 1
	f := newFixture(t, o)
	f.mustMap(t, req{member: "bob", port: 1})
	a := f.mustMap(t, req{port: 1})
	if err := f.t.RemoveMember("bob"); err != nil {
		t.Fatal(err)
	}
	ms := f.t.List()
	if len(ms) != 1 || ms[0].External != a {
		t.Fatalf("left: %+v", ms)
	}
	if _, last := f.inst.state(); !sameMappings(last, ms) {
		t.Errorf("installed %+v", last)
	}
	if _, saved := f.store.state(); !sameMappings(saved, ms) {
		t.Errorf("saved %+v", saved)
	}
	// A member re-added starts with a full bucket.
	if _, _, res := f.do(req{member: "bob", port: 2, lifetime: 60}); res != ResultSuccess {
		t.Errorf("bob re-added: %v", res)
	}
	// Removing a member without mappings changes nothing.
	calls, _ := f.inst.state()
	if err := f.t.RemoveMember("carol"); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.inst.state(); c != calls {
		t.Error("RemoveMember of nobody called Apply")
	}
}

func TestCreateRateRefills(t *testing.T) {
	o := testOptions()
	o.CreateRate, o.CreateBurst = 0.5, 1
	f := newFixture(t, o)
	f.mustMap(t, req{port: 1})
	if _, _, res := f.do(req{port: 2, lifetime: 60}); res != ResultOutOfResources {
		t.Fatalf("second creation: %v", res)
	}
	f.clock.Advance(time.Second) // half a token
	if _, _, res := f.do(req{port: 2, lifetime: 60}); res != ResultOutOfResources {
		t.Fatalf("after 1 s: %v", res)
	}
	f.clock.Advance(time.Second)
	if _, _, res := f.do(req{port: 2, lifetime: 60}); res != ResultSuccess {
		t.Fatalf("after 2 s: %v", res)
	}
	// A failed Apply spends no token.
	f.clock.Advance(2 * time.Second)
	f.inst.setFail(errBoom)
	f.do(req{port: 3, lifetime: 60})
	f.inst.setFail(nil)
	if _, _, res := f.do(req{port: 3, lifetime: 60}); res != ResultSuccess {
		t.Fatalf("after a failed Apply: %v", res)
	}
}

func TestSaveFailureRetried(t *testing.T) {
	f := newFixture(t, testOptions())
	f.store.setSaveErr(errBoom)
	// The mapping is installed; only persistence lags.
	ext := f.mustMap(t, req{port: 1})
	if f.t.saveErrors.Load() != 1 || !f.t.savePending {
		t.Fatalf("save errors %d pending %v", f.t.saveErrors.Load(), f.t.savePending)
	}
	if err := f.t.Expire(); !errors.Is(err, errBoom) {
		t.Fatalf("Expire = %v", err)
	}
	f.store.setSaveErr(nil)
	if err := f.t.Expire(); err != nil {
		t.Fatal(err)
	}
	if _, saved := f.store.state(); len(saved) != 1 || saved[0].External != ext {
		t.Errorf("saved %+v", saved)
	}
	saves, _ := f.store.state()
	f.t.Expire()
	if s, _ := f.store.state(); s != saves {
		t.Error("Expire saved with nothing pending")
	}
}

func TestFlush(t *testing.T) {
	f := newFixture(t, testOptions())
	f.mustMap(t, req{port: 1, lifetime: 60})
	saves, _ := f.store.state()
	if err := f.t.flush(); err != nil {
		t.Fatal(err)
	}
	if s, _ := f.store.state(); s != saves {
		t.Error("flush with nothing pending saved")
	}
	f.do(req{port: 1, lifetime: 120})
	if err := f.t.flush(); err != nil {
		t.Fatal(err)
	}
	if _, saved := f.store.state(); !saved[0].Expires.Equal(epoch0.Add(120 * time.Second)) {
		t.Errorf("flush did not save the renewal: %+v", saved)
	}
}

func TestNoStore(t *testing.T) {
	clock := newClock()
	o := testOptions()
	o.Now = clock.Now
	tb, err := NewTable(o, &fakeInstaller{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, res, _ := tb.request("alice", UDP, netip.AddrPortFrom(inner, 1), 0, 60); res != ResultSuccess {
		t.Fatal(res)
	}
	tb.request("alice", UDP, netip.AddrPortFrom(inner, 1), 0, 60)
	if err := tb.Expire(); err != nil {
		t.Fatal(err)
	}
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
}

func TestRestore(t *testing.T) {
	ap := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	saved := []Mapping{
		{Member: "alice", Proto: TCP, Internal: ap("10.99.0.2:1"), External: 40001, Expires: epoch0.Add(time.Minute)},
		{Member: "alice", Proto: UDP, Internal: ap("10.99.0.2:2"), External: 40002, Expires: epoch0},                // expired
		{Member: "bob", Proto: TCP, Internal: ap("10.99.0.3:3"), External: 50000, Expires: epoch0.Add(time.Minute)}, // out of range
		{Member: "bob", Proto: UDP, Internal: ap("10.99.0.3:4"), External: 40004, Expires: epoch0.Add(48 * time.Hour)},
	}
	clock := newClock()
	inst := &fakeInstaller{}
	store := &memStore{saved: saved}
	o := testOptions()
	o.Now = clock.Now
	tb, err := NewTable(o, inst, store)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{saved[0], saved[3]}
	want[1].Expires = epoch0.Add(time.Hour) // clamped to MaxLifetime
	if got := tb.List(); !sameMappings(got, want) {
		t.Fatalf("restored %+v\nwant %+v", got, want)
	}
	if calls, last := inst.state(); calls != 1 || !sameMappings(last, want) {
		t.Errorf("installed %d times: %+v", calls, last)
	}
	if saves, s := store.state(); saves != 1 || !sameMappings(s, want) {
		t.Errorf("dropped entries not saved away: %d saves, %+v", saves, s)
	}
	// Restored mappings renew with their external port.
	ext, _, res, _ := tb.request("alice", TCP, ap("10.99.0.2:1"), 0, 60)
	if res != ResultSuccess || ext != 40001 {
		t.Errorf("renewal of a restored mapping: %d %v", ext, res)
	}
}

func TestRestoreMaxPerMember(t *testing.T) {
	var saved []Mapping
	for i := range 6 {
		saved = append(saved, Mapping{Member: "alice", Proto: TCP, Internal: netip.AddrPortFrom(inner, uint16(i+1)),
			External: uint16(40000 + i), Expires: epoch0.Add(time.Minute)})
	}
	o := testOptions()
	o.Now = newClock().Now
	tb, err := NewTable(o, &fakeInstaller{}, &memStore{saved: saved})
	if err != nil {
		t.Fatal(err)
	}
	if tb.Len() != o.MaxPerMember {
		t.Errorf("restored %d mappings, want the maximum %d", tb.Len(), o.MaxPerMember)
	}
}

func TestRestoreErrors(t *testing.T) {
	good := Mapping{Member: "alice", Proto: TCP, Internal: netip.AddrPortFrom(inner, 1), External: 40001, Expires: epoch0.Add(time.Minute)}
	with := func(mod func(*Mapping)) []Mapping {
		m := good
		mod(&m)
		return []Mapping{m}
	}
	for _, tc := range []struct {
		name    string
		store   *memStore
		wantErr string
	}{
		{"load error", &memStore{loadErr: errBoom}, "boom"},
		{"no member", &memStore{saved: with(func(m *Mapping) { m.Member = "" })}, "mapping 0: no member"},
		{"bad protocol", &memStore{saved: with(func(m *Mapping) { m.Proto = 3 })}, "invalid protocol 3"},
		{"IPv6 internal", &memStore{saved: with(func(m *Mapping) { m.Internal = netip.MustParseAddrPort("[fd00::2]:1") })}, "not IPv4"},
		{"4in6 internal", &memStore{saved: with(func(m *Mapping) { m.Internal = netip.MustParseAddrPort("[::ffff:10.99.0.2]:1") })}, "not IPv4"},
		{"internal port 0", &memStore{saved: with(func(m *Mapping) { m.Internal = netip.AddrPortFrom(inner, 0) })}, "internal port 0"},
		{"external port 0", &memStore{saved: with(func(m *Mapping) { m.External = 0 })}, "external port 0"},
		{"no expiry", &memStore{saved: with(func(m *Mapping) { m.Expires = time.Time{} })}, "no expiry"},
		{"duplicate", &memStore{saved: []Mapping{good, good}}, "second tcp mapping"},
		{"external twice", &memStore{saved: []Mapping{good, func() Mapping {
			m := good
			m.Member = "bob"
			return m
		}()}}, "mapped twice"},
		{"companion held by two members", &memStore{saved: []Mapping{good, func() Mapping {
			m := good
			m.Member, m.Proto = "bob", UDP
			return m
		}()}}, `held by members "alice" and "bob"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := &fakeInstaller{}
			o := testOptions()
			o.Now = newClock().Now
			_, err := NewTable(o, inst, tc.store)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if calls, _ := inst.state(); calls != 0 {
				t.Error("Apply called despite the error")
			}
		})
	}
}

func TestCompanionOfSameMemberAllowed(t *testing.T) {
	// The same member on both protocols of a port is valid state.
	ms := []Mapping{
		{Member: "alice", Proto: TCP, Internal: netip.AddrPortFrom(inner, 1), External: 40001, Expires: epoch0.Add(time.Minute)},
		{Member: "alice", Proto: UDP, Internal: netip.AddrPortFrom(inner, 1), External: 40001, Expires: epoch0.Add(time.Minute)},
	}
	if err := checkMappings(ms); err != nil {
		t.Fatal(err)
	}
}

func TestProtoText(t *testing.T) {
	for _, p := range []Proto{UDP, TCP} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var q Proto
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Errorf("%v round trip: %v %v", p, q, err)
		}
	}
	if _, err := Proto(0).MarshalText(); err == nil {
		t.Error("proto 0 marshalled")
	}
	var q Proto
	if err := q.UnmarshalText([]byte("sctp")); err == nil {
		t.Error("sctp accepted")
	}
	if s := Proto(7).String(); s != "proto(7)" {
		t.Errorf("String = %q", s)
	}
}

// TestRequestAllocs: renewals and refusals, the common requests, do not
// allocate.
func TestRequestAllocs(t *testing.T) {
	f := newFixture(t, testOptions())
	f.mustMap(t, req{port: 1})
	for i := range 4 {
		f.mustMap(t, req{member: "bob", port: uint16(i + 1)})
	}
	ap := netip.AddrPortFrom(inner, 1)
	bp := netip.AddrPortFrom(innerB, 9)
	n := testing.AllocsPerRun(100, func() {
		f.t.request("alice", TCP, ap, 0, 60)                           // renewal
		f.t.request("bob", TCP, bp, 0, 60)                             // over the maximum
		f.t.request("alice", UDP, ap, 0, 0)                            // deleting nothing
		f.t.request("alice", UDP, netip.AddrPortFrom(inner, 0), 0, 60) // refused: port 0
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}
