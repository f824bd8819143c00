package netd

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/shoal-hci/shoal/netd/internal/dhcpd"
)

// DHCPServerConfig configures ServeDHCP. Zero values: no router, no DNS,
// lease 1 h, T1 and T2 at 1/2 and 7/8 of the lease.
type DHCPServerConfig struct {
	Interface   string       // required
	Server      netip.Prefix // the server's address on Interface with the subnet length; required
	First, Last netip.Addr   // the pool; required, inside Server's subnet
	Router      netip.Addr
	DNS         []netip.Addr
	Lease       time.Duration
	T1, T2      time.Duration
	Log         *slog.Logger
}

// ServeDHCP runs a small DHCPv4 server on one interface until ctx ends
// (then it returns nil). It is for tests and test harnesses (a node that
// plays the site's DHCP server), not for production networks: bindings
// live in memory only.
func ServeDHCP(ctx context.Context, cfg DHCPServerConfig) error {
	s, err := dhcpd.New(dhcpd.Config{Interface: cfg.Interface, Server: cfg.Server, First: cfg.First, Last: cfg.Last,
		Router: cfg.Router, DNS: cfg.DNS, Lease: cfg.Lease, T1: cfg.T1, T2: cfg.T2, Log: cfg.Log})
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
