package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestGrafanaDashboardUsesExportedNames keeps packaging/grafana in step
// with the collectors: every metric an expression names must be gathered.
func TestGrafanaDashboardUsesExportedNames(t *testing.T) {
	b, err := os.ReadFile("../packaging/grafana/exitd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	reg, src, clk := fullRegistry(t, 2, 0)
	src.set(func(ms []MemberCounters) []MemberCounters {
		ms[0].LastHandshake = clk.now()
		return ms
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
		if mf.GetType().String() == "HISTOGRAM" {
			have[mf.GetName()+"_bucket"] = true
		}
	}
	name := regexp.MustCompile(`\b((?:exitd|wireguard|process|go)_[a-z_]+)\b`)
	exprs := 0
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			for _, m := range name.FindAllString(tg.Expr, -1) {
				if !have[m] && !strings.HasPrefix(m, "go_memstats") {
					t.Errorf("panel %q uses %s, which is not exported", p.Title, m)
				}
			}
		}
	}
	if exprs < 20 {
		t.Fatalf("only %d queries in the dashboard", exprs)
	}
}
