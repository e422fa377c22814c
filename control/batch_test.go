package control

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestBatchAddAndRemove(t *testing.T) {
	c, _ := serve(t, nil)
	ctx := context.Background()
	var reqs []AddMemberRequest
	for i := range 50 {
		reqs = append(reqs, AddMemberRequest{Label: fmt.Sprintf("m%02d", i), Weight: i % 3})
	}
	ms, err := c.AddMembers(ctx, AddMembersRequest{Members: reqs})
	if err != nil || len(ms) != 50 || ms[49].Label != "m49" || ms[0].Config != "" {
		t.Fatalf("batch add: %d %v", len(ms), err)
	}
	ms, err = c.AddMembers(ctx, AddMembersRequest{Members: []AddMemberRequest{{Label: "x"}}, Configs: true})
	if err != nil || ms[0].Config == "" {
		t.Fatalf("configs not returned: %+v %v", ms, err)
	}
	// All or none: one bad entry adds nothing.
	if _, err := c.AddMembers(ctx, AddMembersRequest{Members: []AddMemberRequest{{Label: "y"}, {Label: "m01"}}}); code(err) != CodeDuplicate {
		t.Fatalf("duplicate in batch: %v", err)
	}
	if _, err := c.Member(ctx, "y"); code(err) != CodeNotFound {
		t.Fatalf("partial batch applied: %v", err)
	}
	if _, err := c.AddMembers(ctx, AddMembersRequest{}); code(err) != CodeInvalidRequest {
		t.Fatalf("empty batch: %v", err)
	}
	gone, err := c.RemoveMembers(ctx, []string{"m01", "m02"})
	if err != nil || len(gone) != 2 || gone[1].Label != "m02" {
		t.Fatalf("batch remove: %+v %v", gone, err)
	}
	if _, err := c.RemoveMembers(ctx, []string{"m03", "m01"}); code(err) != CodeNotFound {
		t.Fatalf("remove unknown: %v", err)
	}
	if _, err := c.Member(ctx, "m03"); err != nil {
		t.Fatalf("failed batch removed m03: %v", err)
	}
	if _, err := c.RemoveMembers(ctx, nil); code(err) != CodeInvalidRequest {
		t.Fatalf("empty remove: %v", err)
	}
}

func TestUpdateMember(t *testing.T) {
	c, _ := serve(t, nil)
	ctx := context.Background()
	if _, err := c.AddMember(ctx, AddMemberRequest{Label: "alice"}); err != nil {
		t.Fatal(err)
	}
	w, off := 7, true
	m, err := c.UpdateMember(ctx, "alice", UpdateMemberRequest{Weight: &w, Disabled: &off})
	if err != nil || m.Weight != 7 || !m.Disabled {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := c.UpdateMember(ctx, "bob", UpdateMemberRequest{Weight: &w}); code(err) != CodeNotFound {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := c.UpdateMember(ctx, "alice", UpdateMemberRequest{}); code(err) != CodeInvalidRequest {
		t.Fatalf("empty update: %v", err)
	}
}

func TestListQueryOverTheWire(t *testing.T) {
	c, _ := serve(t, nil)
	ctx := context.Background()
	var reqs []AddMemberRequest
	for i := range 30 {
		reqs = append(reqs, AddMemberRequest{Label: fmt.Sprintf("m%02d", i), Weight: 30 - i})
	}
	if _, err := c.AddMembers(ctx, AddMembersRequest{Members: reqs}); err != nil {
		t.Fatal(err)
	}
	ms, total, err := c.ListMembers(ctx, ListQuery{Sort: "weight", Offset: 5, Limit: 10})
	if err != nil || total != 30 || len(ms) != 10 || ms[0].Label != "m24" || ms[9].Label != "m15" {
		t.Fatalf("page: total %d, %d members, %v", total, len(ms), err)
	}
	ms, total, err = c.ListMembers(ctx, ListQuery{Match: "M1", NoStats: true})
	if err != nil || total != 10 || len(ms) != 10 {
		t.Fatalf("match: %d %d %v", total, len(ms), err)
	}
	if _, _, err := c.ListMembers(ctx, ListQuery{Sort: "shoe size"}); code(err) != CodeInvalidRequest {
		t.Fatalf("bad sort: %v", err)
	}
	var got []Member
	if err := c.do(ctx, "GET", "/v1/members?limit=1&limit=2", nil, &got); code(err) != CodeInvalidRequest {
		t.Fatalf("repeated parameter: %v", err)
	}
	if err := c.do(ctx, "GET", "/v1/members?colour=red", nil, &got); code(err) != CodeInvalidRequest {
		t.Fatalf("unknown parameter: %v", err)
	}
}

func TestParseListQuery(t *testing.T) {
	tests := []struct {
		name, raw string
		want      ListQuery
		err       string
	}{
		{"empty", "", ListQuery{}, ""},
		{"all", "match=bob&state=connected&sort=-rx&offset=10&limit=50&stats=0",
			ListQuery{Match: "bob", State: "connected", Sort: "-rx", Offset: 10, Limit: 50, NoStats: true}, ""},
		{"stats on", "stats=1", ListQuery{}, ""},
		{"bad state", "state=sleepy", ListQuery{}, `query parameter state: "sleepy" is not one of`},
		{"bad sort", "sort=-", ListQuery{}, "query parameter sort"},
		{"negative", "offset=-1", ListQuery{}, "query parameter offset: want a number"},
		{"huge", "limit=99999999999", ListQuery{}, "query parameter limit"},
		{"bad stats", "stats=maybe", ListQuery{}, "query parameter stats"},
		{"unknown", "page=2", ListQuery{}, `unknown query parameter "page"`},
		{"repeated", "sort=rx&sort=tx", ListQuery{}, `"sort" given 2 times`},
		{"long match", "match=" + strings.Repeat("a", 257), ListQuery{}, "longer than 256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := url.ParseQuery(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			q, err := ParseListQuery(v)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || q != tc.want {
				t.Fatalf("got %+v %v, want %+v", q, err, tc.want)
			}
			// Values is the inverse.
			back, err := ParseListQuery(q.Values())
			if err != nil || back != q {
				t.Fatalf("round trip %+v -> %+v %v", q, back, err)
			}
		})
	}
}

func TestListQueryApply(t *testing.T) {
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	ms := []Member{
		{ID: 2, Label: "alice", PublicKey: "AAA", IPv4: netip.MustParseAddr("10.99.0.2"), LastHandshake: now.Add(-time.Minute), RxBytes: 10, TxBytes: 500, TxRate: 8000},
		{ID: 3, Label: "bob", PublicKey: "BBB", IPv4: netip.MustParseAddr("10.99.0.3"), Disabled: true, RxBytes: 30},
		{ID: 4, Label: "carol", PublicKey: "CCC", IPv4: netip.MustParseAddr("10.99.0.4"), LastHandshake: now.Add(-time.Hour), RxBytes: 20, Weight: 4},
		{ID: 5, Label: "dave", PublicKey: "DDD", IPv6: netip.MustParseAddr("fd00:99::5"), RxRate: 100},
	}
	labels := func(ms []Member) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.Label)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		q     ListQuery
		want  string
		total int
	}{
		{ListQuery{}, "alice,bob,carol,dave", 4},
		{ListQuery{Sort: "-id"}, "dave,carol,bob,alice", 4},
		{ListQuery{State: "enabled"}, "alice,carol,dave", 3},
		{ListQuery{State: "disabled"}, "bob", 1},
		{ListQuery{State: "connected"}, "alice", 1},
		{ListQuery{State: "idle"}, "carol,dave", 2},
		{ListQuery{Sort: "rx"}, "dave,alice,carol,bob", 4},
		{ListQuery{Sort: "-rx"}, "bob,carol,alice,dave", 4},
		{ListQuery{Sort: "-handshake"}, "alice,carol,dave,bob", 4}, // ties in reverse id order
		{ListQuery{Sort: "rate"}, "bob,carol,dave,alice", 4},
		{ListQuery{Sort: "-weight", Limit: 1}, "carol", 4},
		{ListQuery{Sort: "label", Offset: 3}, "dave", 4},
		{ListQuery{Offset: 9}, "", 4},
		{ListQuery{Match: "10.99.0.3"}, "bob", 1},
		{ListQuery{Match: "fd00:99"}, "dave", 1},
		{ListQuery{Match: "ccc"}, "carol", 1},
		{ListQuery{Match: "A", State: "enabled", Sort: "-label"}, "dave,carol,alice", 3},
	}
	for _, tc := range tests {
		page, total := tc.q.Apply(ms, now)
		if labels(page) != tc.want || total != tc.total {
			t.Errorf("%+v: got %s (%d), want %s (%d)", tc.q, labels(page), total, tc.want, tc.total)
		}
	}
	if ms[0].Label != "alice" || ms[3].Label != "dave" {
		t.Fatal("Apply reordered its input")
	}
}

func TestDecoders(t *testing.T) {
	big := `{"members":[` + strings.Repeat(`{"label":"a"},`, MaxBatch) + `{"label":"b"}]}`
	tests := []struct {
		name string
		fn   func(string) error
		body string
		ok   bool
	}{
		{"batch ok", decAdds, `{"members":[{"label":"a"},{"label":"b","public_key":"x","ipv6":"fd00::5","address_fallback":true}],"configs":true}`, true},
		{"batch too many", decAdds, big, false},
		{"batch empty", decAdds, `{"members":[]}`, false},
		{"batch unknown member field", decAdds, `{"members":[{"label":"a","owner":"x"}]}`, false},
		{"batch trailing", decAdds, `{"members":[{"label":"a"}]} x`, false},
		{"batch trailing space", decAdds, "{\"members\":[{\"label\":\"a\"}]}\n\t ", true},
		{"remove ok", decRemove, `{"refs":["a","b"]}`, true},
		{"remove none", decRemove, `{"refs":[]}`, false},
		{"remove wrong type", decRemove, `{"refs":"a"}`, false},
		{"update ok", decUpdate, `{"disabled":false}`, true},
		{"update weight", decUpdate, `{"weight":0}`, true},
		{"update nothing", decUpdate, `{}`, false},
		{"update negative limit", decUpdate, `{"egress_limit":-1}`, false},
		{"update unknown", decUpdate, `{"label":"x"}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.fn(tc.body); (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func decAdds(s string) error   { _, err := DecodeAddMembers(strings.NewReader(s)); return err }
func decRemove(s string) error { _, err := DecodeRemoveMembers(strings.NewReader(s)); return err }
func decUpdate(s string) error { _, err := DecodeUpdateMember(strings.NewReader(s)); return err }

func FuzzDecodeAddMembers(f *testing.F) {
	f.Add([]byte(`{"members":[{"label":"a","public_key":"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=","ipv4":"10.99.0.9"}],"configs":true}`))
	f.Add([]byte(`{"members":[{}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeAddMembers(strings.NewReader(string(b)))
		if err != nil {
			if req.Members != nil || req.Configs {
				t.Fatalf("error with partial request: %+v", req)
			}
			return
		}
		if len(req.Members) == 0 || len(req.Members) > MaxBatch {
			t.Fatalf("accepted a batch of %d", len(req.Members))
		}
	})
}

func FuzzDecodeUpdateMember(f *testing.F) {
	f.Add([]byte(`{"weight":3,"egress_limit":1000000,"disabled":true}`))
	f.Add([]byte(`{"ingress_limit":0}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeUpdateMember(strings.NewReader(string(b)))
		if (err == nil) == (req == UpdateMemberRequest{}) {
			t.Fatalf("err %v with request %+v", err, req)
		}
	})
}

func FuzzParseListQuery(f *testing.F) {
	f.Add("match=a&state=idle&sort=-rate&offset=1&limit=2&stats=0")
	f.Add("sort=label&sort=rx")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseListQuery(v)
		if err != nil {
			return
		}
		if q.Offset < 0 || q.Limit < 0 {
			t.Fatalf("negative paging %+v", q)
		}
		back, err := ParseListQuery(q.Values())
		if err != nil || back != q {
			t.Fatalf("round trip %+v -> %+v %v", q, back, err)
		}
		page, total := q.Apply([]Member{{ID: 1, Label: "a"}, {ID: 2, Label: "b", Disabled: true}}, time.Now())
		if total > 2 || len(page) > total {
			t.Fatalf("page %d of %d", len(page), total)
		}
	})
}
