package netspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
)

// Bond modes netd can set.
const (
	ModeActiveBackup = "active-backup"
	Mode8023AD       = "802.3ad"
	ModeBalanceALB   = "balance-alb"
)

// Default names and values.
const (
	DefaultLANBond       = "bond0"
	DefaultBackplaneBond = "bond1"
	DefaultLANBridge     = "br-lan"
	DefaultMiimon        = 100
)

// ErrBadSpec is returned for a spec that cannot be used.
var ErrBadSpec = errors.New("bad network spec")

// Spec is the desired network: one LAN bond and, optionally, a separate
// backplane bond. The zero Spec is the default: every physical NIC with
// carrier in one active-backup bond with DHCP, carrying the backplane.
type Spec struct {
	LAN       Bond  `json:"lan"`
	Backplane *Bond `json:"backplane,omitempty"` // nil: the backplane address sits on the LAN interface
}

// Bond is one bond (or, without bonding in the kernel, one NIC).
type Bond struct {
	Name      string   `json:"name,omitempty"`      // "": bond0 (LAN) or bond1 (backplane)
	NICs      []string `json:"nics,omitempty"`      // empty (LAN only): every physical NIC with carrier
	Mode      string   `json:"mode,omitempty"`      // "": active-backup; or 802.3ad, balance-alb
	MTU       int      `json:"mtu,omitempty"`       // 0: leave the kernel's (1500)
	VLAN      int      `json:"vlan,omitempty"`      // 0: untagged; else addresses go on NAME.VLAN
	DHCP      *bool    `json:"dhcp,omitempty"`      // nil: on for the LAN unless it has static addresses; off for the backplane
	Addresses []string `json:"addresses,omitempty"` // static addresses in CIDR form
	Gateway   string   `json:"gateway,omitempty"`   // static default gateway (IPv4)
	DNS       []string `json:"dns,omitempty"`       // static DNS servers
	// Bridge (LAN only) is the bridge over the LAN interface that
	// carries the node's addresses and that VM NICs join as taps. nil:
	// br-lan; "": no bridge, the addresses sit on the bond (or NIC, or
	// VLAN) itself.
	Bridge *string `json:"bridge,omitempty"`
}

var ifname = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)

// Parse decodes and validates a spec file's bytes, filling defaults.
// Unknown fields are errors, so a typo does not silently change nothing.
func Parse(b []byte) (Spec, error) {
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("%w: %v", ErrBadSpec, err)
	}
	if dec.More() {
		return Spec{}, fmt.Errorf("%w: trailing data after the JSON object", ErrBadSpec)
	}
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// WithDefaults returns s with empty fields set to their defaults.
func (s Spec) WithDefaults() Spec {
	s.LAN = s.LAN.withDefaults(DefaultLANBond, true)
	if s.LAN.Bridge == nil {
		br := DefaultLANBridge
		s.LAN.Bridge = &br
	}
	if s.Backplane != nil {
		b := s.Backplane.withDefaults(DefaultBackplaneBond, false)
		s.Backplane = &b
	}
	return s
}

func (b Bond) withDefaults(name string, lan bool) Bond {
	if b.Name == "" {
		b.Name = name
	}
	if b.Mode == "" {
		b.Mode = ModeActiveBackup
	}
	if b.DHCP == nil {
		on := lan && len(b.Addresses) == 0
		b.DHCP = &on
	}
	if b.Bridge != nil {
		br := *b.Bridge
		b.Bridge = &br
	}
	b.NICs = slices.Clone(b.NICs)
	b.Addresses = slices.Clone(b.Addresses)
	b.DNS = slices.Clone(b.DNS)
	return b
}

// BridgeName is the name of the bond's bridge, "" for none.
func (b Bond) BridgeName() string {
	if b.Bridge == nil {
		return ""
	}
	return *b.Bridge
}

// DHCPOn reports whether the bond runs the DHCP client.
func (b Bond) DHCPOn() bool { return b.DHCP != nil && *b.DHCP }

// Validate checks a spec that has its defaults filled.
func (s Spec) Validate() error {
	if err := s.LAN.validate("lan"); err != nil {
		return err
	}
	if s.Backplane == nil {
		return nil
	}
	bp := *s.Backplane
	if err := bp.validate("backplane"); err != nil {
		return err
	}
	if bp.BridgeName() != "" {
		return fmt.Errorf("%w: backplane: only the lan has a bridge (VM NICs join the LAN side)", ErrBadSpec)
	}
	if br := s.LAN.BridgeName(); br != "" && (br == bp.Name || slices.Contains(bp.NICs, br)) {
		return fmt.Errorf("%w: lan bridge %q has the name of a backplane link", ErrBadSpec, br)
	}
	if len(bp.NICs) == 0 {
		return fmt.Errorf("%w: backplane: name its NICs (only the LAN bond may take every NIC with carrier)", ErrBadSpec)
	}
	if bp.Name == s.LAN.Name {
		return fmt.Errorf("%w: lan and backplane are both named %q", ErrBadSpec, bp.Name)
	}
	for _, n := range bp.NICs {
		if slices.Contains(s.LAN.NICs, n) {
			return fmt.Errorf("%w: NIC %q is in both the lan and the backplane bond", ErrBadSpec, n)
		}
	}
	if len(s.LAN.NICs) == 0 {
		return fmt.Errorf("%w: lan: with a separate backplane bond, name the LAN's NICs too", ErrBadSpec)
	}
	return nil
}

func (b Bond) validate(what string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrBadSpec, what, fmt.Sprintf(format, a...))
	}
	if !ifname.MatchString(b.Name) {
		return bad("name %q is not an interface name (1-15 of a-z A-Z 0-9 _ . -)", b.Name)
	}
	switch b.Mode {
	case ModeActiveBackup, Mode8023AD, ModeBalanceALB:
	default:
		return bad("mode %q: want active-backup, 802.3ad or balance-alb", b.Mode)
	}
	seen := map[string]bool{}
	for _, n := range b.NICs {
		if !ifname.MatchString(n) || n == b.Name {
			return bad("NIC name %q is not usable", n)
		}
		if seen[n] {
			return bad("NIC %q is listed twice", n)
		}
		seen[n] = true
	}
	if b.MTU != 0 && (b.MTU < 576 || b.MTU > 9216) {
		return bad("mtu %d: want 576 to 9216 (or 0 for the default)", b.MTU)
	}
	if b.VLAN < 0 || b.VLAN > 4094 {
		return bad("vlan %d: want 1 to 4094 (or 0 for none)", b.VLAN)
	}
	if b.VLAN != 0 && len(VLANName(b.Name, b.VLAN)) > 15 {
		return bad("vlan interface name %q is longer than 15 characters: use a shorter bond name", VLANName(b.Name, b.VLAN))
	}
	if br := b.BridgeName(); br != "" {
		if !ifname.MatchString(br) {
			return bad("bridge %q is not an interface name (1-15 of a-z A-Z 0-9 _ . -)", br)
		}
		if br == b.Name || seen[br] || (b.VLAN != 0 && br == VLANName(b.Name, b.VLAN)) {
			return bad("bridge %q has the name of the bond, its VLAN or one of its NICs", br)
		}
	}
	for _, a := range b.Addresses {
		if _, err := netip.ParsePrefix(a); err != nil {
			return bad("address %q is not CIDR (like 192.0.2.10/24): %v", a, err)
		}
	}
	if b.Gateway != "" {
		g, err := netip.ParseAddr(b.Gateway)
		if err != nil || !g.Is4() {
			return bad("gateway %q is not an IPv4 address", b.Gateway)
		}
	}
	for _, d := range b.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return bad("dns %q is not an IP address", d)
		}
	}
	return nil
}

// VLANName is the name of a bond's VLAN interface.
func VLANName(bond string, vlan int) string { return fmt.Sprintf("%s.%d", bond, vlan) }
