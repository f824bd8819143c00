// Package dhcpc is netd's DHCPv4 client (RFC 2131) for one interface: it
// waits for carrier before the first DISCOVER, binds a lease, renews it by
// unicast at T1, rebinds by broadcast at T2, drops it on NAK or expiry,
// and, when no server answers, claims an IPv4 link-local address (RFC
// 3927) so a person can still reach the node, while it keeps trying. The
// lease is persisted so it survives a restart of netd; a restored lease is
// verified with an immediate renewal.
//
// The state machine (Run) talks to the network through two small
// interfaces, Transport (DHCP exchanges; the real one is insomniacslk/dhcp
// nclient4) and Host (addresses, routes, carrier, link-local claims), so
// its timers are tested with testing/synctest and fakes. Run owns no
// goroutines beyond the caller's; Status snapshots go out through
// Config.OnChange, called from Run's goroutine.
//
// Addresses are installed with the lease's lifetime, so the kernel drops
// an address netd could not renew even if netd is not running.
package dhcpc
