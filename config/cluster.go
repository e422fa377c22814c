package config

import (
	"net/url"
	"strings"
)

// DefaultClusterPrefix is the etcd key prefix of a cluster's member store
// when [cluster] prefix is not set.
const DefaultClusterPrefix = "/exitd/default"

// Cluster puts the member registry on etcd, shared by every exit node of
// the cluster (docs/members.md, "The store"). Off (the bbolt registry in
// state_dir) when Endpoints is empty.
type Cluster struct {
	// Endpoints are the etcd client URLs ("https://10.0.0.5:2379") or
	// host:port pairs.
	Endpoints []string `toml:"endpoints"`
	// Cert and Key are this node's etcd client certificate and key, CA the
	// servers' CA; any of them turns TLS on.
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	CA   string `toml:"ca"`
	// Prefix is the cluster's key prefix (default "/exitd/default"):
	// clusters sharing one etcd use different prefixes.
	Prefix string `toml:"prefix"`
	// MaxTxnOps is the etcd servers' --max-txn-ops (default 128, etcd's):
	// bulk adds are split into transactions of at most this many
	// operations (3 per member), so raising both speeds them up.
	MaxTxnOps int `toml:"max_txn_ops"`
	// Name is this node's name in the cluster (default: the host name);
	// two live nodes may not share one.
	Name string `toml:"name"`
	// WireGuardKey is the cluster's WireGuard private key file, provisioned
	// on every node (never stored in etcd), so one client config works on
	// every node; "" keeps the node's own key (state_dir/private.key).
	WireGuardKey string `toml:"wireguard_key"`
}

// On reports whether the registry lives on etcd.
func (c Cluster) On() bool { return len(c.Endpoints) > 0 }

func (c *Cluster) finish() error {
	if !c.On() {
		if c.Cert != "" || c.Key != "" || c.CA != "" || c.Prefix != "" || c.WireGuardKey != "" || c.Name != "" || c.MaxTxnOps != 0 {
			return bad("cluster.endpoints", "[cluster] settings without endpoints: name the etcd endpoints, or remove the table for a single node")
		}
		return nil
	}
	for i, e := range c.Endpoints {
		host := e
		if strings.Contains(e, "://") {
			u, err := url.Parse(e)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return bad("cluster.endpoints", "endpoint %d %q: want http(s)://host:port or host:port", i, e)
			}
			host = u.Host
		}
		if host == "" || strings.ContainsAny(host, " /") || !strings.Contains(host, ":") {
			return bad("cluster.endpoints", "endpoint %d %q: want http(s)://host:port or host:port", i, e)
		}
	}
	if (c.Cert == "") != (c.Key == "") {
		return bad("cluster.cert", "cert and key go together (this node's etcd client certificate)")
	}
	if c.MaxTxnOps != 0 && (c.MaxTxnOps < 16 || c.MaxTxnOps > 100_000) {
		return bad("cluster.max_txn_ops", "must be 16-100000 (the etcd servers' --max-txn-ops), got %d", c.MaxTxnOps)
	}
	if c.Name != "" && !validNodeName(c.Name) {
		return bad("cluster.name", "want 1-64 letters, digits, '.', '_' or '-', got %q", c.Name)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultClusterPrefix
	}
	if !strings.HasPrefix(c.Prefix, "/") || strings.ContainsAny(c.Prefix, " \t\n") || strings.TrimRight(c.Prefix, "/") == "" {
		return bad("cluster.prefix", "want a key path such as \"/exitd/eu-1\", got %q", c.Prefix)
	}
	return nil
}

// validNodeName: 1-64 letters, digits, '.', '_' and '-' (the node's key in
// etcd and its label in exitctl cluster status).
func validNodeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
