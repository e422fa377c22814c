package node

import (
	"net/netip"
	"testing"

	"exitd/members"
)

// Regression (fixed): applyRemote puts the members another node added into the device
// first and cuts the reused addresses' flows afterwards (through
// cutMembers: while the node runs, routineCut flushes up to cutCoalesce =
// 500 ms later). AddMembers does it the other way round for a reason its
// comment gives: "A reused address starts with no tracked flows: flushed
// now, before the member is in the device (never later, when its own flows
// exist)". On every node but the one that took the request, the new
// member's first connections can be cut.
func TestApplyRemoteCutsReusedAddressBeforeDevice(t *testing.T) {
	n, _, _, _ := quotaNode(t) // no quarantine
	bob, err := n.reg.AddBatch([]members.AddRequest{{Label: "bob"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.reg.RemoveBatch([]string{"bob"}); err != nil {
		t.Fatal(err)
	}
	carol, err := n.reg.AddBatch([]members.AddRequest{{Label: "carol", IPv4: bob[0].IPv4}})
	if err != nil || !carol[0].ReusedAddress {
		t.Fatalf("%+v %v", carol, err)
	}
	var cuts, afterDevice int
	n.flushCT = func(ps ...netip.Prefix) (int, error) {
		cuts++
		if inDevice(t, n, carol[0]) {
			afterDevice++
		}
		return 0, nil
	}
	n.applyRemote(added(carol...))
	if cuts == 0 {
		t.Fatal("the reused address's flows were not cut")
	}
	if afterDevice > 0 {
		t.Fatal("the reused address's flows were cut after carol was in the device: her own new flows go too")
	}
}
