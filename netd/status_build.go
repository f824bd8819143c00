package netd

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/shoal-hci/shoal/netd/internal/dhcpc"
	"github.com/shoal-hci/shoal/netd/internal/netspec"
)

// statusInputs is what buildStatus needs.
type statusInputs struct {
	plan        netspec.Plan
	obs         netspec.Observed
	dhcp        map[string]dhcpc.Status
	bonding     bool
	bpAddr      netip.Prefix
	bpState     string // AddrMissing, AddrTentative, AddrOK or AddrDuplicate
	spec        netspec.Spec
	activeSlave func(bond string) string
}

// Backplane address states (BackplaneStatus.State).
const (
	AddrMissing   = "missing"
	AddrTentative = "tentative" // duplicate address detection still running
	AddrOK        = "ok"
	AddrDuplicate = "duplicate" // another host has the address
)

// buildStatus derives the status (and the phase) from one pass's facts.
func buildStatus(in statusInputs) Status {
	plan, obs, dhcp, bpAddr, spec := in.plan, in.obs, in.dhcp, in.bpAddr, in.spec
	st := Status{Bonding: in.bonding, Fallback: plan.Fallback, LAN: plan.LAN, Bridge: plan.Bridge, LANPort: plan.LANPort, Notes: plan.Notes}
	st.Backplane = BackplaneStatus{Interface: plan.Backplane, Address: bpAddr.String(), State: in.bpState}
	if in.bpState == AddrDuplicate {
		st.Backplane.Message = fmt.Sprintf("another host on the backplane already uses %s (duplicate address detection failed): two nodes share a node ID, or a cloned disk; give this node a new identity", bpAddr.Addr())
	}
	for _, l := range obs.Links {
		if l.Loopback {
			continue
		}
		ls := LinkStatus{Name: l.Name, Kind: l.Kind, MAC: l.MAC, Up: l.Up, Carrier: l.Carrier, Master: l.Master, MTU: l.MTU, BondMode: l.BondMode, Addrs: l.Addrs}
		if l.Kind == netspec.KindBond && in.activeSlave != nil {
			ls.ActiveSlave = in.activeSlave(l.Name)
		}
		st.Links = append(st.Links, ls)
	}
	ifaces := make([]string, 0, len(dhcp))
	for i := range dhcp {
		ifaces = append(ifaces, i)
	}
	slices.Sort(ifaces)
	lanAddr, linkLocalOnly := false, false
	for _, i := range ifaces {
		s := dhcp[i]
		ds := DHCPStatus{Interface: i, State: s.State, Restored: s.Restored, LinkLocal: s.LinkLocal, LastError: s.LastError, CarrierAt: s.CarrierAt, BoundAt: s.BoundAt}
		if l := s.Lease; l != nil {
			ds.Address, ds.Server = l.Address.String(), l.Server.String()
			if l.Router.IsValid() {
				ds.Router = l.Router.String()
			}
			for _, a := range l.DNS {
				ds.DNS = append(ds.DNS, a.String())
			}
			ds.Obtained, ds.Expires, ds.RenewAt, ds.RebindAt = l.Obtained, l.Expires(), l.RenewAt(), l.RebindAt()
			if i == plan.LAN {
				lanAddr = true
			}
		} else if s.LinkLocal != "" && i == plan.LAN {
			linkLocalOnly = true
		}
		st.DHCP = append(st.DHCP, ds)
	}
	if len(spec.LAN.Addresses) > 0 && plan.LAN != "" {
		lanAddr = true // static addresses are added by the plan
	}
	bpOK := st.Backplane.State == AddrOK
	switch {
	case plan.LAN == "":
		st.Phase = PhaseCarrier
		if len(obs.Links) > 0 && !strings.Contains(strings.Join(plan.Notes, " "), "carrier") {
			st.Phase = PhaseConfiguring
		}
	case bpOK && lanAddr:
		st.Phase, st.Ready = PhaseReady, true
	case bpOK && linkLocalOnly:
		st.Phase, st.Ready = PhaseDegraded, true
	default:
		st.Phase = PhaseConfiguring
	}
	if st.Backplane.State == AddrDuplicate {
		st.Phase, st.Ready = PhaseDegraded, false
	}
	return st
}
