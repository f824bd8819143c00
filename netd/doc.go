// Package netd brings the node's network up with no configuration: it finds
// the physical NICs, bonds them, runs the DHCP client and gives the node its
// zero-config backplane address.
package netd
