package node

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// checkWAN refuses to start when the WAN interface does not exist: the
// ruleset matches it by name and would silently forward nothing.
func (n *Node) checkWAN() (func(), error) {
	name := n.config().WAN.Interface
	if _, err := netlink.LinkByName(name); err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("wan.interface %q: no such interface (see `ip link`)", name)
		}
		return nil, fmt.Errorf("wan.interface %q: %w", name, err)
	}
	return nil, nil
}
