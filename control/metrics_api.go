package control

// The observability part of the API (docs/observability.md):
//
//	GET /v1/load                       the node's figures now (Load)
//	GET /v1/top?n=20&sort=rate         busiest members (Top); sort: rate, queue, drops
//	GET /v1/samples?since=RFC3339      the load report's samples, oldest first

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"exitd/report"
)

// Load is GET /v1/load.
type Load struct {
	At       time.Time `json:"at"`
	WindowMs int64     `json:"window_ms"` // the rates' averaging window
	// Throughput through the tunnel, bits/s: In from members, Out to them.
	RateIn   float64 `json:"rate_in"`
	RateOut  float64 `json:"rate_out"`
	BytesIn  uint64  `json:"bytes_in"`
	BytesOut uint64  `json:"bytes_out"`

	Configured  int `json:"configured"`
	Active      int `json:"active"`
	Idle        int `json:"idle"`
	Handshaking int `json:"handshaking"`
	Offline     int `json:"offline"`

	Scheduler *SchedulerLoad `json:"scheduler,omitempty"`

	NATDrops     map[string]uint64 `json:"nat_drops,omitempty"` // by reason
	Conntrack    int64             `json:"conntrack"`           // -1 unknown
	ConntrackMax int64             `json:"conntrack_max"`
	UDPRcvbuf    uint64            `json:"udp_rcvbuf_errors"`
	LinkDrops    map[string]uint64 `json:"link_drops,omitempty"` // "tun rx", "wan tx", ...

	KernelKeys     map[string]int `json:"kernel_keys,omitempty"` // by status
	KernelCritical int            `json:"kernel_critical"`
	KernelDrift    []string       `json:"kernel_drift,omitempty"` // keys not as wanted

	MetricsURL string `json:"metrics_url,omitempty"`
	// Warnings say what is wrong and what to do.
	Warnings []string `json:"warnings,omitempty"`
}

// SchedulerLoad is the scheduler part of Load.
type SchedulerLoad struct {
	Discipline      string  `json:"discipline"`
	EgressRate      uint64  `json:"egress_rate"` // bit/s, 0 = unpaced
	IngressRate     uint64  `json:"ingress_rate"`
	QueueBytesDown  int64   `json:"queue_bytes_down"`
	QueueBytesUp    int64   `json:"queue_bytes_up"`
	LimitBytes      int64   `json:"limit_bytes"`
	OverflowDrops   uint64  `json:"overflow_drops"` // both directions, cumulative
	CoDelDrops      uint64  `json:"codel_drops"`
	CEMarks         uint64  `json:"ce_marks"`
	SentBytesDown   uint64  `json:"sent_bytes_down"`
	SentBytesUp     uint64  `json:"sent_bytes_up"`
	InflightBytes   int64   `json:"inflight_bytes"`
	SojournP99Ms    float64 `json:"sojourn_p99_ms"` // since the scheduler started
	BackloggedFlows int     `json:"backlogged_flows"`
}

// TopMember is one row of GET /v1/top.
type TopMember struct {
	Label         string    `json:"label"`
	PublicKey     string    `json:"public_key"`
	State         string    `json:"state"`
	RateIn        float64   `json:"rate_in"` // bits/s from the member
	RateOut       float64   `json:"rate_out"`
	BytesIn       uint64    `json:"bytes_in"`
	BytesOut      uint64    `json:"bytes_out"`
	QueueBytes    int64     `json:"queue_bytes"`
	QueueDelayMs  float64   `json:"queue_delay_ms"`
	Drops         uint64    `json:"drops"`
	DropRate      float64   `json:"drop_rate"` // packets/s
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	// Conns are the member's tracked connections (both families) and
	// ConnDrops its new connections dropped at its quota or rate.
	Conns     int    `json:"conns"`
	ConnDrops uint64 `json:"conn_drops,omitempty"`
}

// Top is GET /v1/top.
type Top struct {
	Load    Load        `json:"load"`
	Sort    string      `json:"sort"`
	Members []TopMember `json:"members"`
}

// Sort keys of GET /v1/top.
const (
	SortRate  = "rate"
	SortQueue = "queue"
	SortDrops = "drops"
)

// MaxTop bounds GET /v1/top's n.
const MaxTop = 1000

// MetricsBackend is the observability part of the daemon; a Backend that
// also implements it serves the endpoints above.
type MetricsBackend interface {
	// Load returns the node's figures now.
	Load(ctx context.Context) (Load, error)
	// Top returns the n busiest members by sort (a Sort* key).
	Top(ctx context.Context, n int, sort string) (Top, error)
	// Samples returns the load report's samples at or after since.
	Samples(ctx context.Context, since time.Time) ([]report.Sample, error)
}

// metricsRoutes registers the observability endpoints on mux.
func (h *handler) metricsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/load", h.load)
	mux.HandleFunc("GET /v1/top", h.top)
	mux.HandleFunc("GET /v1/samples", h.samples)
}

func (h *handler) metrics(w http.ResponseWriter) (MetricsBackend, bool) {
	mb, ok := h.b.(MetricsBackend)
	if !ok {
		writeError(w, http.StatusNotFound, CodeNotFound, "this node does not serve load figures")
	}
	return mb, ok
}

func (h *handler) load(w http.ResponseWriter, r *http.Request) {
	mb, ok := h.metrics(w)
	if !ok {
		return
	}
	l, err := mb.Load(r.Context())
	h.reply(w, http.StatusOK, l, err)
}

// ParseTopQuery validates GET /v1/top's query: n in 1..MaxTop (default
// 20), sort one of rate, queue, drops (default rate).
func ParseTopQuery(q url.Values) (int, string, error) {
	n := 20
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > MaxTop {
			return 0, "", fmt.Errorf("n must be 1..%d, got %q", MaxTop, s)
		}
		n = v
	}
	sort := q.Get("sort")
	switch sort {
	case "":
		sort = SortRate
	case SortRate, SortQueue, SortDrops:
	default:
		return 0, "", fmt.Errorf("sort must be rate, queue or drops, got %q", sort)
	}
	return n, sort, nil
}

func (h *handler) top(w http.ResponseWriter, r *http.Request) {
	mb, ok := h.metrics(w)
	if !ok {
		return
	}
	n, sort, err := ParseTopQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	t, err := mb.Top(r.Context(), n, sort)
	h.reply(w, http.StatusOK, t, err)
}

func (h *handler) samples(w http.ResponseWriter, r *http.Request) {
	mb, ok := h.metrics(w)
	if !ok {
		return
	}
	var since time.Time
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("since must be RFC 3339 (2006-01-02T15:04:05Z), got %q", s))
			return
		}
		since = t
	}
	ss, err := mb.Samples(r.Context(), since)
	if ss == nil {
		ss = []report.Sample{}
	}
	h.reply(w, http.StatusOK, ss, err)
}

// Load fetches GET /v1/load.
func (c *Client) Load(ctx context.Context) (Load, error) {
	var l Load
	return l, c.do(ctx, http.MethodGet, "/v1/load", nil, &l)
}

// Top fetches the n busiest members by sort.
func (c *Client) Top(ctx context.Context, n int, sort string) (Top, error) {
	var t Top
	v := url.Values{"n": {strconv.Itoa(n)}}
	if sort != "" {
		v.Set("sort", sort)
	}
	return t, c.do(ctx, http.MethodGet, "/v1/top?"+v.Encode(), nil, &t)
}

// Samples fetches the load report's samples at or after since (zero: all).
func (c *Client) Samples(ctx context.Context, since time.Time) ([]report.Sample, error) {
	var ss []report.Sample
	path := "/v1/samples"
	if !since.IsZero() {
		path += "?" + url.Values{"since": {since.UTC().Format(time.RFC3339)}}.Encode()
	}
	return ss, c.do(ctx, http.MethodGet, path, nil, &ss)
}
