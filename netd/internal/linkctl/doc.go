// Package linkctl is netd's hands on the kernel: it observes links and
// addresses over rtnetlink (vishvananda/netlink) into a netspec.Observed,
// applies netspec actions one by one, and manages the addresses and routes
// a DHCP lease brings. Linux only; elsewhere New returns ErrUnsupported.
//
// A Ctl holds one netlink handle opened in the network namespace of the
// thread that called New; it is safe for use by several goroutines (the
// netlink handle serialises requests). Actions are applied in the order
// given; the first error stops the pass (the next pass plans again).
package linkctl
