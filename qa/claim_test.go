//go:build qa

package qa_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/qa"
)

// Issue 6's scenarios on real shoal daemons: claims between nodes racing,
// across a partition, and with an acceptor killed mid-claim.

func claimNeedsRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("qa scenarios need root (network namespaces)")
	}
}

// claimTake runs `shoal claim take` on node; epoch 0 means the next one.
func claimTake(c *qa.Cluster, node, resource string, epoch uint64) (client.Claim, time.Duration, error) {
	args := []string{"claim", "take", resource, "--json"}
	if epoch > 0 {
		args = append(args, "--epoch", fmt.Sprint(epoch))
	}
	start := time.Now()
	out, err := c.Shoal(node, args...)
	d := time.Since(start)
	if err != nil {
		return client.Claim{}, d, err // names the node and holds the output
	}
	var cl client.Claim
	if err := json.Unmarshal([]byte(out), &cl); err != nil {
		return client.Claim{}, d, fmt.Errorf("%s: claim take --json: %w: %q", node, err, out)
	}
	return cl, d, nil
}

// claimGet runs `shoal claim get` on node.
func claimGet(c *qa.Cluster, node, resource string) (client.ClaimView, error) {
	out, err := c.Shoal(node, "claim", "get", resource, "--json")
	if err != nil {
		return client.ClaimView{}, err
	}
	var v client.ClaimView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return client.ClaimView{}, fmt.Errorf("%s: claim get --json: %w: %q", node, err, out)
	}
	return v, nil
}

// fenceIs is a WaitFor condition: node reports itself fenced (or not),
// with voters voters.
func fenceIs(c *qa.Cluster, node string, fenced bool, voters int) func() (bool, string) {
	return func() (bool, string) {
		st, err := c.PeerStatus(node)
		if err != nil {
			return false, err.Error()
		}
		if st.Fence == nil {
			return false, node + " shows no fence (not a member?)"
		}
		if st.Fence.Fenced != fenced || len(st.Fence.Voters) != voters {
			return false, fmt.Sprintf("%s: fenced %v with %d voters (heard %d, need %d), want fenced %v with %d", node,
				st.Fence.Fenced, len(st.Fence.Voters), st.Fence.Heard, st.Fence.Need, fenced, voters)
		}
		return true, ""
	}
}

// sameClaimEverywhere checks that get on every node returns want.
func sameClaimEverywhere(t *testing.T, c *qa.Cluster, nodes []string, want client.Claim) {
	t.Helper()
	for _, n := range nodes {
		v, err := claimGet(c, n, want.Resource)
		if err != nil {
			t.Error(err)
			continue
		}
		if v.State != client.ClaimHeld || v.Epoch != want.Epoch || v.Holder != want.Holder {
			t.Errorf("%s: get %s = %+v, want epoch %d held by %s", n, want.Resource, v, want.Epoch, want.Holder)
		}
	}
}

// claimInStateEverywhere waits until `shoal state get claim/<resource>`
// on every node shows want (the holder recorded for display).
func claimInStateEverywhere(c *qa.Cluster, nodes []string, want client.Claim) {
	for _, n := range nodes {
		c.WaitFor(n+" records "+want.Resource+" in its cluster state", 30*time.Second, func() (bool, string) {
			out, err := c.Shoal(n, "state", "get", client.ClaimRecordKey(want.Resource), "--json")
			if err != nil {
				return false, err.Error()
			}
			var r client.StateRecord
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				return false, fmt.Sprintf("state get --json: %v: %q", err, out)
			}
			if got, ok := client.ClaimFromState(r); !ok || got != want {
				return false, fmt.Sprintf("%s shows %+v", n, r.Fields)
			}
			return true, ""
		})
	}
}

// TestFastClaims: two nodes race for one resource and exactly one wins; a
// minority partition fences itself and cannot claim while the majority
// can; an acceptor killed mid-claim and restarted keeps its promises.
func TestFastClaims(t *testing.T) {
	claimNeedsRoot(t)
	c := qa.NewCluster(t, qa.Options{Nodes: 3, Disks: -1})
	all := []string{"node1", "node2", "node3"}
	c.WaitFor("3 fresh nodes form one cluster", 2*time.Minute, c.OneCluster(all...))
	for _, n := range all {
		c.WaitFor(n+" has 3 claim voters and is not fenced", time.Minute, fenceIs(c, n, false, 3))
	}
	ids := map[string]string{}
	for _, n := range all {
		ids[n] = selfIDOf(t, c, n)
	}

	t.Run("race", func(t *testing.T) {
		type result struct {
			c   client.Claim
			d   time.Duration
			err error
		}
		res := map[string]result{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, n := range []string{"node1", "node2"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl, d, err := claimTake(c, n, "vm/race", 1)
				mu.Lock()
				res[n] = result{cl, d, err}
				mu.Unlock()
			}()
		}
		wg.Wait()
		var winners []string
		for n, r := range res {
			t.Logf("%s: claim take vm/race --epoch 1: %v (%v)", n, r.err, r.d.Round(time.Millisecond))
			if r.err == nil {
				winners = append(winners, n)
				if r.c.Holder != ids[n] {
					t.Errorf("%s won with holder %s, want itself %s", n, r.c.Holder, ids[n])
				}
			}
		}
		if len(winners) > 1 {
			t.Fatalf("two winners for vm/race epoch 1: %v", winners)
		}
		if len(winners) == 0 {
			// Both lost a duel: epoch 1 is contended, never two holders.
			// The next epoch decides.
			cl, _, err := claimTake(c, "node1", "vm/race", 0)
			if err != nil {
				t.Fatalf("no winner at epoch 1 and the next epoch failed too: %v", err)
			}
			t.Logf("epoch 1 contended (both lost the duel); node1 took epoch %d", cl.Epoch)
			sameClaimEverywhere(t, c, all, cl)
			return
		}
		sameClaimEverywhere(t, c, all, res[winners[0]].c)
		t.Logf("vm/race epoch 1: exactly one winner, %s", winners[0])
	})

	t.Run("partition", func(t *testing.T) {
		start := time.Now()
		c.Partition([]string{"node1"}, []string{"node2", "node3"})
		c.WaitFor("node1 (the minority) reports itself fenced", time.Minute, fenceIs(c, "node1", true, 3))
		if st, err := c.PeerStatus("node1"); err == nil && st.Fence != nil {
			// Since is the fence's own timestamp; status itself may be slow
			// during a partition (it asks the other members for pending nodes).
			t.Logf("node1 fenced itself %v after the cut (FenceDeadline: 4 s by default)", st.Fence.Since.Sub(start).Round(10*time.Millisecond))
		}
		if _, _, err := claimTake(c, "node1", "vm/part", 0); err == nil || !strings.Contains(err.Error(), "fenced") {
			t.Errorf("minority claim: err = %v, want refused as fenced", err)
		}
		if _, _, err := claimTake(c, "node1", "vm/part", 1); err == nil {
			t.Errorf("minority claim of epoch 1 succeeded")
		}
		cl, lat, err := claimTake(c, "node2", "vm/part", 0)
		if err != nil {
			t.Fatalf("majority claim: %v", err)
		}
		t.Logf("majority claimed vm/part epoch %d in %v (CLI round trip), %v after the cut", cl.Epoch, lat.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		if st, _ := c.PeerStatus("node2"); st.Fence == nil || st.Fence.Fenced {
			t.Errorf("node2 on the majority side: fence %+v, want not fenced", st.Fence)
		}
		c.HealPartition()
		c.WaitFor("node1 unfenced after the heal", time.Minute, fenceIs(c, "node1", false, 3))
		sameClaimEverywhere(t, c, all, cl)
		claimInStateEverywhere(c, all, cl) // node1 got the record from node2 after the heal
	})

	t.Run("acceptor restart mid-claim", func(t *testing.T) {
		// node1 claims resources one after another while node3 is killed.
		type taken struct {
			c   client.Claim
			err error
		}
		const maxClaims = 1000
		out := make(chan taken, maxClaims)
		stop := make(chan struct{})
		var count atomic.Int64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(out)
			for i := range maxClaims {
				select {
				case <-stop:
					return
				default:
				}
				cl, _, err := claimTake(c, "node1", fmt.Sprintf("vm/k%d", i), 0)
				if err != nil {
					cl.Resource = fmt.Sprintf("vm/k%d", i)
				}
				out <- taken{cl, err}
				count.Add(1)
			}
		}()
		claimed := func(n int64) func() (bool, string) {
			return func() (bool, string) {
				if got := count.Load(); got < n {
					return false, fmt.Sprintf("%d claims done", got)
				}
				return true, ""
			}
		}
		// Kill node3 while claims are running (each takes milliseconds,
		// so one is in flight), let more go on without it, restart it and
		// let more go on with it again.
		c.WaitFor("node1 has made 10 claims", time.Minute, claimed(10))
		c.Kill("node3")
		k := count.Load()
		c.WaitFor("node1 has made 10 more claims with node3 dead", time.Minute, claimed(k+10))
		c.Restart("node3")
		k = count.Load()
		c.WaitFor("node1 has made 10 more claims with node3 back", time.Minute, claimed(k+10))
		close(stop)
		wg.Wait()
		var won []client.Claim
		failed := 0
		for r := range out {
			if r.err != nil {
				failed++
				t.Logf("%s: %v", r.c.Resource, r.err)
				continue
			}
			won = append(won, r.c)
		}
		t.Logf("node1 claimed %d resources while node3 was killed and restarted (%d failed)", len(won), failed)
		if len(won) == 0 {
			t.Fatal("node1 claimed nothing while one acceptor of three was down")
		}
		c.WaitFor("node3 back with 3 voters, not fenced", time.Minute, fenceIs(c, "node3", false, 3))
		// node3's store kept what it accepted: its local view, read from
		// disk after the restart, names node1 for resources it accepted.
		out3, err := c.Shoal("node3", "claim", "ls", "--json")
		if err != nil {
			t.Fatalf("claim ls on node3: %v: %s", err, out3)
		}
		var local []client.ClaimView
		if err := json.Unmarshal([]byte(out3), &local); err != nil {
			t.Fatalf("claim ls --json: %v: %q", err, out3)
		}
		kept := 0
		for _, v := range local {
			if strings.HasPrefix(v.Resource, "vm/k") && v.Holder == ids["node1"] {
				kept++
			}
		}
		t.Logf("node3 remembers %d of node1's claims after its restart", kept)
		if kept == 0 {
			t.Error("node3 remembers no claim of node1 after its restart")
		}
		// With node2 down, every majority needs node3: every claim decided
		// before is still read the same from node1 and node3.
		c.Kill("node2")
		for _, cl := range won {
			sameClaimEverywhere(t, c, []string{"node1", "node3"}, cl)
		}
		c.Restart("node2")
		c.WaitFor("node2 back with 3 voters, not fenced", time.Minute, fenceIs(c, "node2", false, 3))
		sameClaimEverywhere(t, c, all, won[len(won)-1])
	})
}

func selfIDOf(t *testing.T, c *qa.Cluster, node string) string {
	t.Helper()
	st, err := c.PeerStatus(node)
	if err != nil {
		t.Fatal(err)
	}
	return st.Self.ID
}
