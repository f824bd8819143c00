package netspec

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	on, off := true, false
	brlan, br0, nobr := "br-lan", "br0", ""
	tests := []struct {
		name, in string
		want     Spec
		bad      bool
	}{
		{name: "empty object is the default", in: `{}`,
			want: Spec{LAN: Bond{Name: "bond0", Mode: ModeActiveBackup, DHCP: &on, Bridge: &brlan}}},
		{name: "bridge renamed", in: `{"lan":{"bridge":"br0"}}`,
			want: Spec{LAN: Bond{Name: "bond0", Mode: ModeActiveBackup, DHCP: &on, Bridge: &br0}}},
		{name: "bridge off", in: `{"lan":{"bridge":""}}`,
			want: Spec{LAN: Bond{Name: "bond0", Mode: ModeActiveBackup, DHCP: &on, Bridge: &nobr}}},
		{name: "bridge named like the bond", in: `{"lan":{"bridge":"bond0"}}`, bad: true},
		{name: "bridge named like the vlan", in: `{"lan":{"vlan":5,"bridge":"bond0.5"}}`, bad: true},
		{name: "bridge named like a NIC", in: `{"lan":{"nics":["eth0"],"bridge":"eth0"}}`, bad: true},
		{name: "bridge name too long", in: `{"lan":{"bridge":"br-lan-too-long-x"}}`, bad: true},
		{name: "bridge on the backplane", in: `{"lan":{"nics":["eth0"]},"backplane":{"nics":["eth1"],"bridge":"br1"}}`, bad: true},
		{name: "bridge named like the backplane", in: `{"lan":{"nics":["eth0"],"bridge":"bond1"},"backplane":{"nics":["eth1"]}}`, bad: true},
		{name: "static lan turns dhcp off", in: `{"lan":{"addresses":["192.0.2.5/24"],"gateway":"192.0.2.1","dns":["192.0.2.53"]}}`,
			want: Spec{LAN: Bond{Name: "bond0", Mode: ModeActiveBackup, DHCP: &off, Addresses: []string{"192.0.2.5/24"}, Gateway: "192.0.2.1", DNS: []string{"192.0.2.53"}, Bridge: &brlan}}},
		{name: "split", in: `{"lan":{"nics":["eth0"],"mode":"802.3ad","vlan":7},"backplane":{"nics":["eth1"],"mtu":9000}}`,
			want: Spec{LAN: Bond{Name: "bond0", NICs: []string{"eth0"}, Mode: Mode8023AD, VLAN: 7, DHCP: &on, Bridge: &brlan},
				Backplane: &Bond{Name: "bond1", NICs: []string{"eth1"}, Mode: ModeActiveBackup, MTU: 9000, DHCP: &off}}},
		{name: "unknown field", in: `{"lan":{"nic":["eth0"]}}`, bad: true},
		{name: "bad mode", in: `{"lan":{"mode":"round-robin"}}`, bad: true},
		{name: "bad address", in: `{"lan":{"addresses":["192.0.2.5"]}}`, bad: true},
		{name: "ipv6 gateway", in: `{"lan":{"gateway":"fe80::1"}}`, bad: true},
		{name: "NIC in both", in: `{"lan":{"nics":["eth0"]},"backplane":{"nics":["eth0"]}}`, bad: true},
		{name: "backplane takes all", in: `{"lan":{"nics":["eth0"]},"backplane":{}}`, bad: true},
		{name: "same name", in: `{"lan":{"nics":["eth0"]},"backplane":{"name":"bond0","nics":["eth1"]}}`, bad: true},
		{name: "vlan too big", in: `{"lan":{"vlan":4095}}`, bad: true},
		{name: "vlan name too long", in: `{"lan":{"name":"bondbondbond","vlan":4000}}`, bad: true},
		{name: "mtu too small", in: `{"lan":{"mtu":100}}`, bad: true},
		{name: "duplicate NIC", in: `{"lan":{"nics":["eth0","eth0"]}}`, bad: true},
		{name: "trailing data", in: `{} {}`, bad: true},
		{name: "not json", in: `lan: bond0`, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if tt.bad {
				if !errors.Is(err, ErrBadSpec) {
					t.Fatalf("Parse(%s) = %v, want ErrBadSpec", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%s) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// FuzzParse: any bytes give a valid spec or ErrBadSpec, never a panic,
// and a parsed spec plans without panicking.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `{"lan":{"nics":["eth0","eth1"],"mode":"802.3ad","vlan":3,"mtu":9000}}`,
		`{"lan":{"nics":["a"]},"backplane":{"nics":["b"],"addresses":["10.0.0.1/8"],"gateway":"10.0.0.254"}}`, `null`, `[]`,
		`{"lan":{"bridge":""}}`, `{"lan":{"bridge":"br0","vlan":9}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrBadSpec) {
				t.Fatalf("error %v is not ErrBadSpec", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed spec does not validate: %v", err)
		}
		Make(s, Observed{Bonding: true, Links: []Link{{Name: "eth0", Kind: KindDevice, Up: true, Carrier: true}}}, Inputs{})
	})
}
