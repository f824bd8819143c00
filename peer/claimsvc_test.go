package peer

import (
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

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

func TestStepVoters(t *testing.T) {
	l := func(ids ...string) []string { return ids }
	rep := func(v uint64, ids ...string) voterReport { return voterReport{Voters: ids, Version: v} }
	tests := []struct {
		name     string
		cur      []string
		ver      uint64
		target   []string
		reported map[string]voterReport
		want     voterStep
	}{
		{"no change", l("a", "b", "s"), 3, l("a", "b", "s"), nil, voterStep{Voters: l("a", "b", "s"), Version: 3}},
		{"fresh, nobody reports: the target at version 0", nil, 0, l("a", "b", "s"), nil, voterStep{Voters: l("a", "b", "s")}},
		{"fresh adopts the highest version reported", nil, 0, l("a", "b", "c", "s"),
			map[string]voterReport{"a": rep(4, "a", "b", "s"), "b": rep(3, "a", "b")}, voterStep{Voters: l("a", "b", "s"), Version: 4}},
		{"one addition, every voter at this version: claim it", l("a", "s"), 2, l("a", "c", "s"),
			map[string]voterReport{"a": rep(2, "a", "s")}, voterStep{Voters: l("a", "c", "s"), Version: 3, Propose: true}},
		{"a voter has not reported", l("a", "b", "s"), 2, l("a", "b", "c", "s"),
			map[string]voterReport{"a": rep(2, "a", "b", "s")}, voterStep{Voters: l("a", "b", "s"), Version: 2, WaitFor: l("b")}},
		{"a voter still at the version before waits", l("a", "b", "s"), 2, l("a", "b", "c", "s"),
			map[string]voterReport{"a": rep(2, "a", "b", "s"), "b": rep(1, "a", "s")}, voterStep{Voters: l("a", "b", "s"), Version: 2, WaitFor: l("b")}},
		{"two additions: the first in ID order", l("a", "b", "s"), 0, l("a", "b", "c", "d", "s"),
			map[string]voterReport{"a": rep(0, "a", "b", "s"), "b": rep(0, "a", "b", "s")}, voterStep{Voters: l("a", "b", "c", "s"), Version: 1, Propose: true}},
		{"removal first, the removed node is not waited for", l("a", "b", "s"), 5, l("a", "c", "s"),
			map[string]voterReport{"a": rep(5, "a", "b", "s")}, voterStep{Voters: l("a", "s"), Version: 6, Propose: true}},
		{"a voter won the next step: adopt it, whatever the target", l("a", "b", "s"), 5, l("a", "b", "c", "s"),
			map[string]voterReport{"a": rep(6, "a", "b", "e", "s"), "b": rep(5, "a", "b", "s")}, voterStep{Voters: l("a", "b", "e", "s"), Version: 6}},
		{"not a voter: follow only", l("a", "b"), 5, l("a", "b", "s"),
			map[string]voterReport{"a": rep(5, "a", "b"), "b": rep(5, "a", "b")}, voterStep{Voters: l("a", "b"), Version: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := stepVoters(tt.cur, tt.ver, tt.target, "s", tt.reported)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("step (-want +got):\n%s", diff)
			}
		})
	}
}

// Nodes applying stepVoters toward targets several members away, each
// seeing the membership change at its own moment (some only part of it
// for a while), with reports that reach the others late, and the claim of
// each version won by whoever asks first: no two voters that count each
// other are ever more than one member apart, so their majorities always
// intersect (the claimsim simulation checks that sets one member apart
// never decide two holders for one (resource, epoch)).
func TestStepVotersNeverTwoApart(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SHOAL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (replay with SHOAL_SEED=%d)", seed, seed)
	for run := range 300 {
		r := rand.New(rand.NewPCG(seed, uint64(run)))
		all := []string{"a", "b", "c", "d", "e", "f", "g"}
		start := slices.Clone(all[:2+r.IntN(3)])
		goal := slices.Clone(start)
		for range 2 + r.IntN(3) { // toggle several members
			id := all[r.IntN(len(all))]
			if i := slices.Index(goal, id); i >= 0 && len(goal) > 2 {
				goal = slices.Delete(goal, i, i+1)
			} else if i < 0 {
				goal = append(goal, id)
			}
		}
		slices.Sort(goal)
		type state struct {
			voters []string
			ver    uint64
		}
		cur := map[string]state{}         // what each node uses
		view := map[string][]string{}     // each node's target (its membership view)
		board := map[string]voterReport{} // reports as the others see them (late)
		won := map[uint64]string{}        // claims of each version: first asker wins
		nodes := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(start), goal...))))
		for _, id := range start {
			cur[id] = state{slices.Clone(start), 0}
			board[id] = voterReport{slices.Clone(start), 0}
			view[id] = start
		}
		for step := 0; step < 1000; step++ {
			id := nodes[r.IntN(len(nodes))]
			switch r.IntN(3) {
			case 0: // its gossip shows (part of) the change
				v := slices.Clone(start)
				for _, g := range goal {
					if !slices.Contains(v, g) && r.IntN(3) > 0 {
						v = append(v, g)
					}
				}
				v = slices.DeleteFunc(v, func(x string) bool { return !slices.Contains(goal, x) && r.IntN(3) > 0 })
				if r.IntN(2) == 0 {
					v = goal
				}
				slices.Sort(v)
				view[id] = v
			case 1: // its report reaches the others
				if c, ok := cur[id]; ok {
					board[id] = voterReport{slices.Clone(c.voters), c.ver}
				}
			case 2: // its control tick
				c, ok := cur[id]
				if !ok {
					continue // admitted later: starts from the reports (fresh)
				}
				rep := map[string]voterReport{}
				for k, v := range board {
					if k != id {
						rep[k] = v
					}
				}
				st := stepVoters(c.voters, c.ver, view[id], id, rep)
				if st.Propose {
					if w, ok := won[st.Version]; ok && w != id {
						continue // lost the claim: follow the winner's report later
					}
					won[st.Version] = id
				}
				cur[id] = state{st.Voters, st.Version}
			}
			// a node the others added starts (fresh) from the reports
			for _, n := range nodes {
				if _, ok := cur[n]; ok {
					continue
				}
				for _, c := range cur {
					if slices.Contains(c.voters, n) {
						rep := map[string]voterReport{}
						for k, v := range board {
							rep[k] = v
						}
						st := stepVoters(nil, 0, nil, n, rep)
						cur[n], view[n] = state{st.Voters, st.Version}, goal
						break
					}
				}
			}
			// No two voters that count each other are more than one
			// member apart. (A node being removed may lag further behind;
			// the others no longer count it, and an acceptor refuses
			// requests from nodes outside its own voter set.)
			for x, cx := range cur {
				for y, cy := range cur {
					if slices.Contains(cx.voters, x) && slices.Contains(cy.voters, y) && slices.Contains(cx.voters, y) && slices.Contains(cy.voters, x) && diffCount(cx.voters, cy.voters) > 1 {
						t.Fatalf("run %d step %d: %s uses %v (v%d) and %s uses %v (v%d); start %v, goal %v",
							run, step, x, cx.voters, cx.ver, y, cy.voters, cy.ver, start, goal)
					}
				}
			}
		}
	}
}
