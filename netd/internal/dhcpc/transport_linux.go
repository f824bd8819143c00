package dhcpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// NetTransport is the real Transport, on insomniacslk/dhcp's nclient4: a
// raw socket for the broadcasts (the interface has no address yet) and a
// fresh UDP socket from the leased address for unicast renewals.
type NetTransport struct {
	Interface string
	Hostname  string        // sent as option 12 when set
	Timeout   time.Duration // per packet; 0: 2 s
	Retries   int           // per exchange; 0: 3
}

func (t NetTransport) opts() []nclient4.ClientOpt {
	timeout, retries := t.Timeout, t.Retries
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if retries <= 0 {
		retries = 3
	}
	return []nclient4.ClientOpt{nclient4.WithTimeout(timeout), nclient4.WithRetry(retries)}
}

func (t NetTransport) modifiers() []dhcpv4.Modifier {
	m := []dhcpv4.Modifier{dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
		dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName, dhcpv4.OptionIPAddressLeaseTime,
		dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue)}
	if t.Hostname != "" {
		m = append(m, dhcpv4.WithOption(dhcpv4.OptHostName(t.Hostname)))
	}
	return m
}

// Acquire runs DORA by broadcast.
func (t NetTransport) Acquire(ctx context.Context) (Lease, error) {
	c, err := nclient4.New(t.Interface, t.opts()...)
	if err != nil {
		return Lease{}, fmt.Errorf("open DHCP socket on %s: %w", t.Interface, err)
	}
	defer c.Close()
	l, err := c.Request(ctx, t.modifiers()...)
	if err != nil {
		return Lease{}, mapErr(err)
	}
	return fromNClient(l)
}

// Renew asks the lease's server by unicast.
func (t NetTransport) Renew(ctx context.Context, l Lease) (Lease, error) {
	opts := append(t.opts(),
		nclient4.WithServerAddr(&net.UDPAddr{IP: l.Server.AsSlice(), Port: nclient4.ServerPort}),
		nclient4.WithUnicast(&net.UDPAddr{IP: l.Address.Addr().AsSlice(), Port: nclient4.ClientPort}))
	return t.extend(ctx, l, opts)
}

// Rebind asks any server by broadcast, and takes an answer from any
// server (RFC 2131 §4.4.5), unlike Renew.
func (t NetTransport) Rebind(ctx context.Context, l Lease) (Lease, error) {
	old, err := toNClient(l)
	if err != nil {
		return Lease{}, err
	}
	c, err := nclient4.New(t.Interface, t.opts()...)
	if err != nil {
		return Lease{}, fmt.Errorf("open DHCP socket on %s: %w", t.Interface, err)
	}
	defer c.Close()
	req, err := dhcpv4.NewRenewFromAck(old.ACK, append(t.modifiers(), dhcpv4.WithBroadcast(true))...)
	if err != nil {
		return Lease{}, err
	}
	resp, err := c.SendAndRead(ctx, c.RemoteAddr(), req, nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
	if err != nil {
		return Lease{}, err
	}
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return Lease{}, fmt.Errorf("%w: %s", ErrNAK, resp.Message())
	}
	return leaseFromACK(resp, resp, time.Now())
}

func (t NetTransport) extend(ctx context.Context, l Lease, opts []nclient4.ClientOpt) (Lease, error) {
	old, err := toNClient(l)
	if err != nil {
		return Lease{}, err
	}
	c, err := nclient4.New(t.Interface, opts...)
	if err != nil {
		return Lease{}, fmt.Errorf("open DHCP socket on %s: %w", t.Interface, err)
	}
	defer c.Close()
	nl, err := c.Renew(ctx, old, t.modifiers()...)
	if err != nil {
		return Lease{}, mapErr(err)
	}
	return fromNClient(nl)
}

func mapErr(err error) error {
	var nak *nclient4.ErrNak
	if errors.As(err, &nak) {
		return fmt.Errorf("%w: %v", ErrNAK, err)
	}
	return err
}

func toNClient(l Lease) (*nclient4.Lease, error) {
	offer, err := dhcpv4.FromBytes(l.Offer)
	if err != nil {
		return nil, fmt.Errorf("decode saved offer: %w", err)
	}
	ack, err := dhcpv4.FromBytes(l.ACK)
	if err != nil {
		return nil, fmt.Errorf("decode saved ACK: %w", err)
	}
	return &nclient4.Lease{Offer: offer, ACK: ack, CreationTime: l.Obtained}, nil
}

func fromNClient(nl *nclient4.Lease) (Lease, error) {
	return leaseFromACK(nl.Offer, nl.ACK, nl.CreationTime)
}

// leaseFromACK turns a server's ACK into a Lease.
func leaseFromACK(offer, ack *dhcpv4.DHCPv4, at time.Time) (Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return Lease{}, fmt.Errorf("DHCP ACK without an address")
	}
	bits := 24
	if m := ack.SubnetMask(); m != nil {
		bits, _ = m.Size()
	}
	server, _ := netip.AddrFromSlice(ack.ServerIdentifier().To4())
	if !server.IsValid() {
		server, _ = netip.AddrFromSlice(offer.ServerIdentifier().To4())
	}
	l := Lease{
		Address:  netip.PrefixFrom(ip, bits),
		Server:   server,
		Obtained: at,
		Duration: ack.IPAddressLeaseTime(time.Hour),
		T1:       ack.IPAddressRenewalTime(0),
		T2:       ack.IPAddressRebindingTime(0),
		Domain:   ack.DomainName(),
		Offer:    offer.ToBytes(),
		ACK:      ack.ToBytes(),
	}
	if r := ack.Router(); len(r) > 0 {
		l.Router, _ = netip.AddrFromSlice(r[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	return l.withDefaults(), nil
}
