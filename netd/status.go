package netd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

// Phases of the network, in Status.Phase.
const (
	PhaseStarting    = "starting"
	PhaseCarrier     = "waiting-for-carrier"
	PhaseConfiguring = "configuring" // links set up, waiting for an address or DAD
	PhaseReady       = "ready"
	PhaseDegraded    = "degraded" // up, but only on a link-local address, or with a problem
)

// Status is netd's observed network, written to Config.StatusPath.
type Status struct {
	Updated   time.Time       `json:"updated"`
	Phase     string          `json:"phase"`
	Ready     bool            `json:"ready"`
	Bonding   bool            `json:"bonding"`            // the kernel can make bonds
	Fallback  bool            `json:"fallback,omitempty"` // no bonding: a NIC is used directly
	LAN       string          `json:"lan"`                // interface carrying the LAN address
	Bridge    string          `json:"bridge,omitempty"`   // the LAN bridge VM NICs join (also LAN); "": none (off, not made yet, name taken)
	LANPort   string          `json:"lan_port,omitempty"` // the bond, NIC or VLAN under Bridge
	Backplane BackplaneStatus `json:"backplane"`
	DHCP      []DHCPStatus    `json:"dhcp,omitempty"`
	Links     []LinkStatus    `json:"links"`
	Notes     []string        `json:"notes,omitempty"`    // what netd is waiting for, fallbacks
	Problems  []string        `json:"problems,omitempty"` // errors of the last pass
}

// BackplaneStatus is the zero-config backplane address.
type BackplaneStatus struct {
	Interface string `json:"interface"`
	Address   string `json:"address"` // CIDR, in fd53:686f:616c::/64
	// State is the kernel's duplicate address detection: missing,
	// tentative, ok or duplicate.
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

// DHCPStatus is one DHCP client.
type DHCPStatus struct {
	Interface string    `json:"interface"`
	State     string    `json:"state"` // waiting-for-carrier, selecting, bound, renewing, rebinding
	Address   string    `json:"address,omitempty"`
	Router    string    `json:"router,omitempty"`
	DNS       []string  `json:"dns,omitempty"`
	Server    string    `json:"server,omitempty"`
	Obtained  time.Time `json:"obtained,omitzero"`
	Expires   time.Time `json:"expires,omitzero"`
	RenewAt   time.Time `json:"renew_at,omitzero"`
	RebindAt  time.Time `json:"rebind_at,omitzero"`
	Restored  bool      `json:"restored,omitempty"`   // lease kept from before a restart
	LinkLocal string    `json:"link_local,omitempty"` // RFC 3927 fallback, while no server answers
	LastError string    `json:"last_error,omitempty"`
	CarrierAt time.Time `json:"carrier_at,omitzero"`
	BoundAt   time.Time `json:"bound_at,omitzero"`
}

// LinkStatus is one interface.
type LinkStatus struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	MAC         string   `json:"mac,omitempty"`
	Up          bool     `json:"up"`
	Carrier     bool     `json:"carrier"`
	Master      string   `json:"master,omitempty"`
	MTU         int      `json:"mtu,omitempty"`
	BondMode    string   `json:"bond_mode,omitempty"`
	ActiveSlave string   `json:"active_slave,omitempty"`
	Addrs       []string `json:"addrs,omitempty"`
}

// ReadStatus reads the status file; ErrNoStatus if there is none.
func ReadStatus(path string) (Status, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Status{}, fmt.Errorf("%w (%s is missing)", ErrNoStatus, path)
	}
	if err != nil {
		return Status{}, fmt.Errorf("read network status %q: %w", path, err)
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("read network status %q: %w", path, err)
	}
	return s, nil
}

// WriteText prints s for people.
func (s Status) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "phase:      %s (updated %s)\n", s.Phase, s.Updated.Format(time.RFC3339))
	lan := s.LAN
	if lan == "" {
		lan = "(none yet)"
	}
	bonding := "bonding available"
	if !s.Bonding {
		bonding = "no bonding in the kernel"
	}
	fmt.Fprintf(&b, "lan:        %s (%s)\n", lan, bonding)
	if s.Bridge != "" {
		fmt.Fprintf(&b, "bridge:     %s over %s (VM NICs join it)\n", s.Bridge, orDash(s.LANPort))
	}
	for _, d := range s.DHCP {
		fmt.Fprintf(&b, "dhcp:       %s on %s", d.State, d.Interface)
		if d.Address != "" {
			fmt.Fprintf(&b, ": %s router %s server %s, expires %s", d.Address, orDash(d.Router), orDash(d.Server), d.Expires.Format(time.RFC3339))
		}
		if d.Restored {
			b.WriteString(" (kept across restart)")
		}
		b.WriteString("\n")
		if d.LinkLocal != "" {
			fmt.Fprintf(&b, "link-local: %s (no DHCP server answers; reach the node here)\n", d.LinkLocal)
		}
		if d.LastError != "" && d.State != "bound" {
			fmt.Fprintf(&b, "            last error: %s\n", d.LastError)
		}
	}
	fmt.Fprintf(&b, "backplane:  %s on %s (%s)\n", orDash(s.Backplane.Address), orDash(s.Backplane.Interface), s.Backplane.State)
	if s.Backplane.Message != "" {
		fmt.Fprintf(&b, "            %s\n", s.Backplane.Message)
	}
	b.WriteString("links:\n")
	for _, l := range s.Links {
		state := "down"
		if l.Up {
			state = "up"
			if !l.Carrier {
				state = "up, no carrier"
			}
		}
		fmt.Fprintf(&b, "  %-12s %-7s %-18s %s", l.Name, l.Kind, l.MAC, state)
		if l.Master != "" {
			fmt.Fprintf(&b, ", in %s", l.Master)
		}
		if l.BondMode != "" {
			fmt.Fprintf(&b, ", %s", l.BondMode)
			if l.ActiveSlave != "" {
				fmt.Fprintf(&b, " active %s", l.ActiveSlave)
			}
		}
		if len(l.Addrs) > 0 {
			fmt.Fprintf(&b, " %s", strings.Join(l.Addrs, " "))
		}
		b.WriteString("\n")
	}
	for _, n := range s.Notes {
		fmt.Fprintf(&b, "note:       %s\n", n)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(&b, "problem:    %s\n", p)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
