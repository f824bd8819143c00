package qa

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
)

// Shoal runs the shoal CLI inside node and returns its output.
func (c *Cluster) Shoal(node string, args ...string) (string, error) {
	return c.Exec(node, append([]string{"shoal"}, args...)...)
}

// PeerStatus is `shoal status --json` on node.
func (c *Cluster) PeerStatus(node string) (client.Status, error) {
	out, err := c.Shoal(node, "status", "--json")
	if err != nil {
		return client.Status{}, fmt.Errorf("shoal status on %s: %w: %s", node, err, out)
	}
	var st client.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return client.Status{}, fmt.Errorf("shoal status --json on %s: %w: %q", node, err, out)
	}
	return st, nil
}

// WaitFor polls cond every 250 ms until it holds and returns how long that
// took; after timeout it fails the test with cond's last explanation.
// Scenarios print the durations; they never assert them.
func (c *Cluster) WaitFor(what string, timeout time.Duration, cond func() (ok bool, why string)) time.Duration {
	c.t.Helper()
	start := time.Now()
	var why string
	for {
		var ok bool
		if ok, why = cond(); ok {
			d := time.Since(start).Round(10 * time.Millisecond)
			c.t.Logf("%s: after %v", what, d)
			return d
		}
		if time.Since(start) > timeout {
			c.t.Fatalf("%s: not after %v: %s", what, timeout, why)
		}
		select {
		case <-c.t.Context().Done():
			c.t.Fatalf("%s: %v", what, c.t.Context().Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// OneCluster is a WaitFor condition: every listed node reports the same
// cluster ID, sees exactly the listed nodes, all alive, and is an unfenced
// claim voter with every listed node among its voters (what a VSD open or
// a VM placement needs).
func (c *Cluster) OneCluster(nodes ...string) func() (bool, string) {
	return func() (bool, string) {
		var id string
		var ids []string
		for _, n := range nodes {
			st, err := c.PeerStatus(n)
			if err != nil {
				return false, err.Error()
			}
			if st.ClusterID == "" {
				return false, n + " is not in a cluster (" + st.Phase + ")"
			}
			if id == "" {
				id = st.ClusterID
			} else if st.ClusterID != id {
				return false, fmt.Sprintf("%s is in cluster %s, not %s", n, st.ClusterID, id)
			}
			ids = append(ids, st.Self.ID)
		}
		for _, n := range nodes {
			st, _ := c.PeerStatus(n)
			alive := map[string]bool{}
			for _, m := range st.Members {
				if m.State == client.StateAlive {
					alive[m.ID] = true
				}
			}
			for _, want := range ids {
				if !alive[want] {
					return false, fmt.Sprintf("%s does not see %s alive", n, want)
				}
			}
			if len(alive) != len(ids) {
				return false, fmt.Sprintf("%s sees %d alive members, want %d", n, len(alive), len(ids))
			}
			// Claims (VSD opens, VM placement) need the voter set: a
			// node admitted a moment ago votes only once its voters
			// include the others, one member per tick.
			if st.Fence == nil || st.Fence.Fenced {
				return false, n + " has no claim voters yet or is fenced"
			}
			for _, want := range ids {
				if !slices.Contains(st.Fence.Voters, want) {
					return false, fmt.Sprintf("%s: claim voters %v lack %s", n, st.Fence.Voters, want)
				}
			}
		}
		return true, ""
	}
}

// MemberState is a WaitFor condition: observer sees the node with ID id in
// one of the states.
func (c *Cluster) MemberState(observer, id string, states ...string) func() (bool, string) {
	return func() (bool, string) {
		st, err := c.PeerStatus(observer)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range st.Members {
			if m.ID == id {
				for _, s := range states {
					if m.State == s {
						return true, ""
					}
				}
				return false, fmt.Sprintf("%s sees %s as %s, want %v", observer, id, m.State, states)
			}
		}
		return false, fmt.Sprintf("%s does not list %s", observer, id)
	}
}
