package control

import (
	"context"
	"net/http"
	"time"
)

// ClusterNode is one exit node of the cluster as it published itself in
// the shared store (refreshed every few seconds; gone when its lease ends).
type ClusterNode struct {
	Name             string `json:"name"`
	Endpoint         string `json:"endpoint"`
	Version          string `json:"version"`
	MembersConnected int    `json:"members_connected"`
	MembersTotal     int    `json:"members_total"`
	RateIn           uint64 `json:"rate_in"`  // bits/s from members
	RateOut          uint64 `json:"rate_out"` // bits/s to members
	// FreeRate is the download capacity left, bits/s: the pacing rate
	// less RateOut (the Dante report's "free slots"); 0 when unpaced.
	FreeRate uint64 `json:"free_rate"`
	// KernelOK: the kernel profile holds (no safety-critical drift);
	// TableOK: exitd's nftables table is installed.
	KernelOK bool      `json:"kernel_ok"`
	TableOK  bool      `json:"table_ok"`
	Updated  time.Time `json:"updated"`
}

// Cluster is GET /v1/cluster.
type Cluster struct {
	// Self is this node's name; Prefix the cluster's key prefix.
	Self   string `json:"self"`
	Prefix string `json:"prefix"`
	// StoreUp: etcd answered this request; when false, Nodes is empty and
	// members keep working from the local cache.
	StoreUp bool          `json:"store_up"`
	Error   string        `json:"error,omitempty"`
	Nodes   []ClusterNode `json:"nodes"`
}

// ClusterBackend is the cluster part of the daemon; a Backend that also
// implements it serves GET /v1/cluster.
type ClusterBackend interface {
	Cluster(ctx context.Context) (Cluster, error)
}

func (h *handler) cluster(w http.ResponseWriter, r *http.Request) {
	cb, ok := h.b.(ClusterBackend)
	if !ok {
		writeError(w, http.StatusNotFound, CodeNotFound, "this node is not built with clusters")
		return
	}
	c, err := cb.Cluster(r.Context())
	h.reply(w, http.StatusOK, c, err)
}

// Cluster returns the cluster's nodes (GET /v1/cluster).
func (c *Client) Cluster(ctx context.Context) (Cluster, error) {
	var cl Cluster
	return cl, c.do(ctx, http.MethodGet, "/v1/cluster", nil, &cl)
}
