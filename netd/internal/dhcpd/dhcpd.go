package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// Config configures a server.
type Config struct {
	Interface string       // required for Run
	Server    netip.Prefix // the server's own address on Interface, with the subnet's length; required
	First     netip.Addr   // first address of the pool; required
	Last      netip.Addr   // last address of the pool; required
	Router    netip.Addr   // invalid: none
	DNS       []netip.Addr
	Lease     time.Duration // 0: 1 h
	T1, T2    time.Duration // 0: lease/2 and lease*7/8
	Log       *slog.Logger  // nil: discard
	Now       func() time.Time
}

// Server hands out addresses.
type Server struct {
	cfg    Config
	log    *slog.Logger
	mu     sync.Mutex
	byMAC  map[string]binding
	byAddr map[netip.Addr]string
}

type binding struct {
	addr    netip.Addr
	expires time.Time
}

// New checks cfg and returns a server.
func New(cfg Config) (*Server, error) {
	if !cfg.Server.IsValid() || !cfg.Server.Addr().Is4() {
		return nil, errors.New("dhcp server: Server must be an IPv4 address with prefix length")
	}
	subnet := cfg.Server.Masked()
	if !cfg.First.Is4() || !cfg.Last.Is4() || !subnet.Contains(cfg.First) || !subnet.Contains(cfg.Last) || cfg.Last.Less(cfg.First) {
		return nil, fmt.Errorf("dhcp server: pool %s-%s is not inside %s", cfg.First, cfg.Last, subnet)
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Hour
	}
	if cfg.T1 <= 0 {
		cfg.T1 = cfg.Lease / 2
	}
	if cfg.T2 <= 0 {
		cfg.T2 = cfg.Lease * 7 / 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, byMAC: map[string]binding{}, byAddr: map[netip.Addr]string{}}, nil
}

// Run serves DHCP on the interface until ctx ends; it returns nil then.
func (s *Server) Run(ctx context.Context) error {
	srv, err := server4.NewServer(s.cfg.Interface, &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		reply := s.Handle(m)
		if reply == nil {
			return
		}
		dst := peer
		if up, ok := peer.(*net.UDPAddr); ok && reply.MessageType() == dhcpv4.MessageTypeNak {
			dst = &net.UDPAddr{IP: net.IPv4bcast, Port: up.Port}
		}
		if _, err := conn.WriteTo(reply.ToBytes(), dst); err != nil {
			s.log.Warn("send DHCP reply", "to", dst, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("dhcp server on %s: %w", s.cfg.Interface, err)
	}
	s.log.Info("DHCP server up", "iface", s.cfg.Interface, "pool", s.cfg.First.String()+"-"+s.cfg.Last.String())
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	select {
	case <-ctx.Done():
		srv.Close()
		<-done
		return nil
	case err := <-done:
		return fmt.Errorf("dhcp server on %s: %w", s.cfg.Interface, err)
	}
}

// Handle answers one message; nil means no answer.
func (s *Server) Handle(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return nil
	}
	mac := m.ClientHWAddr.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		addr, ok := s.pick(mac, ipOf(m.RequestedIPAddress()), now)
		if !ok {
			s.log.Warn("DHCP pool exhausted", "mac", mac)
			return nil
		}
		return s.reply(m, dhcpv4.MessageTypeOffer, addr)
	case dhcpv4.MessageTypeRequest:
		if sid := ipOf(m.ServerIdentifier()); sid.IsValid() && sid != s.cfg.Server.Addr() {
			// The client chose another server: forget our offer.
			if b, ok := s.byMAC[mac]; ok && !b.expires.After(now) {
				s.free(mac)
			}
			return nil
		}
		want := ipOf(m.RequestedIPAddress())
		if !want.IsValid() {
			want = ipOf(m.ClientIPAddr)
		}
		b, ok := s.byMAC[mac]
		switch {
		case ok && b.addr == want:
		case !ok && want.IsValid() && s.inPool(want) && s.byAddr[want] == "":
			// A client we do not know (we restarted, or it rebinds to us).
		default:
			s.log.Info("DHCP NAK", "mac", mac, "requested", want)
			return s.reply(m, dhcpv4.MessageTypeNak, netip.Addr{})
		}
		s.bind(mac, want, now.Add(s.cfg.Lease))
		s.log.Debug("DHCP ACK", "mac", mac, "addr", want)
		return s.reply(m, dhcpv4.MessageTypeAck, want)
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		if b, ok := s.byMAC[mac]; ok {
			s.free(mac)
			if m.MessageType() == dhcpv4.MessageTypeDecline {
				s.byAddr[b.addr] = "declined"
			}
		}
	}
	return nil
}

// pick returns the MAC's address: its binding, else the one it asks for
// if free, else the first free one. An offer holds the address 1 minute.
func (s *Server) pick(mac string, want netip.Addr, now time.Time) (netip.Addr, bool) {
	if b, ok := s.byMAC[mac]; ok {
		s.bind(mac, b.addr, maxTime(b.expires, now.Add(time.Minute)))
		return b.addr, true
	}
	if want.IsValid() && s.inPool(want) && s.available(want, now) {
		s.bind(mac, want, now.Add(time.Minute))
		return want, true
	}
	for a := s.cfg.First; !s.cfg.Last.Less(a); a = a.Next() {
		if a == s.cfg.Server.Addr() || a == s.cfg.Router {
			continue
		}
		if s.available(a, now) {
			s.bind(mac, a, now.Add(time.Minute))
			return a, true
		}
	}
	return netip.Addr{}, false
}

// available reports whether a is unbound, reclaiming an expired binding.
func (s *Server) available(a netip.Addr, now time.Time) bool {
	owner := s.byAddr[a]
	if owner == "" {
		return true
	}
	if b, ok := s.byMAC[owner]; ok && !b.expires.After(now) {
		s.free(owner)
		return true
	}
	return false
}

func (s *Server) inPool(a netip.Addr) bool {
	return a.Is4() && !a.Less(s.cfg.First) && !s.cfg.Last.Less(a) && a != s.cfg.Server.Addr()
}

func (s *Server) bind(mac string, a netip.Addr, expires time.Time) {
	if old, ok := s.byMAC[mac]; ok && old.addr != a {
		delete(s.byAddr, old.addr)
	}
	s.byMAC[mac] = binding{addr: a, expires: expires}
	s.byAddr[a] = mac
}

func (s *Server) free(mac string) {
	if b, ok := s.byMAC[mac]; ok {
		delete(s.byAddr, b.addr)
		delete(s.byMAC, mac)
	}
}

func (s *Server) reply(m *dhcpv4.DHCPv4, t dhcpv4.MessageType, addr netip.Addr) *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(t),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.Server.Addr().AsSlice())),
	}
	if t != dhcpv4.MessageTypeNak {
		mask := net.CIDRMask(s.cfg.Server.Bits(), 32)
		mods = append(mods,
			dhcpv4.WithYourIP(addr.AsSlice()),
			dhcpv4.WithOption(dhcpv4.OptSubnetMask(mask)),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.cfg.Lease)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(s.cfg.T1)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(s.cfg.T2)))
		if s.cfg.Router.IsValid() {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(s.cfg.Router.AsSlice())))
		}
		if len(s.cfg.DNS) > 0 {
			var dns []net.IP
			for _, d := range s.cfg.DNS {
				dns = append(dns, d.AsSlice())
			}
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(dns...)))
		}
	}
	r, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		s.log.Warn("build DHCP reply", "err", err)
		return nil
	}
	return r
}

func ipOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
