package netspec

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestPlanGolden runs Make over every testdata/*.json case: {"spec": ...
// or null, "observed": ...} and compares the plan with NAME.golden.
func TestPlanGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no cases in testdata")
	}
	in := Inputs{
		BackplaneAddr:   netip.MustParsePrefix("fd53:686f:616c::1234:5678:9abc:def0/64"),
		BackplanePrefix: netip.MustParsePrefix("fd53:686f:616c::/64"),
	}
	for _, path := range cases {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				Spec     json.RawMessage `json:"spec"`
				Observed Observed        `json:"observed"`
			}
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			spec := Spec{}.WithDefaults()
			if len(c.Spec) > 0 && string(c.Spec) != "null" {
				if spec, err = Parse(c.Spec); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
			}
			got := render(Make(spec, c.Observed, in))
			golden := strings.TrimSuffix(path, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("plan differs from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func render(p Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lan: %s\nbackplane: %s\ndhcp: %s\nfallback: %v\n", p.LAN, p.Backplane, strings.Join(p.DHCP, " "), p.Fallback)
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	b.WriteString("actions:\n")
	for _, a := range p.Actions {
		fmt.Fprintf(&b, "  %s\n", a)
	}
	return b.String()
}

// TestPlanConverges applies each plan to a simulated kernel until the
// plan is empty: the planner must reach a fixed point in a few passes.
func TestPlanConverges(t *testing.T) {
	in := Inputs{
		BackplaneAddr:   netip.MustParsePrefix("fd53:686f:616c::1/64"),
		BackplanePrefix: netip.MustParsePrefix("fd53:686f:616c::/64"),
	}
	specs := map[string]Spec{
		"default": {},
		"split": {LAN: Bond{NICs: []string{"eth0", "eth1"}, Mode: Mode8023AD, VLAN: 20, MTU: 9000},
			Backplane: &Bond{NICs: []string{"eth2", "eth3"}, Addresses: []string{"10.9.0.5/24"}}},
		"no-bridge": {LAN: Bond{Bridge: new(string)}},
		"static":    {LAN: Bond{Addresses: []string{"10.1.0.5/24"}, Gateway: "10.1.0.1"}},
	}
	for name, spec := range specs {
		for _, bonding := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/bonding=%v", name, bonding), func(t *testing.T) {
				obs := Observed{Bonding: bonding, Links: []Link{
					{Name: "lo", Kind: KindDevice, Loopback: true, Up: true},
					{Name: "eth0", Kind: KindDevice, MAC: "52:54:00:00:00:00"}, {Name: "eth1", Kind: KindDevice, MAC: "52:54:00:00:00:01"},
					{Name: "eth2", Kind: KindDevice, MAC: "52:54:00:00:00:02"}, {Name: "eth3", Kind: KindDevice, MAC: "52:54:00:00:00:03"},
				}}
				for pass := 0; ; pass++ {
					if pass == 5 {
						t.Fatalf("no fixed point after 5 passes; last plan:\n%s", render(Make(spec, obs, in)))
					}
					p := Make(spec, obs, in)
					if len(p.Actions) == 0 {
						if p.LAN == "" || p.Backplane == "" {
							t.Errorf("converged without interfaces: %s", render(p))
						}
						break
					}
					obs = simulate(t, obs, p.Actions)
				}
			})
		}
	}
}

// simulate is a tiny model of the kernel: enough to apply plans, and
// strict about the bonding rule that a slave must be down. A bond takes
// its first slave's MAC, a VLAN its parent's.
func simulate(t *testing.T, obs Observed, actions []Action) Observed {
	links := map[string]*Link{}
	var order []string
	for _, l := range obs.Links {
		l := l
		links[l.Name] = &l
		order = append(order, l.Name)
	}
	for _, a := range actions {
		l := links[a.Link]
		switch a.Op {
		case OpCreateBond:
			links[a.Link] = &Link{Name: a.Link, Kind: KindBond, BondMode: a.Mode, MTU: 1500}
			order = append(order, a.Link)
		case OpCreateVLAN:
			links[a.Link] = &Link{Name: a.Link, Kind: KindVLAN, VLANID: a.VLAN, Parent: a.Master, MTU: 1500, MAC: links[a.Master].MAC}
			order = append(order, a.Link)
		case OpCreateBridge:
			links[a.Link] = &Link{Name: a.Link, Kind: KindBridge, MAC: a.MAC, Alias: BridgeAlias, MTU: 1500}
			order = append(order, a.Link)
		case OpSetMAC:
			l.MAC = a.MAC
		case OpDeleteLink:
			delete(links, a.Link)
			for _, o := range links {
				if o.Master == a.Link {
					o.Master = ""
				}
			}
		case OpSetUp:
			l.Up, l.Carrier = true, true
		case OpSetDown:
			l.Up = false
		case OpSetMaster:
			m := links[a.Master]
			if m == nil {
				t.Fatalf("%s: no master %s", a, a.Master)
			}
			if m.Kind == KindBond {
				if l.Up {
					t.Fatalf("%s enslaved while up", a.Link)
				}
				l.Up = true
				if m.MAC == "" {
					m.MAC = l.MAC
				}
			}
			l.Master = a.Master
		case OpSetNoMaster:
			l.Master = ""
		case OpSetMTU:
			l.MTU = a.MTU
		case OpAddAddr:
			l.Addrs = append(l.Addrs, a.Addr)
		case OpDelAddr:
			l.Addrs = slices.DeleteFunc(l.Addrs, func(x string) bool { return x == a.Addr })
		case OpDefaultRoute:
			l.Gateway = a.Addr
		default:
			t.Fatalf("simulate: unexpected %s", a)
		}
	}
	var out Observed
	out.Bonding = obs.Bonding
	for _, n := range order {
		if l, ok := links[n]; ok {
			out.Links = append(out.Links, *l)
		}
	}
	return out
}

// TestBridgeOnePass: from each observation, applying one plan reaches the
// fixed point (a second pass plans nothing); addresses that move to the
// bridge are added there before they leave the port; foreign bridges
// and their ports are never named in an action.
func TestBridgeOnePass(t *testing.T) {
	in := Inputs{
		BackplaneAddr:   netip.MustParsePrefix("fd53:686f:616c::1234:5678:9abc:def0/64"),
		BackplanePrefix: netip.MustParsePrefix("fd53:686f:616c::/64"),
	}
	bp := in.BackplaneAddr.String()
	foreign := Link{Name: "br0", Kind: KindBridge, Up: true, MAC: "02:00:00:00:00:99", Addrs: []string{"192.168.5.1/24", "fd53:686f:616c::99/64"}}
	foreignPort := Link{Name: "veth9", Kind: KindVeth, Up: true, Carrier: true, Master: "br0", MAC: "02:00:00:00:00:98"}
	tests := []struct {
		name    string
		spec    Spec
		obs     Observed
		wantLAN string
		moved   []string // addresses that must be added on the bridge before leaving the port
	}{
		{name: "upgrade from addresses on the bond", obs: Observed{Bonding: true, Links: []Link{
			{Name: "eth0", Kind: KindDevice, Up: true, Carrier: true, Master: "bond0", MAC: "52:54:00:00:00:00"},
			{Name: "bond0", Kind: KindBond, BondMode: ModeActiveBackup, Up: true, MAC: "52:54:00:00:00:00", Addrs: []string{"10.88.0.12/24", bp}},
			foreign, foreignPort,
		}}, wantLAN: "br-lan", moved: []string{"10.88.0.12/24", bp}},
		{name: "upgrade from addresses on the NIC", obs: Observed{Links: []Link{
			{Name: "eth0", Kind: KindVeth, Up: true, Carrier: true, MAC: "52:54:00:00:00:00", Addrs: []string{"10.88.0.12/24", bp}},
			foreign, foreignPort,
		}}, wantLAN: "br-lan", moved: []string{"10.88.0.12/24", bp}},
		{name: "vlan", spec: Spec{LAN: Bond{VLAN: 7}}, obs: Observed{Bonding: true, Links: []Link{
			{Name: "eth0", Kind: KindDevice, Up: true, Carrier: true, Master: "bond0", MAC: "52:54:00:00:00:00"},
			{Name: "bond0", Kind: KindBond, BondMode: ModeActiveBackup, Up: true, MAC: "52:54:00:00:00:00"},
			{Name: "bond0.7", Kind: KindVLAN, VLANID: 7, Parent: "bond0", Up: true, MAC: "52:54:00:00:00:00", Addrs: []string{bp}},
		}}, wantLAN: "br-lan", moved: []string{bp}},
		{name: "bond mode change under the bridge", spec: Spec{LAN: Bond{Mode: Mode8023AD}}, obs: Observed{Bonding: true, Links: []Link{
			{Name: "eth0", Kind: KindDevice, Up: true, Carrier: true, Master: "bond0", MAC: "52:54:00:00:00:00"},
			{Name: "bond0", Kind: KindBond, BondMode: ModeActiveBackup, Up: true, Master: "br-lan", MAC: "52:54:00:00:00:00"},
			{Name: "br-lan", Kind: KindBridge, Alias: BridgeAlias, Up: true, MAC: "52:54:00:00:00:00", Addrs: []string{bp}},
		}}, wantLAN: "br-lan"},
		{name: "bridge turned off", spec: Spec{LAN: Bond{Bridge: new(string)}}, obs: Observed{Links: []Link{
			{Name: "eth0", Kind: KindVeth, Up: true, Carrier: true, Master: "br-lan", MAC: "52:54:00:00:00:00"},
			{Name: "br-lan", Kind: KindBridge, Alias: BridgeAlias, Up: true, MAC: "52:54:00:00:00:00", Addrs: []string{bp}},
			foreign, foreignPort,
		}}, wantLAN: "eth0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Make(tt.spec, tt.obs, in)
			if p.LAN != tt.wantLAN {
				t.Errorf("LAN %q, want %q:\n%s", p.LAN, tt.wantLAN, render(p))
			}
			for _, a := range p.Actions {
				if a.Link == "br0" || a.Link == "veth9" || a.Master == "br0" {
					t.Errorf("action %s touches the foreign bridge br0", a)
				}
			}
			for _, addr := range tt.moved {
				add := slices.IndexFunc(p.Actions, func(a Action) bool { return a.Op == OpAddAddr && a.Link == p.LAN && a.Addr == addr })
				del := slices.IndexFunc(p.Actions, func(a Action) bool { return a.Op == OpDelAddr && a.Link == p.LANPort && a.Addr == addr })
				if add < 0 || del < 0 || add > del || !p.Actions[add].NoDAD {
					t.Errorf("%s: want add-addr on %s (nodad) before del-addr on %s:\n%s", addr, p.LAN, p.LANPort, render(p))
				}
			}
			obs := simulate(t, tt.obs, p.Actions)
			if p2 := Make(tt.spec, obs, in); len(p2.Actions) != 0 || p2.LAN != tt.wantLAN {
				t.Errorf("second pass is not a no-op:\n%s", render(p2))
			}
			for _, l := range obs.Links {
				if l.Name == p.LANPort && len(l.Addrs) > 0 {
					t.Errorf("bridge port %s keeps addresses %v", l.Name, l.Addrs)
				}
				if l.Name == p.Bridge && l.MAC != "52:54:00:00:00:00" {
					t.Errorf("bridge MAC %s, want the port's 52:54:00:00:00:00", l.MAC)
				}
			}
		})
	}
}
