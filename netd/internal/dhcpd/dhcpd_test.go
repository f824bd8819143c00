package dhcpd

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func newServer(t *testing.T, last string) (*Server, *time.Time) {
	t.Helper()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := New(Config{Server: netip.MustParsePrefix("10.99.0.1/24"), First: netip.MustParseAddr("10.99.0.1"), Last: netip.MustParseAddr(last),
		Router: netip.MustParseAddr("10.99.0.1"), DNS: []netip.Addr{netip.MustParseAddr("10.99.0.53")}, Lease: 2 * time.Minute, T1: 5 * time.Second, T2: 10 * time.Second,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s, &now
}

func mac(b byte) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0, 0, 0, b} }

func discover(t *testing.T, hw net.HardwareAddr) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.NewDiscovery(hw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func request(t *testing.T, offer *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDORAAndRenew(t *testing.T) {
	s, now := newServer(t, "10.99.0.10")
	offer := s.Handle(discover(t, mac(1)))
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.Equal(net.ParseIP("10.99.0.2")) {
		t.Fatalf("offer %v, want 10.99.0.2 (the first free after the server's own)", offer)
	}
	ack := s.Handle(request(t, offer))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("ack %v", ack)
	}
	if ack.IPAddressRenewalTime(0) != 5*time.Second || ack.IPAddressLeaseTime(0) != 2*time.Minute || len(ack.Router()) != 1 || len(ack.DNS()) != 1 {
		t.Errorf("ack options: T1 %v lease %v router %v dns %v", ack.IPAddressRenewalTime(0), ack.IPAddressLeaseTime(0), ack.Router(), ack.DNS())
	}
	*now = now.Add(time.Minute)
	renew, err := dhcpv4.NewRenewFromAck(ack)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Handle(renew); r == nil || r.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("renewal answered %v, want ACK", r)
	}
	// Sticky: the same MAC gets the same address again.
	if o := s.Handle(discover(t, mac(1))); o == nil || !o.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Errorf("second discover offered %v, want %s", o, offer.YourIPAddr)
	}
	// Another MAC gets another address.
	if o := s.Handle(discover(t, mac(2))); o == nil || o.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Errorf("other MAC offered %v", o)
	}
}

func TestNAKForAddressNotOurs(t *testing.T) {
	s, _ := newServer(t, "10.99.0.10")
	offer := s.Handle(discover(t, mac(1)))
	s.Handle(request(t, offer))
	// MAC 2 asks for MAC 1's address (INIT-REBOOT style).
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(2)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)))
	if r := s.Handle(m); r == nil || r.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("request for another's address answered %v, want NAK", r)
	}
	// Outside the pool.
	m, _ = dhcpv4.New(dhcpv4.WithHwAddr(mac(3)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.99.0.200"))))
	if r := s.Handle(m); r == nil || r.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("request outside the pool answered %v, want NAK", r)
	}
	// A free address in the pool from an unknown client (we restarted): ACK.
	m, _ = dhcpv4.New(dhcpv4.WithHwAddr(mac(4)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.99.0.9"))))
	if r := s.Handle(m); r == nil || r.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("request for a free address answered %v, want ACK", r)
	}
}

func TestOtherServerAndRelease(t *testing.T) {
	s, _ := newServer(t, "10.99.0.3")
	offer := s.Handle(discover(t, mac(1)))
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(1)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.99.0.254"))), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)))
	if r := s.Handle(m); r != nil {
		t.Errorf("request to another server answered %v", r)
	}
	ack := s.Handle(request(t, offer))
	// Pool of 10.99.0.2-3: fill it.
	s.Handle(request(t, s.Handle(discover(t, mac(2)))))
	if o := s.Handle(discover(t, mac(3))); o != nil {
		t.Errorf("exhausted pool offered %v", o)
	}
	rel, _ := dhcpv4.NewReleaseFromACK(ack)
	if r := s.Handle(rel); r != nil {
		t.Errorf("release answered %v", r)
	}
	if o := s.Handle(discover(t, mac(3))); o == nil || !o.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Errorf("after release offered %v, want the released %s", o, offer.YourIPAddr)
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := New(Config{Server: netip.MustParsePrefix("10.99.0.1/24"), First: netip.MustParseAddr("10.98.0.2"), Last: netip.MustParseAddr("10.98.0.9")}); err == nil {
		t.Error("pool outside the subnet accepted")
	}
}
