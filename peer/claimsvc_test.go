package peer

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/peer/client"
)

func TestComputeVoters(t *testing.T) {
	m := func(id, state string) client.Member { return client.Member{ID: id, State: state} }
	tests := []struct {
		name    string
		old     []string
		members []client.Member
		revoked []string
		fresh   bool
		want    []string
	}{
		{"first sight", nil, []client.Member{m("a", client.StateAlive), m("b", client.StateAlive)}, nil, false, []string{"a", "b", "s"}},
		{"fresh node waits", nil, []client.Member{m("s", client.StateAlive)}, nil, true, []string{}},
		{"restart sees only self", []string{"a", "b", "s"}, []client.Member{m("s", client.StateAlive)}, nil, false, []string{"a", "b", "s"}},
		{"failed still votes", []string{"a", "b", "s"}, []client.Member{m("a", client.StateFailed)}, nil, false, []string{"a", "b", "s"}},
		{"left stops voting", []string{"a", "b", "s"}, []client.Member{m("a", client.StateLeft)}, nil, false, []string{"b", "s"}},
		{"removed stops voting", []string{"a", "b", "s"}, []client.Member{m("a", client.StateFailed)}, []string{"a"}, false, []string{"b", "s"}},
		{"admitted joins", []string{"a", "s"}, []client.Member{m("c", client.StateAlive)}, nil, false, []string{"a", "c", "s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := computeVoters(tt.old, "s", tt.members, tt.revoked, tt.fresh)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("voters (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseVoterRecord(f *testing.F) {
	f.Add([]byte(`{"cluster_id":"c1","voters":["a","b","c"]}`))
	f.Add([]byte(`{"cluster_id":"c1","voters":[]}`))
	f.Add([]byte(`{"cluster_id":"","voters":["a"]}`))
	f.Add([]byte(`{"cluster_id":"c1","voters":["b","a"]}`))
	f.Add([]byte(`{"cluster_id":"c1","voters":["a b"]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseVoterRecord(b)
		if err != nil {
			return
		}
		// A record that parses round-trips and yields a valid voter set.
		again, err := parseVoterRecord(mustJSON(r))
		if err != nil {
			t.Fatalf("re-parse of %+v: %v", r, err)
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}
		if got := computeVoters(r.Voters, "self", nil, nil, false); len(got) < len(r.Voters) {
			t.Errorf("voters shrank without removal: %v -> %v", r.Voters, got)
		}
	})
}
