package peer

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/serf/serf"
)

func TestGossipTags(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name                    string
		cluster, version, roles string
		hardware                string
		apiPort                 int
		want                    map[string]string
	}{
		{"node defaults", id, "v1", "", "1a2b-3c4d-5e6f", DefaultAPIPort,
			map[string]string{"c": "0123456789ab", "v": "v1", "hw": "1a2b-3c4d-5e6f"}},
		{"test ports and roles", id, "v1", "storage", "", 40123,
			map[string]string{"c": "0123456789ab", "v": "v1", "r": "storage", "a": "40123"}},
		{"short cluster ID kept whole", "abc", "v1", "", "", DefaultAPIPort,
			map[string]string{"c": "abc", "v": "v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := gossipTags(tt.cluster, tt.version, tt.roles, tt.hardware, tt.apiPort)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("gossipTags (-want +got):\n%s", d)
			}
		})
	}
}

func TestMemberAPI(t *testing.T) {
	tests := []struct {
		name string
		m    serf.Member
		want string
	}{
		{"default port", serf.Member{Addr: net.ParseIP("fd53:686f:616c::1"), Tags: map[string]string{}}, "[fd53:686f:616c::1]:7443"},
		{"port tag", serf.Member{Addr: net.ParseIP("127.0.0.1"), Tags: map[string]string{tagAPIPort: "40123"}}, "127.0.0.1:40123"},
	}
	for _, tt := range tests {
		if got := memberAPI(tt.m); got != tt.want {
			t.Errorf("%s: memberAPI = %q, want %q", tt.name, got, tt.want)
		}
	}
}
