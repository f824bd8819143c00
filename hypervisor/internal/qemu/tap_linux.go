package qemu

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// attachTaps enslaves the VM's tap NICs (created by QEMU, which has
// finished initialising its netdevs once QMP answers) to their bridges
// and brings them up. The taps vanish with QEMU.
func attachTaps(spec Spec) error {
	for i, n := range spec.NICs {
		if n.Kind != NICTap {
			continue
		}
		name := TapName(spec.ID, i)
		tap, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("nic %d: find tap %s: %w", i, name, err)
		}
		br, err := netlink.LinkByName(n.Bridge)
		if err != nil {
			return fmt.Errorf("nic %d: find bridge %s (netd creates it): %w", i, n.Bridge, err)
		}
		if err := netlink.LinkSetMaster(tap, br); err != nil {
			return fmt.Errorf("nic %d: put tap %s on bridge %s: %w", i, name, n.Bridge, err)
		}
		if err := netlink.LinkSetUp(tap); err != nil {
			return fmt.Errorf("nic %d: bring tap %s up: %w", i, name, err)
		}
	}
	return nil
}
