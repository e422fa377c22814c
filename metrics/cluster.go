package metrics

import "github.com/prometheus/client_golang/prometheus"

// ClusterStats is this node's view of its cluster, as the node's refresh
// loop last saw it (every 5 s; a scrape never asks etcd).
type ClusterStats struct {
	StoreUp    bool // the last refresh reached etcd
	Registered bool // this node's record is live
	Nodes      int  // live nodes at the last refresh
}

// ClusterSource reads the cluster view; ok is false for a single node.
type ClusterSource interface {
	ClusterStats() (s ClusterStats, ok bool)
}

type clusterCollector struct {
	src                   ClusterSource
	up, registered, nodes *prometheus.Desc
}

// NewClusterCollector exports exitd_cluster_*; a node without [cluster]
// exports none of them.
func NewClusterCollector(src ClusterSource) prometheus.Collector {
	return &clusterCollector{src: src,
		up:         prometheus.NewDesc("exitd_cluster_store_up", "1 while etcd (the cluster's member store) answers; at 0 members keep working from the local cache and member changes are refused.", nil, nil),
		registered: prometheus.NewDesc("exitd_cluster_registered", "1 while this node's record (under its lease) is live in the store.", nil, nil),
		nodes:      prometheus.NewDesc("exitd_cluster_nodes", "Live nodes of the cluster at the last refresh.", nil, nil),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.registered
	ch <- c.nodes
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.src.ClusterStats()
	if !ok {
		return
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, b(s.StoreUp))
	ch <- prometheus.MustNewConstMetric(c.registered, prometheus.GaugeValue, b(s.Registered))
	ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(s.Nodes))
}
