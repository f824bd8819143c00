package netspec

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
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
	}
	for name, spec := range specs {
		for _, bonding := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/bonding=%v", name, bonding), func(t *testing.T) {
				obs := Observed{Bonding: bonding, Links: []Link{
					{Name: "lo", Kind: KindDevice, Loopback: true, Up: true},
					{Name: "eth0", Kind: KindDevice}, {Name: "eth1", Kind: KindDevice},
					{Name: "eth2", Kind: KindDevice}, {Name: "eth3", Kind: KindDevice},
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
// strict about the bonding rule that a slave must be down.
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
			links[a.Link] = &Link{Name: a.Link, Kind: KindVLAN, VLANID: a.VLAN, Parent: a.Master, MTU: 1500}
			order = append(order, a.Link)
		case OpDeleteLink:
			delete(links, a.Link)
		case OpSetUp:
			l.Up, l.Carrier = true, true
		case OpSetDown:
			l.Up = false
		case OpSetMaster:
			if l.Up {
				t.Fatalf("%s enslaved while up", a.Link)
			}
			l.Master, l.Up = a.Master, true
		case OpSetNoMaster:
			l.Master = ""
		case OpSetMTU:
			l.MTU = a.MTU
		case OpAddAddr:
			l.Addrs = append(l.Addrs, a.Addr)
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
