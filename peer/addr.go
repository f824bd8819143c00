package peer

import (
	"errors"
	"net"
)

// BackplanePrefix is the Shoal backplane's unique-local /64.
var BackplanePrefix = &net.IPNet{IP: net.ParseIP("fd53:686f:616c::"), Mask: net.CIDRMask(64, 128)}

// AutoBind picks the backplane address among addrs: an address in
// BackplanePrefix, else the first global unicast address (IPv4 or IPv6),
// never loopback or link-local.
func AutoBind(addrs []net.IP) (net.IP, error) {
	for _, ip := range addrs {
		if BackplanePrefix.Contains(ip) {
			return ip, nil
		}
	}
	for _, ip := range addrs {
		if ip.IsGlobalUnicast() && !ip.IsLinkLocalUnicast() && !BackplanePrefix.Contains(ip) {
			return ip, nil
		}
	}
	return nil, errors.New("no backplane address: want an fd53:686f:616c::/64 or global unicast address (is netd up?); pass --bind to choose one")
}

func interfaceAddrs() ([]net.IP, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			ips = append(ips, n.IP)
		}
	}
	return ips, nil
}
