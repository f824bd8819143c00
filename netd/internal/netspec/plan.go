package netspec

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Link kinds as the kernel names them ("device" is a NIC with no driver
// kind: a physical or virtio NIC).
const (
	KindDevice = "device"
	KindVeth   = "veth"
	KindBond   = "bond"
	KindVLAN   = "vlan"
)

// Link is one observed network interface.
type Link struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"`
	MAC      string   `json:"mac,omitempty"`
	Up       bool     `json:"up"`      // administratively up
	Carrier  bool     `json:"carrier"` // lower layer up
	Master   string   `json:"master,omitempty"`
	MTU      int      `json:"mtu,omitempty"`
	BondMode string   `json:"bond_mode,omitempty"`
	VLANID   int      `json:"vlan_id,omitempty"`
	Parent   string   `json:"parent,omitempty"` // a VLAN's parent
	Addrs    []string `json:"addrs,omitempty"`  // CIDR
	Loopback bool     `json:"loopback,omitempty"`
	Gateway  string   `json:"gateway,omitempty"` // the IPv4 default route's gateway through this link
}

// Physical reports whether netd may put the link in a bond: a NIC
// (kind "device") or a veth (the NIC of a node in a network namespace).
func (l Link) Physical() bool {
	return !l.Loopback && (l.Kind == KindDevice || l.Kind == KindVeth)
}

// hasAddr reports whether the link has the address (in any spelling).
func (l Link) hasAddr(want netip.Prefix) bool {
	for _, a := range l.Addrs {
		if p, err := netip.ParsePrefix(a); err == nil && p == want {
			return true
		}
	}
	return false
}

// Observed is what netd saw of the node's links.
type Observed struct {
	Links   []Link `json:"links"`
	Bonding bool   `json:"bonding"` // the kernel can make bonds
}

func (o Observed) link(name string) (Link, bool) {
	for _, l := range o.Links {
		if l.Name == name {
			return l, true
		}
	}
	return Link{}, false
}

// Action is one step of a plan.
type Action struct {
	Op     Op     `json:"op"`
	Link   string `json:"link"`
	Master string `json:"master,omitempty"` // OpSetMaster, OpCreateVLAN (parent)
	Mode   string `json:"mode,omitempty"`   // OpCreateBond
	Miimon int    `json:"miimon,omitempty"` // OpCreateBond
	MTU    int    `json:"mtu,omitempty"`    // OpSetMTU
	VLAN   int    `json:"vlan,omitempty"`   // OpCreateVLAN
	Addr   string `json:"addr,omitempty"`   // OpAddAddr, OpDelAddr (CIDR), OpDefaultRoute (gateway)
}

// Op is what an action does.
type Op string

// The operations.
const (
	OpSetUp        Op = "up"
	OpSetDown      Op = "down"
	OpCreateBond   Op = "create-bond"
	OpDeleteLink   Op = "delete"
	OpSetMaster    Op = "set-master"
	OpSetNoMaster  Op = "release"
	OpSetMTU       Op = "set-mtu"
	OpCreateVLAN   Op = "create-vlan"
	OpAddAddr      Op = "add-addr"
	OpDelAddr      Op = "del-addr"
	OpDefaultRoute Op = "default-route"
)

func (a Action) String() string {
	switch a.Op {
	case OpCreateBond:
		return fmt.Sprintf("%s %s mode=%s miimon=%d", a.Op, a.Link, a.Mode, a.Miimon)
	case OpSetMaster:
		return fmt.Sprintf("%s %s master=%s", a.Op, a.Link, a.Master)
	case OpSetMTU:
		return fmt.Sprintf("%s %s mtu=%d", a.Op, a.Link, a.MTU)
	case OpCreateVLAN:
		return fmt.Sprintf("%s %s parent=%s id=%d", a.Op, a.Link, a.Master, a.VLAN)
	case OpAddAddr, OpDelAddr:
		return fmt.Sprintf("%s %s %s", a.Op, a.Link, a.Addr)
	case OpDefaultRoute:
		return fmt.Sprintf("%s %s via=%s", a.Op, a.Link, a.Addr)
	default:
		return fmt.Sprintf("%s %s", a.Op, a.Link)
	}
}

// Plan is the outcome of one planning pass.
type Plan struct {
	Actions []Action `json:"actions"`
	// LAN and Backplane name the interfaces that carry the LAN addresses
	// (DHCP or static) and the backplane address ("" while waiting).
	LAN       string   `json:"lan"`
	Backplane string   `json:"backplane"`
	DHCP      []string `json:"dhcp"`               // interfaces that run the DHCP client
	Notes     []string `json:"notes,omitempty"`    // operator-facing: waiting for carrier, bonding fallback, missing NICs
	Fallback  bool     `json:"fallback,omitempty"` // no bonding: a NIC is used directly
}

// Inputs are the facts Plan needs besides the spec and the observation.
type Inputs struct {
	// BackplaneAddr is the node's backplane address (prefix length
	// included), from package backplane.
	BackplaneAddr netip.Prefix
	// BackplanePrefix is the Shoal ULA /64: addresses in it other than
	// BackplaneAddr are stale and removed.
	BackplanePrefix netip.Prefix
}

// Make plans one step from obs towards spec (whose defaults are filled).
func Make(spec Spec, obs Observed, in Inputs) Plan {
	var p Plan
	spec = spec.WithDefaults()
	lanNICs := spec.LAN.NICs
	if len(lanNICs) == 0 {
		lanNICs = p.autoNICs(obs, spec)
	}
	p.LAN = p.bond(obs, spec.LAN, lanNICs, in)
	p.Backplane = p.LAN
	if spec.Backplane != nil {
		p.Backplane = p.bond(obs, *spec.Backplane, spec.Backplane.NICs, in)
		if p.Backplane != "" {
			p.addrs(obs, *spec.Backplane, p.Backplane)
		}
	}
	if p.LAN != "" {
		p.addrs(obs, spec.LAN, p.LAN)
		if spec.LAN.DHCPOn() {
			p.DHCP = append(p.DHCP, p.LAN)
		}
	}
	if spec.Backplane != nil && p.Backplane != "" && spec.Backplane.DHCPOn() {
		p.DHCP = append(p.DHCP, p.Backplane)
	}
	if p.Backplane != "" && in.BackplaneAddr.IsValid() {
		p.backplaneAddr(obs, p.Backplane, in)
	}
	return p
}

// autoNICs picks the default LAN members: every physical NIC with carrier,
// plus those already enslaved to the LAN bond (a slave that lost carrier
// stays). NICs that are down are brought up first so their carrier shows.
func (p *Plan) autoNICs(obs Observed, spec Spec) []string {
	var nics []string
	for _, l := range obs.Links {
		if !l.Physical() {
			continue
		}
		if l.Master != "" && l.Master != spec.LAN.Name {
			continue // someone else's slave: leave it alone
		}
		switch {
		case l.Master == spec.LAN.Name, l.Up && l.Carrier:
			nics = append(nics, l.Name)
		case !l.Up:
			p.Actions = append(p.Actions, Action{Op: OpSetUp, Link: l.Name})
		}
	}
	if len(nics) == 0 {
		p.Notes = append(p.Notes, "waiting for carrier: no NIC has a cable with a live link partner yet")
	}
	return nics
}

// bond makes the bond b of nics (or picks one NIC without bonding) and
// returns the interface that carries its addresses, "" if none yet.
func (p *Plan) bond(obs Observed, b Bond, nics []string, in Inputs) string {
	var present []string
	for _, n := range nics {
		if l, ok := obs.link(n); !ok {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: NIC %s named in the spec is not present", b.Name, n))
		} else if !l.Physical() {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: %s is a %s, not a NIC: left out", b.Name, n, l.Kind))
		} else {
			present = append(present, n)
		}
	}
	if len(present) == 0 {
		return ""
	}
	if !obs.Bonding {
		return p.direct(obs, b, present, in)
	}
	bond, exists := obs.link(b.Name)
	if exists && (bond.Kind != KindBond || bond.BondMode != b.Mode) {
		// The mode can only change on a bond that is down with no slaves:
		// delete it (which releases them) and make it again.
		p.Actions = append(p.Actions, Action{Op: OpDeleteLink, Link: b.Name})
		exists = false
	}
	if !exists {
		p.Actions = append(p.Actions, Action{Op: OpCreateBond, Link: b.Name, Mode: b.Mode, Miimon: DefaultMiimon})
		bond = Link{Name: b.Name, Kind: KindBond, BondMode: b.Mode}
	}
	for _, n := range present {
		l, _ := obs.link(n)
		if exists && l.Master == b.Name {
			continue
		}
		if l.Master != "" && l.Master != b.Name {
			p.Actions = append(p.Actions, Action{Op: OpSetNoMaster, Link: n})
		}
		if l.Up {
			p.Actions = append(p.Actions, Action{Op: OpSetDown, Link: n})
		}
		p.Actions = append(p.Actions, Action{Op: OpSetMaster, Link: n, Master: b.Name})
	}
	if b.MTU != 0 && bond.MTU != b.MTU {
		p.Actions = append(p.Actions, Action{Op: OpSetMTU, Link: b.Name, MTU: b.MTU})
	}
	if !bond.Up {
		p.Actions = append(p.Actions, Action{Op: OpSetUp, Link: b.Name})
	}
	return p.vlan(obs, b, b.Name)
}

// direct uses one NIC in place of a bond when the kernel has no bonding.
// It keeps the NIC that already carries the node's backplane or static
// address (so the choice is stable across passes), else the first by name.
func (p *Plan) direct(obs Observed, b Bond, nics []string, in Inputs) string {
	p.Fallback = true
	nics = slices.Clone(nics)
	slices.Sort(nics)
	pick := nics[0]
	for _, n := range nics {
		l, _ := obs.link(n)
		if in.BackplaneAddr.IsValid() && l.hasAddr(in.BackplaneAddr) {
			pick = n
			break
		}
	}
	note := fmt.Sprintf("%s: the kernel has no bonding: using NIC %s directly", b.Name, pick)
	if len(nics) > 1 {
		note += fmt.Sprintf(" (without failover; %s unused)", strings.Join(slices.DeleteFunc(nics, func(n string) bool { return n == pick }), ", "))
	}
	p.Notes = append(p.Notes, note)
	l, _ := obs.link(pick)
	if b.MTU != 0 && l.MTU != b.MTU {
		p.Actions = append(p.Actions, Action{Op: OpSetMTU, Link: pick, MTU: b.MTU})
	}
	if !l.Up {
		p.Actions = append(p.Actions, Action{Op: OpSetUp, Link: pick})
	}
	return p.vlan(obs, b, pick)
}

func (p *Plan) vlan(obs Observed, b Bond, parent string) string {
	if b.VLAN == 0 {
		return parent
	}
	name := VLANName(b.Name, b.VLAN)
	l, exists := obs.link(name)
	if exists && (l.Kind != KindVLAN || l.VLANID != b.VLAN || l.Parent != parent) {
		p.Actions = append(p.Actions, Action{Op: OpDeleteLink, Link: name})
		exists = false
	}
	if !exists {
		p.Actions = append(p.Actions, Action{Op: OpCreateVLAN, Link: name, Master: parent, VLAN: b.VLAN})
		l = Link{Name: name}
	}
	if b.MTU != 0 && l.MTU != b.MTU {
		p.Actions = append(p.Actions, Action{Op: OpSetMTU, Link: name, MTU: b.MTU})
	}
	if !l.Up {
		p.Actions = append(p.Actions, Action{Op: OpSetUp, Link: name})
	}
	return name
}

// addrs adds the bond's static addresses and gateway.
func (p *Plan) addrs(obs Observed, b Bond, iface string) {
	l, _ := obs.link(iface)
	for _, a := range b.Addresses {
		pfx := netip.MustParsePrefix(a) // validated
		if !l.hasAddr(pfx) {
			p.Actions = append(p.Actions, Action{Op: OpAddAddr, Link: iface, Addr: pfx.String()})
		}
	}
	if b.Gateway != "" && l.Gateway != b.Gateway {
		p.Actions = append(p.Actions, Action{Op: OpDefaultRoute, Link: iface, Addr: b.Gateway})
	}
}

// backplaneAddr puts the node's ULA on iface and removes stale ones.
func (p *Plan) backplaneAddr(obs Observed, iface string, in Inputs) {
	want := in.BackplaneAddr
	for _, l := range obs.Links {
		for _, a := range l.Addrs {
			pfx, err := netip.ParsePrefix(a)
			if err != nil || !in.backplaneContains(pfx.Addr()) {
				continue
			}
			if pfx != want || l.Name != iface {
				p.Actions = append(p.Actions, Action{Op: OpDelAddr, Link: l.Name, Addr: pfx.String()})
			}
		}
	}
	l, _ := obs.link(iface)
	if !l.hasAddr(want) {
		p.Actions = append(p.Actions, Action{Op: OpAddAddr, Link: iface, Addr: want.String()})
	}
}

// backplaneContains reports whether a is in the backplane prefix.
func (in Inputs) backplaneContains(a netip.Addr) bool {
	return in.BackplanePrefix.IsValid() && in.BackplanePrefix.Contains(a)
}
