package peer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/peertest"
)

// waitVoters waits until every running node listed has n voters and is
// not fenced.
func waitVoters(c *peertest.Cluster, n int, nodes ...*peertest.Node) {
	c.WaitFor("every node has its voters and is not fenced", func() bool {
		for _, nd := range nodes {
			f, err := nd.Client.Fence(context.Background())
			if err != nil || f.Fenced || len(f.Voters) != n {
				return false
			}
		}
		return true
	})
}

func TestClaimRaceOneWinner(t *testing.T) {
	c := peertest.NewCluster(t, 3)
	waitVoters(c, 3, c.Nodes...)
	ctx := t.Context()

	// Every node races for epoch 1 of the same resource.
	type result struct {
		c   client.Claim
		err error
	}
	results := make([]result, len(c.Nodes))
	var wg sync.WaitGroup
	for i, nd := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := nd.Client.Claim(ctx, client.ClaimRequest{Resource: "vm/race", Epoch: 1})
			results[i] = result{cl, err}
		}()
	}
	wg.Wait()
	winner := ""
	for i, r := range results {
		switch {
		case r.err == nil:
			if winner != "" {
				t.Fatalf("two winners for vm/race epoch 1: %s and %s", winner, r.c.Holder)
			}
			winner = r.c.Holder
			if r.c.Holder != c.Nodes[i].ID() {
				t.Errorf("node %d won with holder %s, want itself", i, r.c.Holder)
			}
		case client.ClaimCode(r.err) == client.ClaimErrTaken || client.ClaimCode(r.err) == client.ClaimErrContended:
			t.Logf("node %d lost: %v", i, r.err)
		default:
			t.Errorf("node %d: unexpected error %v", i, r.err)
		}
	}
	// Contended epochs are possible after a three-way duel; then nobody
	// holds epoch 1 and the next epoch decides.
	if winner == "" {
		cl, err := c.Nodes[0].Client.Claim(ctx, client.ClaimRequest{Resource: "vm/race"})
		if err != nil {
			t.Fatalf("claim the next epoch after a contended one: %v", err)
		}
		winner = cl.Holder
	}
	var want client.ClaimView
	for i, nd := range c.Nodes {
		v, err := nd.Client.GetClaim(ctx, "vm/race")
		if err != nil {
			t.Fatalf("node %d: get: %v", i, err)
		}
		if i == 0 {
			want = v
		}
		if diff := cmp.Diff(want, v); diff != "" {
			t.Errorf("node %d sees another claim (-node0 +node%d):\n%s", i, i, diff)
		}
	}
	if want.Holder != winner || want.State != client.ClaimHeld {
		t.Errorf("get = %+v, want held by %s", want, winner)
	}
	t.Logf("vm/race: epoch %d held by %s", want.Epoch, want.Holder)

	// The local view of the winner shows the claim.
	var wn *peertest.Node
	for _, nd := range c.Nodes {
		if nd.ID() == winner {
			wn = nd
		}
	}
	ls, err := wn.Client.Claims(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// (voter changes are claims too: resource claim-voters)
	ls = slices.DeleteFunc(ls, func(v client.ClaimView) bool { return v.Resource == "claim-voters" })
	if diff := cmp.Diff([]client.ClaimView{want}, ls); diff != "" {
		t.Errorf("claim ls on the winner (-want +got):\n%s", diff)
	}
	if st := wn.Status(); st.Fence == nil || st.Fence.Fenced {
		t.Errorf("status fence = %+v, want not fenced", st.Fence)
	}

	// Taking over: another node claims the next epoch.
	other := c.Nodes[0]
	if other == wn {
		other = c.Nodes[1]
	}
	cl, err := other.Client.Claim(ctx, client.ClaimRequest{Resource: "vm/race"})
	if err != nil || cl.Epoch != want.Epoch+1 || cl.Holder != other.ID() {
		t.Fatalf("take over = %+v, %v; want epoch %d held by %s", cl, err, want.Epoch+1, other.ID())
	}
	// The old epoch cannot be claimed again.
	if _, err := wn.Client.Claim(ctx, client.ClaimRequest{Resource: "vm/race", Epoch: want.Epoch}); client.ClaimCode(err) == "" {
		t.Errorf("claim of a superseded epoch: err = %v, want a claim error", err)
	}

	// Every node's cluster state records the current holder for display,
	// one field per epoch, the older epoch pruned by the node that took over.
	wantRec := client.Claim{Resource: "vm/race", Epoch: cl.Epoch, Holder: cl.Holder}
	for i, nd := range c.Nodes {
		var r client.StateRecord
		c.WaitFor("claim/vm/race recorded in the state of every node", func() bool {
			var err error
			r, err = nd.Client.GetState(ctx, client.ClaimRecordKey("vm/race"))
			got, ok := client.ClaimFromState(r)
			return err == nil && ok && got == wantRec
		})
		if f, ok := r.Fields[client.ClaimEpochField(want.Epoch)]; ok && f.Value != "" {
			t.Errorf("node %d: claim/vm/race still shows superseded epoch %d: %+v", i, want.Epoch, r.Fields)
		}
	}
}

func TestClaimBadInput(t *testing.T) {
	c := peertest.NewCluster(t, 1)
	waitVoters(c, 1, c.Nodes...)
	for _, req := range []client.ClaimRequest{
		{Resource: ""},
		{Resource: "has space"},
		{Resource: "vm/x", Holder: "no/ok?"},
	} {
		_, err := c.Nodes[0].Client.Claim(t.Context(), req)
		if got := client.ClaimCode(err); got != client.ClaimErrInvalid {
			t.Errorf("claim %+v: code %q (%v), want %q", req, got, err, client.ClaimErrInvalid)
		}
	}
	ls, err := c.Nodes[0].Client.Claims(t.Context())
	if err != nil || len(ls) != 0 {
		t.Errorf("claims after bad input = %v, %v; want none", ls, err)
	}
}

func TestClaimFenceAndRestart(t *testing.T) {
	c := peertest.NewCluster(t, 3)
	waitVoters(c, 3, c.Nodes...)
	ctx := t.Context()
	n0 := c.Nodes[0]
	won, err := n0.Client.Claim(ctx, client.ClaimRequest{Resource: "vsd/a"})
	if err != nil {
		t.Fatal(err)
	}
	last, err := n0.Client.Fence(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Two of three down: node 0 fences itself and tells its watchers.
	c.Nodes[1].Stop()
	c.Nodes[2].Stop()
	for last.Fenced == false {
		if last, err = n0.Client.WaitFence(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("fenced: %+v", last)
	if _, err := n0.Client.Claim(ctx, client.ClaimRequest{Resource: "vsd/b", Epoch: 1}); client.ClaimCode(err) != client.ClaimErrFenced {
		t.Errorf("claim while fenced: %v, want code %q", err, client.ClaimErrFenced)
	}

	// A restarted node keeps its voters (it must not become a majority of
	// one while gossip shows only itself) and its promises.
	c.Restart(c.Nodes[1])
	f, err := c.Nodes[1].Client.Fence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Voters) != 3 {
		t.Errorf("voters right after restart = %v, want the 3 of before", f.Voters)
	}
	waitVoters(c, 3, n0, c.Nodes[1])
	for _, nd := range []*peertest.Node{n0, c.Nodes[1]} {
		v, err := nd.Client.GetClaim(ctx, "vsd/a")
		if err != nil {
			t.Fatal(err)
		}
		if v.Holder != won.Holder || v.Epoch != won.Epoch {
			t.Errorf("after restart, get vsd/a = %+v, want %+v", v, won)
		}
	}
}

// A removed node stops counting: the others go from 3 voters to 2 (and
// can claim with both), and the removed node, restarted with its old
// certificate, is refused by every acceptor and stays fenced.
func TestClaimRemovedNodeStopsCounting(t *testing.T) {
	c := peertest.NewCluster(t, 3)
	waitVoters(c, 3, c.Nodes...)
	ctx := t.Context()
	victim := c.Nodes[2]
	id := victim.ID()
	victim.Stop()
	c.WaitFor("node failed", func() bool { return peertest.StateOf(c.Nodes[0].Status(), id) == client.StateFailed })
	// Still a voter while failed: 2 of 3 are a majority, so claims work.
	if _, err := c.Nodes[0].Client.Claim(ctx, client.ClaimRequest{Resource: "vm/r"}); err != nil {
		t.Fatalf("claim with one voter of three down: %v", err)
	}
	if err := c.Nodes[0].Client.Remove(ctx, id); err != nil {
		t.Fatalf("remove: %v", err)
	}
	waitVoters(c, 2, c.Nodes[0], c.Nodes[1])
	cl, err := c.Nodes[1].Client.Claim(ctx, client.ClaimRequest{Resource: "vm/r"})
	if err != nil || cl.Epoch != 2 {
		t.Fatalf("claim with 2 voters after the removal = %+v, %v; want epoch 2", cl, err)
	}
	c.Restart(victim)
	f, err := victim.Client.Fence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Fenced {
		t.Errorf("removed node right after restart: %+v, want fenced", f)
	}
	if _, err := victim.Client.Claim(ctx, client.ClaimRequest{Resource: "vm/r", Epoch: 3}); err == nil {
		t.Error("the removed node claimed epoch 3")
	}
	// Even a read, which works while fenced, finds no majority: the
	// others refuse its requests (the daemon gives up after its 10 s
	// propose timeout).
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if v, err := victim.Client.GetClaim(rctx, "vm/r"); client.ClaimCode(err) != client.ClaimErrNoQuorum && client.ClaimCode(err) != client.ClaimErrNotVoter {
		t.Errorf("read by the removed node = %+v, %v; want no quorum", v, err)
	}
	v, err := c.Nodes[0].Client.GetClaim(ctx, "vm/r")
	if err != nil || v.Epoch != 2 || v.Holder != c.Nodes[1].ID() {
		t.Errorf("get after the removed node tried = %+v, %v; want epoch 2 held by node 1", v, err)
	}
}

// Two nodes admitted at once: the voters grow one member per step, each
// step decided by a claim, and end the same on every node; every node
// reports its set in the cluster state, and claims work with five voters.
func TestClaimVotersGrowOneAtATime(t *testing.T) {
	c := peertest.NewCluster(t, 3)
	waitVoters(c, 3, c.Nodes...)
	c.AddNode()
	c.AddNode()
	c.WaitConverged(5)
	ctx := t.Context()
	defer func() {
		if t.Failed() {
			for i, nd := range c.Nodes {
				f, _ := nd.Client.Fence(ctx)
				l, _ := nd.Client.ListState(ctx, "claim-voters/")
				var reps []string
				for _, r := range l.Records {
					reps = append(reps, r.Key[len("claim-voters/"):][:6]+" v"+r.Fields["version"].Value+" "+fmt.Sprint(len(strings.Split(r.Fields["voters"].Value, ","))))
				}
				t.Logf("node %d %s: fenced %v voters %d; reports %v", i, nd.ID()[:6], f.Fenced, len(f.Voters), reps)
			}
		}
	}()
	waitVoters(c, 5, c.Nodes...)
	var want client.StateRecord
	for i, nd := range c.Nodes {
		c.WaitFor("every node reports the same voter version and set", func() bool {
			r, err := nd.Client.GetState(ctx, "claim-voters/"+nd.ID())
			if err != nil {
				return false
			}
			if i == 0 {
				want = r
			}
			return r.Fields["version"].Value == want.Fields["version"].Value && r.Fields["voters"].Value == want.Fields["voters"].Value
		})
	}
	// From 3 to 5 voters is at least two versions (one per member).
	if v := want.Fields["version"].Value; v == "" || v == "0" || v == "1" {
		t.Errorf("voter version %q after growing from 3 to 5, want at least 2", v)
	}
	if cl, err := c.Nodes[4].Client.Claim(ctx, client.ClaimRequest{Resource: "vm/five"}); err != nil || cl.Holder != c.Nodes[4].ID() {
		t.Errorf("claim with five voters: %+v, %v", cl, err)
	}
}

// TestClaimRightAfterFormation: a claim asked for as soon as membership
// has converged, before the voter set has taken in every member, waits
// for it instead of failing with not_voter.
func TestClaimRightAfterFormation(t *testing.T) {
	c := peertest.NewCluster(t, 3)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, nd := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cl client.Claim
			cl, errs[i] = nd.Client.Claim(ctx, client.ClaimRequest{Resource: fmt.Sprintf("vsd/early%d", i)})
			if errs[i] == nil && cl.Holder != nd.ID() {
				errs[i] = fmt.Errorf("holder %s, want %s", cl.Holder, nd.ID())
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: claim right after formation: %v", i, err)
		}
	}
}
