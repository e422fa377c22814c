package portforward

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// FuzzParseRequest: no panic; what parses re-encodes to the datagram's
// first bytes; what does not parse says exactly what §3.5 asks.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte{0, 0})
	f.Add(mapReq(OpMapUDP, 6881, 40000, 7200))
	f.Add(mapReq(OpMapTCP, 0, 0, 0))
	f.Add([]byte{2, 1, 0, 0})
	f.Add([]byte{0, 3})
	f.Add([]byte{0, 129})
	f.Add([]byte{0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err == nil {
			enc := AppendRequest(nil, r)
			if len(enc) > len(b) || !bytes.Equal(enc, b[:len(enc)]) {
				t.Fatalf("% x parsed as %+v, re-encoded % x", b, r, enc)
			}
			if again, err := ParseRequest(enc); err != nil || again != r {
				t.Fatalf("re-parse of % x: %+v %v", enc, again, err)
			}
			return
		}
		var pe *ParseError
		if !errors.As(err, &pe) || r != (Request{}) {
			t.Fatalf("% x: %+v, %v", b, r, err)
		}
		var want ResultCode
		switch {
		case len(b) < 2 || b[1] >= 128:
		case b[0] != 0:
			want = ResultUnsupportedVersion
		case b[1] > 2:
			want = ResultUnsupportedOpcode
		}
		if pe.Result != want {
			t.Fatalf("% x: result %v, want %v", b, pe.Result, want)
		}
		if want == ResultUnsupportedOpcode {
			echo := AppendOpcodeError(nil, b)
			if len(echo) != max(4, len(b)) || echo[1] != b[1]|128 || !bytes.Equal(echo[4:], b[min(4, len(b)):]) {
				t.Fatalf("echo of % x: % x", b, echo)
			}
		}
	})
}

// FuzzParseResponse: no panic; what parses as a known response re-encodes
// to the datagram's first bytes.
func FuzzParseResponse(f *testing.F) {
	f.Add(AppendResponse(nil, Response{Epoch: 1, PublicAddr: wan}))
	f.Add(AppendResponse(nil, Response{Op: OpMapTCP, Epoch: 1, InternalPort: 1, ExternalPort: 2, Lifetime: 3}))
	f.Add(AppendVersionError(nil, 5))
	f.Add(AppendOpcodeError(nil, []byte{0, 9}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil || r.Op > OpMapTCP {
			return
		}
		if r.Op == OpPublicAddress && r.Result != ResultSuccess && r.Result != ResultUnsupportedVersion &&
			r.PublicAddr != netip.IPv4Unspecified() {
			return // an address with a failure: AppendResponse zeroes it
		}
		enc := AppendResponse(nil, r)
		want := b[:min(len(enc), len(b))]
		if r.Result == ResultUnsupportedVersion {
			// Servers before erratum 3618 echo the request's opcode; the
			// parse keeps it, the encoding always sends 128.
			want = append([]byte{0, opResponse}, want[2:]...)
		}
		if !bytes.Equal(enc, want) {
			t.Fatalf("% x parsed as %+v, re-encoded % x", b, r, enc)
		}
	})
}

// FuzzServer feeds a sequence of datagrams (and clock steps, member
// changes and Apply failures) to the server's handler over a small table,
// and checks every answer against its request and the table's invariants
// after each step. The input is a list of records: one control byte, then
// for datagrams a length byte and the bytes.
func FuzzServer(f *testing.F) {
	rec := func(ctl byte, dg []byte) []byte { return append([]byte{ctl, byte(len(dg))}, dg...) }
	var seed []byte
	for _, dg := range [][]byte{
		{0, 0}, mapReq(OpMapUDP, 1, 40000, 60), mapReq(OpMapTCP, 1, 40000, 60),
		mapReq(OpMapUDP, 0, 0, 0), {1, 0}, {0, 7, 1}, {0},
	} {
		seed = append(seed, rec(0, dg)...)
		seed = append(seed, rec(1, dg)...) // bob
	}
	f.Add(seed)
	f.Add(append(rec(0, mapReq(OpMapTCP, 5, 0, 30)), 0x40, 0x80, 0xc0))
	f.Fuzz(func(t *testing.T, in []byte) {
		clock := newClock()
		inst := &fakeInstaller{}
		o := TableOptions{FirstPort: 40000, LastPort: 40003, MaxPerMember: 3, MaxLifetime: time.Minute,
			CreateRate: 1, CreateBurst: 4, Now: clock.Now}
		tb, err := NewTable(o, inst, &memStore{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewServer(tb, ServerOptions{Identify: identify, Now: clock.Now, PublicAddr: func() netip.Addr { return wan }})
		if err != nil {
			t.Fatal(err)
		}
		srcs := []netip.AddrPort{netip.AddrPortFrom(lo, 5350), netip.AddrPortFrom(loBob, 5350),
			netip.AddrPortFrom(foreign, 5350), netip.MustParseAddrPort("[::1]:5350")}
		out := make([]byte, 0, 512)
		for len(in) > 0 {
			ctl := in[0]
			in = in[1:]
			switch ctl >> 6 {
			case 1:
				clock.Advance(time.Duration(ctl&63) * time.Second)
				continue
			case 2:
				if ctl&1 == 0 {
					tb.Expire()
				} else {
					tb.RemoveMember("bob")
				}
				continue
			case 3:
				if ctl&1 == 0 {
					inst.setFail(nil)
				} else {
					inst.setFail(errBoom)
				}
				continue
			}
			if len(in) == 0 {
				break
			}
			n := min(int(in[0]), len(in)-1)
			dg := in[1 : 1+n]
			in = in[1+n:]
			src := srcs[int(ctl)%len(srcs)]
			before := tb.List()
			resp := s.handle(dg, src, out[:0])
			checkAnswer(t, dg, src, resp, before, tb.List())
			if err := checkMappings(tb.List()); err != nil {
				t.Fatalf("after % x: %v", dg, err)
			}
			for _, m := range tb.List() {
				if m.External < o.FirstPort || m.External > o.LastPort {
					t.Fatalf("port %d out of range", m.External)
				}
			}
			counts := map[string]int{}
			for _, m := range tb.List() {
				if counts[m.Member]++; counts[m.Member] > o.MaxPerMember {
					t.Fatalf("member %s over the maximum", m.Member)
				}
			}
		}
	})
}

// checkAnswer checks one answer against the request and the table before
// and after it.
func checkAnswer(t *testing.T, dg []byte, src netip.AddrPort, resp []byte, before, after []Mapping) {
	t.Helper()
	member, ok := identify(src.Addr().Unmap())
	req, err := ParseRequest(dg)
	var pe *ParseError
	if !ok || (errors.As(err, &pe) && pe.Result == ResultSuccess) {
		if resp != nil {
			t.Fatalf("% x from %v answered % x", dg, src, resp)
		}
		if !sameMappings(before, after) {
			t.Fatalf("% x from %v changed the table", dg, src)
		}
		return
	}
	if len(resp) < 4 || resp[0] != 0 || resp[1] < 128 {
		t.Fatalf("% x: answer % x is not a response", dg, resp)
	}
	if pe != nil {
		want := AppendOpcodeError(nil, dg)
		if pe.Result == ResultUnsupportedVersion && len(resp) == versionErrorLen {
			want = AppendVersionError(nil, binary.BigEndian.Uint32(resp[4:]))
		}
		if !bytes.Equal(resp, want) {
			t.Fatalf("% x: answer % x, want % x", dg, resp, want)
		}
		return
	}
	r, err := ParseResponse(resp)
	if err != nil || r.Op != req.Op {
		t.Fatalf("% x: answer % x: %+v %v", dg, resp, r, err)
	}
	if req.Op == OpPublicAddress {
		if r.Result != ResultSuccess || r.PublicAddr != wan {
			t.Fatalf("public address answer %+v", r)
		}
		return
	}
	if r.InternalPort != req.InternalPort {
		t.Fatalf("answer for internal port %d, asked %d", r.InternalPort, req.InternalPort)
	}
	proto := Proto(req.Op)
	var have *Mapping
	for i, m := range after {
		if m.Member == member && m.Proto == proto && (m.Internal.Port() == req.InternalPort || req.InternalPort == 0) {
			have = &after[i]
		}
	}
	switch {
	case r.Result != ResultSuccess:
		if r.ExternalPort != 0 || r.Lifetime != 0 || !sameMappings(before, after) {
			t.Fatalf("failure %v with port %d lifetime %d, or the table changed", r.Result, r.ExternalPort, r.Lifetime)
		}
	case req.Lifetime == 0:
		if r.ExternalPort != 0 || r.Lifetime != 0 || have != nil {
			t.Fatalf("deletion answered %+v, mapping %+v", r, have)
		}
	default:
		if have == nil || have.External != r.ExternalPort || r.Lifetime == 0 || r.Lifetime > req.Lifetime {
			t.Fatalf("mapping answered %+v, table holds %+v", r, have)
		}
	}
}
