// Package netd brings the node's network up with no configuration: it finds
// the physical NICs, bonds them, puts the bond in the LAN bridge (br-lan,
// which VM NICs join and which carries the node's addresses), runs the
// DHCP client and gives the node its zero-config backplane address (an
// IPv6 unique-local address in fd53:686f:616c::/64 derived from the node
// ID; see internal/backplane).
//
// Shape: a level-triggered reconcile loop. Every pass (each Interval, and
// whenever a DHCP client changes state) reads the desired spec (the file
// at Config.SpecPath, or the defaults when there is none), observes the
// links over netlink, plans the actions that move them towards the spec
// (internal/netspec, a pure function), applies them, starts or stops one
// DHCP client per interface that wants one (internal/dhcpc), and writes
// the observed Status to Config.StatusPath (atomically: temp + rename).
// Config.Ready is called once, when the LAN interface has an IPv4 address
// and the backplane address has passed duplicate address detection.
//
// Concurrency: Run owns every goroutine it starts (the DHCP clients) and
// waits for them before it returns. Run returns nil when ctx ends.
//
// Caveats: netd never tears the network down when it stops: addresses,
// bonds and leases stay, so a restart of netd does not cut the node off;
// a leased address is installed with the lease's lifetime, so the kernel
// drops it if nobody renews it. Without bonding in the kernel (containers,
// this repository's CI host), netd uses one NIC directly and says so in
// the log and in Status.Notes; likewise without the bridge driver, the
// LAN has no bridge. netd changes only bridges it created (marked with
// netspec.BridgeAlias); others, and their ports, are never touched.
package netd
