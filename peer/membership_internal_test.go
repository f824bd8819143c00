package peer

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/shoal-hci/shoal/peer/client"
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
		{"256 nodes", def, 256, 500 * time.Millisecond, 250 * time.Millisecond},
		{"257 nodes: stock", def, 257, time.Second, 500 * time.Millisecond},
		{"512 nodes: stock", def, 512, time.Second, 500 * time.Millisecond},
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

func TestGossipConfigRetransmitMult(t *testing.T) {
	def := DefaultTimers()
	noLarge := def
	noLarge.LargeCluster = 0
	zero := def
	zero.RetransmitMult, zero.LargeCluster = 0, 0
	tests := []struct {
		name     string
		timers   Timers
		expected int
		want     int
	}{
		{"3 nodes: stock", def, 3, 4},
		{"128 nodes: stock", def, 128, 4},
		{"129 nodes", def, 129, 3},
		{"256 nodes", def, 256, 3},
		{"257 nodes", def, 257, 2},
		{"512 nodes", def, 512, 2},
		{"5000 nodes: the minimum", def, 5000, 2},
		{"no shrinking", noLarge, 512, 4},
		{"zero: memberlist's default", zero, 512, memberlist.DefaultLANConfig().RetransmitMult},
	}
	for _, tt := range tests {
		if got := GossipConfig(tt.timers, tt.expected).MemberlistConfig.RetransmitMult; got != tt.want {
			t.Errorf("%s: RetransmitMult = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestMissingMembersDue(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	heard := map[string]string{"a": "10.0.0.1:7946", "b": "10.0.0.2:7946", "c": "10.0.0.3:7946"}
	steps := []struct {
		name  string
		at    time.Duration
		heard map[string]string
		alive map[string]bool
		want  []string
	}{
		{"b and c missing: not yet", 0, heard, map[string]bool{"a": true}, nil},
		{"still within the grace", 1500 * time.Millisecond, heard, map[string]bool{"a": true}, nil},
		{"b arrived by gossip, c missing for the grace", 2 * time.Second, heard, map[string]bool{"a": true, "b": true}, []string{"c"}},
		{"b missing again: its clock restarts", 3 * time.Second, heard, map[string]bool{"a": true}, []string{"c"}},
		{"c no longer heard: forgotten", 4 * time.Second, map[string]string{"a": "x", "b": "y"}, map[string]bool{"a": true}, nil},
		{"b missing for the grace", 5 * time.Second, heard, map[string]bool{"a": true}, []string{"b"}},
		{"c heard again: a new clock", 6 * time.Second, heard, map[string]bool{"a": true}, []string{"b"}},
		{"everyone in", 9 * time.Second, heard, map[string]bool{"a": true, "b": true, "c": true}, nil},
	}
	var m missingMembers
	for _, st := range steps {
		got := m.due(t0.Add(st.at), 2*time.Second, st.heard, st.alive)
		if d := cmp.Diff(st.want, got); d != "" {
			t.Errorf("%s: due (-want +got):\n%s", st.name, d)
		}
	}
	var zero missingMembers
	if got := zero.due(t0, 0, heard, map[string]bool{"a": true}); !cmp.Equal(got, []string{"b", "c"}) {
		t.Errorf("zero grace: due = %v, want [b c] at once", got)
	}
	if len(m.since) != 0 {
		t.Errorf("members remembered after everyone arrived: %v", m.since)
	}
}

func TestJoinPace(t *testing.T) {
	def := DefaultTimers()
	tests := []struct {
		unclaimed int
		want      time.Duration
	}{
		{0, 0},
		{2, 100 * time.Millisecond},
		{31, 1550 * time.Millisecond},
		{127, 6350 * time.Millisecond},
		{200, 10 * time.Second},
		{511, 25550 * time.Millisecond},
		{600, def.JoinPace},
		{1000, def.JoinPace},
	}
	for _, tt := range tests {
		if got := joinPace(def, tt.unclaimed); got != tt.want {
			t.Errorf("joinPace(%d unclaimed) = %v, want %v", tt.unclaimed, got, tt.want)
		}
		for range 20 {
			if d := joinDelay(def, tt.unclaimed); d < 0 || d > tt.want {
				t.Fatalf("joinDelay(%d unclaimed) = %v, want within [0, %v]", tt.unclaimed, d, tt.want)
			}
		}
	}
}

func TestAdmitJoinAddrs(t *testing.T) {
	var members []client.Member
	for i := range 20 {
		st := client.StateAlive
		if i%5 == 4 {
			st = client.StateFailed
		}
		members = append(members, client.Member{ID: fmt.Sprintf("%032x", i), State: st, Gossip: fmt.Sprintf("10.0.0.%d:7946", i)})
	}
	self, selfID := members[0].Gossip, members[0].ID
	picked := map[string]bool{}
	for range 50 {
		got := admitJoinAddrs(self, selfID, members)
		if len(got) != admitJoinMembers || got[0] != self {
			t.Fatalf("admitJoinAddrs = %v: want %d addresses, the admitter's first", got, admitJoinMembers)
		}
		seen := map[string]bool{}
		for _, a := range got[1:] {
			if a == self || seen[a] {
				t.Fatalf("admitJoinAddrs = %v: %s twice", got, a)
			}
			seen[a] = true
			picked[a] = true
		}
	}
	for i, m := range members {
		if m.State != client.StateAlive && picked[m.Gossip] {
			t.Errorf("member %d (%s) listed", i, m.State)
		}
	}
	// 15 alive others, 7 picked at random 50 times: all of them come up.
	if len(picked) != 15 {
		t.Errorf("%d distinct members listed over 50 replies, want all 15 alive others", len(picked))
	}
	if got := admitJoinAddrs(self, selfID, members[:1]); !cmp.Equal(got, []string{self}) {
		t.Errorf("alone: admitJoinAddrs = %v, want [%s]", got, self)
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
