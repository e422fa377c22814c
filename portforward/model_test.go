package portforward

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// model is the slow reference for the Table: a plain slice, every question
// answered by scanning it, written from RFC 6886 §3.3–3.4 and the policy
// rather than from table.go. It has no creation rate (the comparison runs
// with an unlimited one; TestCreateRateRefills covers it).
type model struct {
	first, last uint16
	max         int
	maxLife     uint32
	ms          []Mapping
	installed   []Mapping // what the last successful Apply installed
	pending     bool      // a removal not yet installed
}

func (m *model) find(member string, proto Proto, port uint16) int {
	return slices.IndexFunc(m.ms, func(x Mapping) bool {
		return x.Member == member && x.Proto == proto && x.Internal.Port() == port
	})
}

// free: nobody holds p for proto, and no other member holds it at all.
func (m *model) free(member string, proto Proto, p uint16) bool {
	for _, x := range m.ms {
		if x.External == p && (x.Proto == proto || x.Member != member) {
			return false
		}
	}
	return true
}

// apply installs ms if ok; it reports ok.
func (m *model) apply(ok bool) bool {
	if ok {
		m.installed = slices.Clone(m.ms)
		m.pending = false
	}
	return ok
}

func (m *model) request(member string, proto Proto, internal netip.AddrPort, suggested uint16, lifetime uint32, now time.Time, applyOK bool) (uint16, uint32, ResultCode) {
	if lifetime == 0 {
		before := slices.Clone(m.ms)
		m.ms = slices.DeleteFunc(m.ms, func(x Mapping) bool {
			return x.Member == member && x.Proto == proto && (internal.Port() == 0 || x.Internal.Port() == internal.Port())
		})
		if len(m.ms) != len(before) && !m.apply(applyOK) {
			m.ms = before
			return 0, 0, ResultNetworkFailure
		}
		return 0, 0, ResultSuccess
	}
	if internal.Port() == 0 {
		return 0, 0, ResultRefused
	}
	granted := min(lifetime, m.maxLife)
	expires := now.Add(time.Duration(granted) * time.Second)
	if i := m.find(member, proto, internal.Port()); i >= 0 {
		old := m.ms[i]
		m.ms[i].Expires = expires
		if old.Internal != internal {
			m.ms[i].Internal = internal
			if !m.apply(applyOK) {
				m.ms[i] = old
				return 0, 0, ResultNetworkFailure
			}
		}
		return old.External, granted, ResultSuccess
	}
	n := 0
	for _, x := range m.ms {
		if x.Member == member {
			n++
		}
	}
	if n >= m.max {
		return 0, 0, ResultOutOfResources
	}
	// The suggestion if free and in range, else the first free port going
	// up (and around) from the suggestion's — or the internal port's —
	// place in the range.
	size := int(m.last-m.first) + 1
	hint := cmp.Or(suggested, internal.Port())
	pos := int(hint) % size
	if hint >= m.first && hint <= m.last {
		pos = int(hint - m.first)
	}
	for i := range size {
		p := m.first + uint16((pos+i)%size)
		if !m.free(member, proto, p) {
			continue
		}
		m.ms = append(m.ms, Mapping{Member: member, Proto: proto, Internal: internal, External: p, Expires: expires})
		if !m.apply(applyOK) {
			m.ms = m.ms[:len(m.ms)-1]
			return 0, 0, ResultNetworkFailure
		}
		return p, granted, ResultSuccess
	}
	return 0, 0, ResultOutOfResources
}

// remove drops mappings and installs the result; retry (Expire) also
// installs a removal still pending from before.
func (m *model) remove(drop func(Mapping) bool, applyOK, retry bool) {
	n := len(m.ms)
	m.ms = slices.DeleteFunc(m.ms, drop)
	if len(m.ms) != n {
		m.pending = true
	} else if !retry {
		return
	}
	if m.pending {
		m.apply(applyOK)
	}
}

func (m *model) list() []Mapping {
	out := slices.Clone(m.ms)
	slices.SortFunc(out, func(a, b Mapping) int {
		return cmp.Or(cmp.Compare(a.Member, b.Member), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.External, b.External))
	})
	return out
}

// sameInstalled compares installed sets, which ignore expiry times.
func sameInstalled(a, b []Mapping) bool {
	key := func(m Mapping) string { return fmt.Sprint(m.Member, m.Proto, m.Internal, m.External) }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i] = key(a[i])
	}
	for i := range b {
		kb[i] = key(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

func TestTableMatchesModel(t *testing.T) {
	members := []struct {
		name string
		addr netip.Addr
	}{
		{"alice", inner}, {"bob", innerB}, {"carol", netip.MustParseAddr("10.99.0.4")},
	}
	ports := []uint16{0, 1, 2, 3, 40000, 40005}
	suggestions := []uint16{0, 1, 40000, 40003, 40007, 50000}
	lifetimes := []uint32{0, 0, 1, 30, 600, 100000}
	steps := 3000
	if testing.Short() {
		steps = 300
	}
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			o := testOptions()
			o.FirstPort, o.LastPort, o.MaxPerMember, o.MaxLifetime = 40000, 40007, 3, 10*time.Minute
			f := newFixture(t, o)
			m := &model{first: o.FirstPort, last: o.LastPort, max: o.MaxPerMember, maxLife: 600}
			applyOK := true
			for step := range steps {
				var what string
				switch k := rng.IntN(100); {
				case k < 70:
					mb := members[rng.IntN(len(members))]
					addr := mb.addr
					if rng.IntN(20) == 0 { // the member was re-addressed
						addr = addr.Next().Next().Next()
					}
					proto := Proto(1 + rng.IntN(2))
					ip := netip.AddrPortFrom(addr, ports[rng.IntN(len(ports))])
					sug, life := suggestions[rng.IntN(len(suggestions))], lifetimes[rng.IntN(len(lifetimes))]
					what = fmt.Sprintf("request %s %v %v sug %d life %d (apply ok %v)", mb.name, proto, ip, sug, life, applyOK)
					ge, gl, gr, _ := f.t.request(mb.name, proto, ip, sug, life)
					we, wl, wr := m.request(mb.name, proto, ip, sug, life, f.clock.Now(), applyOK)
					if ge != we || gl != wl || gr != wr {
						t.Fatalf("step %d %s: table %d %d %v, model %d %d %v", step, what, ge, gl, gr, we, wl, wr)
					}
				case k < 80:
					d := time.Duration(rng.IntN(40)) * time.Second
					what = fmt.Sprint("advance ", d)
					f.clock.Advance(d)
				case k < 90:
					what = "expire"
					now := f.clock.Now()
					f.t.Expire()
					m.remove(func(x Mapping) bool { return !now.Before(x.Expires) }, applyOK, true)
				case k < 95:
					mb := members[rng.IntN(len(members))].name
					what = "remove " + mb
					f.t.RemoveMember(mb)
					m.remove(func(x Mapping) bool { return x.Member == mb }, applyOK, false)
				default:
					applyOK = !applyOK
					what = fmt.Sprint("apply ok ", applyOK)
					if applyOK {
						f.inst.setFail(nil)
					} else {
						f.inst.setFail(errBoom)
					}
				}
				if got, want := f.t.List(), m.list(); !sameMappings(got, want) {
					t.Fatalf("step %d %s:\ntable %+v\nmodel %+v", step, what, got, want)
				}
				if _, last := f.inst.state(); !sameInstalled(last, m.installed) {
					t.Fatalf("step %d %s: installed %+v\nmodel %+v", step, what, last, m.installed)
				}
				if f.t.Len() != len(m.ms) {
					t.Fatalf("step %d: Len %d, model %d", step, f.t.Len(), len(m.ms))
				}
			}
		})
	}
}
