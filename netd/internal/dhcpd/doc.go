// Package dhcpd is a small DHCPv4 server (insomniacslk/dhcp server4) for
// tests and test harnesses: one interface, one pool, sticky addresses per
// MAC, offers, ACKs for renewals and rebinds, NAKs for addresses it did not
// give, releases. It is not meant for production networks: no persistence
// of bindings, no relays, no options beyond mask, router, DNS and timers.
//
// Handle is the protocol logic without sockets (unit-tested); Run serves
// it on the interface. Handle is safe for concurrent use (server4 calls
// the handler in a goroutine per packet).
package dhcpd
