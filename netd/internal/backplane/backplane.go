// Package backplane derives a node's zero-config backplane address: an
// IPv6 unique-local address in Shoal's fixed prefix fd53:686f:616c::/64
// ("Sho" "al" in ASCII) whose interface ID is a hash of the node ID. The
// derivation is stable (same node ID, same address on every boot and
// every NIC) and avoids the reserved interface IDs of RFC 5453. Two nodes
// whose IDs hash alike are caught by the kernel's duplicate address
// detection, which netd reports; the chance is about n²/2⁶⁵.
package backplane

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Prefix is Shoal's backplane /64.
var Prefix = netip.MustParsePrefix("fd53:686f:616c::/64")

// Address returns the node's backplane address with its /64 prefix length.
func Address(nodeID string) (netip.Prefix, error) {
	if nodeID == "" {
		return netip.Prefix{}, fmt.Errorf("derive backplane address: empty node ID")
	}
	for i := uint32(0); ; i++ {
		h := sha256.New()
		fmt.Fprintf(h, "shoal-backplane-v1\x00%s\x00%d", nodeID, i)
		iid := binary.BigEndian.Uint64(h.Sum(nil)[:8])
		if Reserved(iid) {
			continue
		}
		b := Prefix.Addr().As16()
		binary.BigEndian.PutUint64(b[8:], iid)
		return netip.PrefixFrom(netip.AddrFrom16(b), Prefix.Bits()), nil
	}
}

// Reserved reports whether an interface ID is reserved by RFC 5453: the
// subnet-router anycast ID (all zeros), the proxy mobile IPv6 range
// 0200:5EFF:FE00:0000–FFFF (which covers the reserved EUI-64 form), and
// the subnet anycast IDs FDFF:FFFF:FFFF:FF80–FFFF.
func Reserved(iid uint64) bool {
	switch {
	case iid == 0:
		return true
	case iid>>16 == 0x02005EFFFE00:
		return true
	case iid >= 0xFDFFFFFFFFFFFF80:
		return true
	}
	return false
}
