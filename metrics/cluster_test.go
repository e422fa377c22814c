package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeCluster struct {
	s  ClusterStats
	ok bool
}

func (f fakeCluster) ClusterStats() (ClusterStats, bool) { return f.s, f.ok }

func TestClusterCollector(t *testing.T) {
	c := NewClusterCollector(fakeCluster{ClusterStats{StoreUp: true, Registered: true, Nodes: 3}, true})
	want := `
# HELP exitd_cluster_nodes Live nodes of the cluster at the last refresh.
# TYPE exitd_cluster_nodes gauge
exitd_cluster_nodes 3
# HELP exitd_cluster_registered 1 while this node's record (under its lease) is live in the store.
# TYPE exitd_cluster_registered gauge
exitd_cluster_registered 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "exitd_cluster_nodes", "exitd_cluster_registered"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(NewClusterCollector(fakeCluster{})); n != 0 {
		t.Errorf("a single node exports %d cluster series", n)
	}
	down := NewClusterCollector(fakeCluster{ClusterStats{Nodes: 2}, true})
	wantDown := `
# HELP exitd_cluster_store_up 1 while etcd (the cluster's member store) answers; at 0 members keep working from the local cache and member changes are refused.
# TYPE exitd_cluster_store_up gauge
exitd_cluster_store_up 0
`
	if err := testutil.CollectAndCompare(down, strings.NewReader(wantDown), "exitd_cluster_store_up"); err != nil {
		t.Error(err)
	}
}
