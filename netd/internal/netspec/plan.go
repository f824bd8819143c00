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
	KindBridge = "bridge"
)

// BridgeAlias is the alias (IFLA_IFALIAS, `ip link show` prints it)
// netd gives the bridges it creates. A bridge without it is someone
// else's, and netd never changes or deletes it.
const BridgeAlias = "shoal-netd lan bridge"

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
	Alias    string   `json:"alias,omitempty"`
}

// ownBridge reports whether the link is a bridge netd created.
func (l Link) ownBridge() bool { return l.Kind == KindBridge && l.Alias == BridgeAlias }

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
	// NoBridging: the kernel cannot make bridges (a guest kernel
	// without the bridge module); the LAN has no bridge then.
	NoBridging bool `json:"no_bridging,omitempty"`
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
	MAC    string `json:"mac,omitempty"`    // OpCreateBridge, OpSetMAC
	// NoDAD (OpAddAddr) skips duplicate address detection: the address
	// moves from another link of this node, where it already passed it.
	NoDAD bool `json:"nodad,omitempty"`
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
	// OpCreateBridge makes a bridge with STP off, forward delay 0, the
	// given MAC and BridgeAlias.
	OpCreateBridge Op = "create-bridge"
	OpSetMAC       Op = "set-mac"
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
	case OpCreateBridge, OpSetMAC:
		return fmt.Sprintf("%s %s mac=%s", a.Op, a.Link, a.MAC)
	case OpAddAddr:
		if a.NoDAD {
			return fmt.Sprintf("%s %s %s nodad", a.Op, a.Link, a.Addr)
		}
		return fmt.Sprintf("%s %s %s", a.Op, a.Link, a.Addr)
	case OpDelAddr:
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
	Bridge    string   `json:"bridge,omitempty"`   // the LAN bridge, which is then LAN ("" without one, or while waiting)
	LANPort   string   `json:"lan_port,omitempty"` // the bond, NIC or VLAN under Bridge: a port without addresses
	DHCP      []string `json:"dhcp"`               // interfaces that run the DHCP client
	Notes     []string `json:"notes,omitempty"`    // operator-facing: waiting for carrier, bonding fallback, missing NICs
	Fallback  bool     `json:"fallback,omitempty"` // no bonding: a NIC is used directly

	gone map[string]bool // links this plan deletes
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
	br := spec.LAN.BridgeName()
	for _, l := range obs.Links {
		if l.ownBridge() && l.Name != br {
			// Renamed or turned off in the spec: deleting it releases
			// its ports (the LAN port and any VM taps).
			p.Actions = append(p.Actions, Action{Op: OpDeleteLink, Link: l.Name})
			p.delete(l.Name)
		}
	}
	lanNICs := spec.LAN.NICs
	if len(lanNICs) == 0 {
		lanNICs = p.autoNICs(obs, spec)
	}
	p.LAN = p.bond(obs, spec.LAN, lanNICs, in)
	if br != "" && p.LAN != "" && obs.NoBridging {
		p.Notes = append(p.Notes, fmt.Sprintf("lan: the kernel has no bridge driver: the LAN addresses stay on %s and VM NICs get no LAN bridge", p.LAN))
	} else if br != "" && p.LAN != "" {
		port := p.LAN
		p.LAN = p.bridge(obs, br, port)
		if p.Bridge != "" {
			p.LANPort = port
		}
	}
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
	if p.Bridge != "" {
		p.emptyPort(obs)
	}
	return p
}

func (p *Plan) delete(link string) {
	if p.gone == nil {
		p.gone = map[string]bool{}
	}
	p.gone[link] = true
}

// bridge makes the LAN bridge name over port and returns the interface
// that carries the LAN addresses: the bridge, or port when a link of
// that name exists that netd did not create (left alone), or "" while
// port does not exist yet (the bridge needs its MAC).
func (p *Plan) bridge(obs Observed, name, port string) string {
	pl, ok := obs.link(port)
	if !ok || pl.MAC == "" {
		return "" // made this pass: the bridge follows once its MAC shows
	}
	l, exists := obs.link(name)
	if exists && !l.ownBridge() {
		p.Notes = append(p.Notes, fmt.Sprintf("lan: a %s named %s exists that netd did not create: netd leaves it alone and keeps the LAN addresses on %s (VMs get no LAN bridge); remove it, or name another bridge in the spec (lan.bridge)", l.Kind, name, port))
		return port
	}
	if !exists {
		p.Actions = append(p.Actions, Action{Op: OpCreateBridge, Link: name, MAC: pl.MAC})
		l = Link{Name: name, Kind: KindBridge, MAC: pl.MAC, Alias: BridgeAlias}
	} else if l.MAC != pl.MAC {
		p.Actions = append(p.Actions, Action{Op: OpSetMAC, Link: name, MAC: pl.MAC})
	}
	if !l.Up {
		p.Actions = append(p.Actions, Action{Op: OpSetUp, Link: name})
	}
	if pl.Master != name || p.gone[port] {
		if pl.Master != "" && !p.gone[pl.Master] && !p.gone[port] {
			p.Actions = append(p.Actions, Action{Op: OpSetNoMaster, Link: port})
		}
		p.Actions = append(p.Actions, Action{Op: OpSetMaster, Link: port, Master: name})
	}
	p.Bridge = name
	return name
}

// emptyPort moves the addresses still on the bridge's port (an older
// netd's, or a lease) to the bridge: added there, then removed from the
// port. Backplane addresses are left to backplaneAddr.
func (p *Plan) emptyPort(obs Observed) {
	if p.gone[p.LANPort] {
		return // made again this pass, without addresses
	}
	port, _ := obs.link(p.LANPort)
	br, _ := obs.link(p.Bridge)
	for _, a := range port.Addrs {
		pfx, err := netip.ParsePrefix(a)
		if err != nil || p.has(OpDelAddr, p.LANPort, pfx.String()) {
			continue
		}
		if !br.hasAddr(pfx) && !p.has(OpAddAddr, p.Bridge, pfx.String()) {
			p.Actions = append(p.Actions, Action{Op: OpAddAddr, Link: p.Bridge, Addr: pfx.String(), NoDAD: true})
		}
		p.Actions = append(p.Actions, Action{Op: OpDelAddr, Link: p.LANPort, Addr: pfx.String()})
	}
}

// has reports whether the plan already holds the action.
func (p *Plan) has(op Op, link, addr string) bool {
	return slices.ContainsFunc(p.Actions, func(a Action) bool { return a.Op == op && a.Link == link && a.Addr == addr })
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
		ours := l.Master == spec.LAN.Name || p.gone[l.Master] || l.Master != "" && l.Master == spec.LAN.BridgeName() && p.ownLink(obs, l.Master)
		if l.Master != "" && !ours {
			continue // someone else's slave: leave it alone
		}
		switch {
		case ours, l.Up && l.Carrier:
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

// ownLink reports whether name is a bridge netd created.
func (p *Plan) ownLink(obs Observed, name string) bool {
	l, ok := obs.link(name)
	return ok && l.ownBridge()
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
		p.delete(b.Name)
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
		if in.BackplaneAddr.IsValid() && l.hasAddr(in.BackplaneAddr) || l.Master != "" && l.Master == b.BridgeName() && p.ownLink(obs, l.Master) {
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
		p.delete(name)
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
	var dels []Action
	moving := false
	for _, l := range obs.Links {
		if p.gone[l.Name] || l.Kind == KindBridge && !l.ownBridge() {
			continue // deleted by this plan, or someone else's bridge
		}
		for _, a := range l.Addrs {
			pfx, err := netip.ParsePrefix(a)
			if err != nil || !in.backplaneContains(pfx.Addr()) {
				continue
			}
			if pfx != want || l.Name != iface {
				dels = append(dels, Action{Op: OpDelAddr, Link: l.Name, Addr: pfx.String()})
				moving = moving || pfx == want
			}
		}
	}
	// Add before removing: when the address moves (onto a new bridge),
	// it is never missing, and it skips the DAD it passed on the old link.
	if l, _ := obs.link(iface); !l.hasAddr(want) {
		p.Actions = append(p.Actions, Action{Op: OpAddAddr, Link: iface, Addr: want.String(), NoDAD: moving})
	}
	p.Actions = append(p.Actions, dels...)
}

// backplaneContains reports whether a is in the backplane prefix.
func (in Inputs) backplaneContains(a netip.Addr) bool {
	return in.BackplanePrefix.IsValid() && in.BackplanePrefix.Contains(a)
}
