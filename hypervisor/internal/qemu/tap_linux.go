package qemu

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// attachTaps enslaves the VM's tap NICs (created by QEMU, which has
// finished initialising its netdevs once QMP answers) to their bridges,
// with the bridge's MTU, and brings them up. The taps vanish with QEMU.
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
		// A port with a smaller MTU than the bridge's would lower the
		// bridge's (the kernel keeps it at its ports' minimum), cutting the
		// LAN of a jumbo-frame site to 1500 for the node: match it first.
		if mtu := br.Attrs().MTU; mtu > 0 && tap.Attrs().MTU != mtu {
			if err := netlink.LinkSetMTU(tap, mtu); err != nil {
				return fmt.Errorf("nic %d: set tap %s MTU to bridge %s's %d: %w", i, name, n.Bridge, mtu, err)
			}
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
