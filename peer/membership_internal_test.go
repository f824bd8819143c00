package peer

import (
	"net"
	"strings"
	"testing"
	"time"

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

func TestGossipConfigProbeTimers(t *testing.T) {
	def := DefaultTimers()
	noSmall := def
	noSmall.SmallCluster = 0
	tests := []struct {
		name              string
		timers            Timers
		expected          int
		interval, timeout time.Duration
	}{
		{"alone", def, 1, 500 * time.Millisecond, 250 * time.Millisecond},
		{"32 nodes", def, 32, 500 * time.Millisecond, 250 * time.Millisecond},
		{"128 nodes", def, 128, 500 * time.Millisecond, 250 * time.Millisecond},
		{"129 nodes: stock", def, 129, time.Second, 500 * time.Millisecond},
		{"256 nodes: stock", def, 256, time.Second, 500 * time.Millisecond},
		{"no small-cluster timers", noSmall, 1, time.Second, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := GossipConfig(tt.timers, tt.expected).MemberlistConfig
			got := []time.Duration{mc.ProbeInterval, mc.ProbeTimeout}
			if d := cmp.Diff([]time.Duration{tt.interval, tt.timeout}, got); d != "" {
				t.Errorf("probe interval and timeout (-want +got):\n%s", d)
			}
		})
	}
}

func TestResyncAfter(t *testing.T) {
	tests := []struct {
		n    int
		want time.Duration // in gossip intervals of 100 ms
	}{
		{1, 200 * time.Millisecond},
		{3, 200 * time.Millisecond},
		{32, 500 * time.Millisecond},
		{128, 700 * time.Millisecond},
		{256, 800 * time.Millisecond},
		{512, 900 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := resyncAfter(DefaultTimers(), tt.n); got != tt.want {
			t.Errorf("resyncAfter(%d members) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func TestSnapshotMembers(t *testing.T) {
	tests := []struct {
		name, snap string
		want       int
	}{
		{"empty", "", 0},
		{"three alive", "alive: a 10.0.0.1:7946\nalive: b 10.0.0.2:7946\nclock: 4\nalive: c 10.0.0.3:7946\n", 3},
		{"one gone", "alive: a 10.0.0.1:7946\nalive: b 10.0.0.2:7946\nnot-alive: b\n", 1},
		{"back again", "alive: a 10.0.0.1:7946\nnot-alive: a\nalive: a 10.0.0.9:7946\n", 1},
		{"same name twice", "alive: a 10.0.0.1:7946\nalive: a 10.0.0.1:7946\n", 1},
		{"garbage and a line without address", "leave\nalive: x\n\x00\xff\nevent-clock: 9\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := snapshotMembers(strings.NewReader(tt.snap)); got != tt.want {
				t.Errorf("snapshotMembers = %d, want %d", got, tt.want)
			}
		})
	}
}

// FuzzSnapshotMembers: the count never exceeds the lines of the snapshot.
func FuzzSnapshotMembers(f *testing.F) {
	f.Add("alive: a 10.0.0.1:7946\nalive: b [fd53::2]:7946\nnot-alive: a\nclock: 3\n")
	f.Add("alive: \nnot-alive: \nalive:  x\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, snap string) {
		got := snapshotMembers(strings.NewReader(snap))
		if lines := strings.Count(snap, "\n") + 1; got < 0 || got > lines {
			t.Errorf("snapshotMembers = %d for %d lines", got, lines)
		}
	})
}
