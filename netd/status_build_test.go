package netd

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/netd/internal/dhcpc"
	"github.com/shoal-hci/shoal/netd/internal/netspec"
)

func TestBuildStatusPhase(t *testing.T) {
	bp := netip.MustParsePrefix("fd53:686f:616c::1/64")
	lease := &dhcpc.Lease{Address: netip.MustParsePrefix("10.0.0.5/24"), Server: netip.MustParseAddr("10.0.0.1"),
		Obtained: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Duration: time.Hour, T1: 30 * time.Minute, T2: 50 * time.Minute}
	lanPlan := netspec.Plan{LAN: "bond0", Backplane: "bond0", DHCP: []string{"bond0"}}
	static := netspec.Spec{LAN: netspec.Bond{Addresses: []string{"10.0.0.9/24"}}}.WithDefaults()
	tests := []struct {
		name      string
		plan      netspec.Plan
		dhcp      map[string]dhcpc.Status
		bpState   string
		spec      netspec.Spec
		wantPhase string
		wantReady bool
	}{
		{"no NIC with carrier", netspec.Plan{Notes: []string{"waiting for carrier: ..."}}, nil, AddrMissing, netspec.Spec{}, PhaseCarrier, false},
		{"selecting", lanPlan, map[string]dhcpc.Status{"bond0": {State: dhcpc.StateSelecting}}, AddrOK, netspec.Spec{}, PhaseConfiguring, false},
		{"bound, DAD running", lanPlan, map[string]dhcpc.Status{"bond0": {State: dhcpc.StateBound, Lease: lease}}, AddrTentative, netspec.Spec{}, PhaseConfiguring, false},
		{"bound", lanPlan, map[string]dhcpc.Status{"bond0": {State: dhcpc.StateBound, Lease: lease}}, AddrOK, netspec.Spec{}, PhaseReady, true},
		{"renewing keeps ready", lanPlan, map[string]dhcpc.Status{"bond0": {State: dhcpc.StateRenewing, Lease: lease}}, AddrOK, netspec.Spec{}, PhaseReady, true},
		{"link-local only", lanPlan, map[string]dhcpc.Status{"bond0": {State: dhcpc.StateSelecting, LinkLocal: "169.254.3.4/16"}}, AddrOK, netspec.Spec{}, PhaseDegraded, true},
		{"duplicate backplane", lanPlan, map[string]dhcpc.Status{"bond0": {State: dhcpc.StateBound, Lease: lease}}, AddrDuplicate, netspec.Spec{}, PhaseDegraded, false},
		{"static LAN", netspec.Plan{LAN: "bond0", Backplane: "bond0"}, nil, AddrOK, static, PhaseReady, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := buildStatus(statusInputs{plan: tt.plan, dhcp: tt.dhcp, bpAddr: bp, bpState: tt.bpState, spec: tt.spec.WithDefaults()})
			if st.Phase != tt.wantPhase || st.Ready != tt.wantReady {
				t.Errorf("phase %q ready %v, want %q %v", st.Phase, st.Ready, tt.wantPhase, tt.wantReady)
			}
			if tt.bpState == AddrDuplicate && !strings.Contains(st.Backplane.Message, "node ID") {
				t.Errorf("duplicate without an operator message: %q", st.Backplane.Message)
			}
		})
	}
}

func TestBuildStatusLease(t *testing.T) {
	lease := &dhcpc.Lease{Address: netip.MustParsePrefix("10.0.0.5/24"), Server: netip.MustParseAddr("10.0.0.1"), Router: netip.MustParseAddr("10.0.0.1"),
		DNS: []netip.Addr{netip.MustParseAddr("10.0.0.53")}, Obtained: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Duration: time.Hour, T1: 30 * time.Minute, T2: 50 * time.Minute}
	st := buildStatus(statusInputs{
		plan:    netspec.Plan{LAN: "bond0", Backplane: "bond0"},
		obs:     netspec.Observed{Links: []netspec.Link{{Name: "lo", Loopback: true}, {Name: "bond0", Kind: netspec.KindBond, BondMode: "active-backup"}}},
		dhcp:    map[string]dhcpc.Status{"bond0": {State: dhcpc.StateBound, Lease: lease}},
		bpAddr:  netip.MustParsePrefix("fd53:686f:616c::1/64"),
		bpState: AddrOK, activeSlave: func(string) string { return "eth1" },
	})
	d := st.DHCP[0]
	if d.Address != "10.0.0.5/24" || d.Router != "10.0.0.1" || len(d.DNS) != 1 || !d.Expires.Equal(lease.Obtained.Add(time.Hour)) || !d.RenewAt.Equal(lease.Obtained.Add(30*time.Minute)) {
		t.Errorf("dhcp status %+v does not reflect the lease", d)
	}
	if len(st.Links) != 1 || st.Links[0].ActiveSlave != "eth1" {
		t.Errorf("links %+v, want bond0 alone (no loopback) with active slave eth1", st.Links)
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.NodeID = "0123456789abcdef0123456789abcdef"
	if err := good.Validate(); err != nil {
		t.Fatalf("default config with a node ID: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"no node ID", func(c *Config) { c.NodeID = "" }},
		{"node ID not hex", func(c *Config) { c.NodeID = "NODE-1" }},
		{"no status path", func(c *Config) { c.StatusPath = "" }},
		{"relative spec path", func(c *Config) { c.SpecPath = "network.json" }},
		{"negative interval", func(c *Config) { c.Interval = -time.Second }},
	}
	for _, tt := range tests {
		c := good
		tt.edit(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted it", tt.name)
		}
	}
}

func TestLoadSpec(t *testing.T) {
	dir := t.TempDir()
	def, err := loadSpec(filepath.Join(dir, "missing.json"))
	if err != nil || def.LAN.Name != netspec.DefaultLANBond || !def.LAN.DHCPOn() {
		t.Errorf("missing file: %+v, %v; want the defaults", def, err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"lan":{"mode":"fast"}}`), 0o644)
	if _, err := loadSpec(bad); err == nil || !strings.Contains(err.Error(), "last good spec") {
		t.Errorf("bad file: %v, want an error that says the last good spec is kept", err)
	}
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"lan":{"nics":["eth1"],"mode":"balance-alb"}}`), 0o644)
	if s, err := loadSpec(good); err != nil || s.LAN.Mode != netspec.ModeBalanceALB {
		t.Errorf("good file: %+v, %v", s, err)
	}
}

// TestBuildStatusBridge: the status names the LAN bridge and its port, and
// the text says it.
func TestBuildStatusBridge(t *testing.T) {
	st := buildStatus(statusInputs{
		plan:    netspec.Plan{LAN: "br-lan", Backplane: "br-lan", Bridge: "br-lan", LANPort: "bond0"},
		bpAddr:  netip.MustParsePrefix("fd53:686f:616c::1/64"),
		bpState: AddrOK,
	})
	if st.LAN != "br-lan" || st.Bridge != "br-lan" || st.LANPort != "bond0" {
		t.Errorf("lan %q bridge %q port %q, want br-lan, br-lan, bond0", st.LAN, st.Bridge, st.LANPort)
	}
	var b strings.Builder
	if err := st.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "bridge:     br-lan over bond0") {
		t.Errorf("text lacks the bridge line:\n%s", b.String())
	}
}
