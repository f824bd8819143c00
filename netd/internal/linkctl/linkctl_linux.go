package linkctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/shoal-hci/shoal/netd/internal/netspec"
)

// Ctl observes and changes links.
type Ctl struct {
	h *netlink.Handle
}

// New opens a netlink handle in the current network namespace.
func New() (*Ctl, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	return &Ctl{h: h}, nil
}

// Close releases the handle.
func (c *Ctl) Close() { c.h.Close() }

// AddrState is an address's duplicate-address-detection state.
type AddrState string

// The DAD states.
const (
	AddrMissing   AddrState = "missing"
	AddrTentative AddrState = "tentative" // DAD still running
	AddrOK        AddrState = "ok"
	AddrDuplicate AddrState = "duplicate" // DAD failed: another host has it
)

// Observe lists links and their addresses. bonding and bridging are
// reported as given (the caller probes them once with BondingAvailable
// and BridgingAvailable).
func (c *Ctl) Observe(bonding, bridging bool) (netspec.Observed, error) {
	links, err := c.h.LinkList()
	if err != nil {
		return netspec.Observed{}, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	gws := map[int]string{}
	routes, err := c.h.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err == nil {
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask) {
				if r.Gw != nil {
					gws[r.LinkIndex] = r.Gw.String()
				}
			}
		}
	}
	obs := netspec.Observed{Bonding: bonding, NoBridging: !bridging}
	for _, l := range links {
		a := l.Attrs()
		ol := netspec.Link{
			Name:     a.Name,
			Kind:     l.Type(),
			MAC:      a.HardwareAddr.String(),
			Up:       a.Flags&net.FlagUp != 0,
			Carrier:  a.RawFlags&unix.IFF_LOWER_UP != 0,
			Master:   names[a.MasterIndex],
			MTU:      a.MTU,
			Loopback: a.Flags&net.FlagLoopback != 0,
			Gateway:  gws[a.Index],
			Alias:    a.Alias,
		}
		if ol.Kind == netspec.KindDevice && a.EncapType != "" && a.EncapType != "ether" {
			ol.Kind = a.EncapType // tunnels, ipip, sit...: not NICs
		}
		switch v := l.(type) {
		case *netlink.Bond:
			ol.BondMode = v.Mode.String()
		case *netlink.Vlan:
			ol.VLANID = v.VlanId
			ol.Parent = names[a.ParentIndex]
		}
		addrs, err := c.h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return netspec.Observed{}, fmt.Errorf("list addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			if p, ok := prefixOf(ad.IPNet); ok && !p.Addr().IsLinkLocalUnicast() {
				ol.Addrs = append(ol.Addrs, p.String())
			}
		}
		obs.Links = append(obs.Links, ol)
	}
	return obs, nil
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// BondingAvailable reports whether the kernel can make bonds: the bonding
// driver is loaded, or creating a probe bond works (which also loads it
// when modprobe is there).
func (c *Ctl) BondingAvailable() bool {
	if _, err := os.Stat("/sys/class/net/bonding_masters"); err == nil {
		return true
	}
	probe := netlink.NewLinkBond(netlink.LinkAttrs{Name: "shoalprobe0"})
	if err := c.h.LinkAdd(probe); err != nil {
		return false
	}
	c.h.LinkDel(probe)
	return true
}

// BridgingAvailable reports whether the kernel can make bridges: the
// bridge driver is built in or loaded, or creating a probe bridge works
// (which loads it when modprobe and the module are there).
func (c *Ctl) BridgingAvailable() bool {
	if _, err := os.Stat("/sys/module/bridge"); err == nil {
		return true
	}
	probe := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "shoalprobe1"}}
	if err := c.h.LinkAdd(probe); err != nil {
		return false
	}
	c.h.LinkDel(probe)
	return true
}

// Apply performs one action.
func (c *Ctl) Apply(a netspec.Action) error {
	if err := c.apply(a); err != nil {
		return fmt.Errorf("%s: %w", a, err)
	}
	return nil
}

func (c *Ctl) apply(a netspec.Action) error {
	if a.Op == netspec.OpCreateBond {
		b := netlink.NewLinkBond(netlink.LinkAttrs{Name: a.Link})
		b.Mode = netlink.StringToBondMode(a.Mode)
		b.Miimon = a.Miimon
		if a.Mode == netspec.Mode8023AD {
			b.LacpRate = netlink.BOND_LACP_RATE_FAST
		}
		return c.h.LinkAdd(b)
	}
	if a.Op == netspec.OpCreateBridge {
		return c.createBridge(a.Link, a.MAC)
	}
	if a.Op == netspec.OpCreateVLAN {
		parent, err := c.h.LinkByName(a.Master)
		if err != nil {
			return err
		}
		return c.h.LinkAdd(&netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: a.Link, ParentIndex: parent.Attrs().Index}, VlanId: a.VLAN})
	}
	l, err := c.h.LinkByName(a.Link)
	if err != nil {
		return err
	}
	switch a.Op {
	case netspec.OpSetUp:
		return c.h.LinkSetUp(l)
	case netspec.OpSetDown:
		return c.h.LinkSetDown(l)
	case netspec.OpDeleteLink:
		return c.h.LinkDel(l)
	case netspec.OpSetMaster:
		m, err := c.h.LinkByName(a.Master)
		if err != nil {
			return err
		}
		return c.h.LinkSetMaster(l, m)
	case netspec.OpSetNoMaster:
		return c.h.LinkSetNoMaster(l)
	case netspec.OpSetMTU:
		return c.h.LinkSetMTU(l, a.MTU)
	case netspec.OpSetMAC:
		mac, err := net.ParseMAC(a.MAC)
		if err != nil {
			return err
		}
		return c.h.LinkSetHardwareAddr(l, mac)
	case netspec.OpAddAddr, netspec.OpDelAddr:
		p, err := netip.ParsePrefix(a.Addr)
		if err != nil {
			return err
		}
		ad := &netlink.Addr{IPNet: ipnet(p)}
		if a.NoDAD && p.Addr().Is6() {
			ad.Flags = unix.IFA_F_NODAD
		}
		if a.Op == netspec.OpDelAddr {
			if err := c.h.AddrDel(l, ad); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
				return err
			}
			return nil // gone already: what the action wanted
		}
		return c.h.AddrReplace(l, ad)
	case netspec.OpDefaultRoute:
		gw, err := netip.ParseAddr(a.Addr)
		if err != nil {
			return err
		}
		return c.h.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice(), Dst: ipnet(netip.MustParsePrefix("0.0.0.0/0"))})
	}
	return fmt.Errorf("unknown action %q", a.Op)
}

// createBridge makes the LAN bridge: MAC mac (when given), netspec's
// BridgeAlias, STP off and forward delay 0 (a port forwards as soon as
// it has carrier, so the first DHCP DISCOVER is not lost). A bridge it
// cannot finish is deleted again, so no half-made bridge carries the
// alias.
func (c *Ctl) createBridge(name, mac string) error {
	attrs := netlink.LinkAttrs{Name: name}
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return err
		}
		attrs.HardwareAddr = hw
	}
	if err := c.h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		return err
	}
	l, err := c.h.LinkByName(name)
	if err == nil {
		if err = setBridgeOptions(l.Attrs().Index); err != nil {
			err = fmt.Errorf("set STP off and forward delay 0: %w", err)
		}
	}
	if err == nil {
		// The kernel ignores an alias given at creation: set it after.
		if err = c.h.LinkSetAlias(l, netspec.BridgeAlias); err != nil {
			err = fmt.Errorf("set alias: %w", err)
		}
	}
	if err != nil && l != nil {
		c.h.LinkDel(l)
	}
	return err
}

// setBridgeOptions sets STP off and forward delay 0 on a bridge; the
// netlink library has no fields for them, so the message is built here
// (IFLA_LINKINFO / IFLA_INFO_DATA / IFLA_BR_*).
func setBridgeOptions(index int) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(0))
	data.AddRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(0))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

func ipnet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// AddrState reports the DAD state of an address on a link.
func (c *Ctl) AddrState(link string, p netip.Prefix) (AddrState, error) {
	l, err := c.h.LinkByName(link)
	if err != nil {
		return AddrMissing, err
	}
	addrs, err := c.h.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return AddrMissing, err
	}
	for _, a := range addrs {
		if q, ok := prefixOf(a.IPNet); ok && q.Addr() == p.Addr() {
			switch {
			case a.Flags&unix.IFA_F_DADFAILED != 0:
				return AddrDuplicate, nil
			case a.Flags&unix.IFA_F_TENTATIVE != 0:
				return AddrTentative, nil
			}
			return AddrOK, nil
		}
	}
	return AddrMissing, nil
}

// Carrier reports whether a link is up with carrier (operstate UP, or
// UNKNOWN for drivers that do not report it, with LOWER_UP).
func (c *Ctl) Carrier(link string) (bool, error) {
	l, err := c.h.LinkByName(link)
	if err != nil {
		return false, err
	}
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_LOWER_UP != 0 &&
		(a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown), nil
}

// HardwareAddr returns a link's MAC address.
func (c *Ctl) HardwareAddr(link string) (net.HardwareAddr, error) {
	l, err := c.h.LinkByName(link)
	if err != nil {
		return nil, err
	}
	return l.Attrs().HardwareAddr, nil
}

// SetAddr puts an IPv4 address on a link with the given lifetime (0:
// forever), so the kernel itself drops a lease netd could not renew.
func (c *Ctl) SetAddr(link string, p netip.Prefix, valid time.Duration) error {
	l, err := c.h.LinkByName(link)
	if err != nil {
		return err
	}
	ad := &netlink.Addr{IPNet: ipnet(p)}
	if p.Addr().IsLinkLocalUnicast() {
		ad.Scope = unix.RT_SCOPE_LINK
	}
	if valid > 0 {
		secs := int(valid / time.Second)
		ad.ValidLft, ad.PreferedLft = secs, secs
	}
	if err := c.h.AddrReplace(l, ad); err != nil {
		return fmt.Errorf("add %s to %s: %w", p, link, err)
	}
	return nil
}

// DelAddr removes an address; a missing one is not an error.
func (c *Ctl) DelAddr(link string, p netip.Prefix) error {
	l, err := c.h.LinkByName(link)
	if err != nil {
		return err
	}
	if err := c.h.AddrDel(l, &netlink.Addr{IPNet: ipnet(p)}); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return fmt.Errorf("remove %s from %s: %w", p, link, err)
	}
	return nil
}

// SetDefaultRoute points the IPv4 default route at gw through link.
func (c *Ctl) SetDefaultRoute(link string, gw netip.Addr) error {
	l, err := c.h.LinkByName(link)
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice(), Dst: ipnet(netip.MustParsePrefix("0.0.0.0/0"))}
	if err := c.h.RouteReplace(r); err != nil {
		return fmt.Errorf("default route via %s on %s: %w", gw, link, err)
	}
	return nil
}

// Links lists the names of the links, sorted.
func (c *Ctl) Links() ([]string, error) {
	links, err := c.h.LinkList()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names, nil
}

// Watch calls wake on every link change (carrier, up/down, new links)
// until ctx ends, so a reconcile pass runs at once instead of at the next
// tick. It returns once its netlink subscription has shut down.
func Watch(ctx context.Context, wake func()) error {
	ch := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{}); err != nil {
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	stop := ctx.Done()
	for {
		select {
		case <-stop:
			close(done) // the library closes ch once its reader has stopped
			stop = nil
		case _, ok := <-ch:
			if !ok {
				return nil
			}
			if stop != nil {
				wake()
			}
		}
	}
}
