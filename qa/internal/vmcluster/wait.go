package vmcluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
)

// waitPoll is the pause between rounds of WaitFormed (a variable for
// tests).
var waitPoll = 3 * time.Second

// Formed is what WaitFormed saw when every node agreed.
type Formed struct {
	ClusterID string
	Members   []client.Member          // as the first node sees them
	Status    map[string]client.Status // per node
}

// WaitFormed polls `shoal status --json` in every named node (every node
// when nodes is empty) until all report the same cluster with want alive
// members, or ctx ends. progress, if not nil, gets a line whenever what
// the nodes report changes. No input is given to any node.
func (c *Cluster) WaitFormed(ctx context.Context, nodes []string, want int, progress func(string)) (Formed, error) {
	if len(nodes) == 0 {
		nodes = c.Nodes()
	}
	last := ""
	for {
		f := Formed{Status: map[string]client.Status{}}
		var views []string
		agree := true
		sts, errs := c.peerStatuses(ctx, nodes)
		for i, n := range nodes {
			st, err := sts[i], errs[i]
			if err != nil {
				views = append(views, n+": "+BriefError(strings.TrimPrefix(err.Error(), n+": ")))
				agree = false
				continue
			}
			f.Status[n] = st
			alive := aliveCount(st)
			view := fmt.Sprintf("%s: %s cluster=%s alive=%d", n, st.Phase, short(st.ClusterID), alive)
			for _, m := range st.Members {
				if m.State != client.StateAlive && st.Phase == client.PhaseMember {
					view += " " + m.Name + "=" + m.State
				}
			}
			views = append(views, view)
			if st.ClusterID == "" || alive != want || (f.ClusterID != "" && st.ClusterID != f.ClusterID) {
				agree = false
			}
			if f.ClusterID == "" {
				f.ClusterID, f.Members = st.ClusterID, st.Members
			}
		}
		if v := strings.Join(views, "; "); v != last && progress != nil {
			progress(v)
			last = v
		}
		if agree {
			return f, nil
		}
		select {
		case <-ctx.Done():
			return f, fmt.Errorf("nodes did not form one cluster of %d: last seen: %s: %w", want, last, ctx.Err())
		case <-time.After(waitPoll):
		}
	}
}

// peerStatuses asks every node at once (a booting node costs the agent's
// sync timeout).
func (c *Cluster) peerStatuses(ctx context.Context, nodes []string) ([]client.Status, []error) {
	sts, errs := make([]client.Status, len(nodes)), make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			sts[i], errs[i] = c.PeerStatus(qctx, n)
		}()
	}
	wg.Wait()
	return sts, errs
}

func aliveCount(st client.Status) int {
	n := 0
	for _, m := range st.Members {
		if m.State == client.StateAlive {
			n++
		}
	}
	return n
}

func short(id string) string {
	if id == "" {
		return "-"
	}
	return id[:min(8, len(id))]
}

// BriefError says in a few words why a node's status could not be read
// (NodeStatus.PeerErr, WaitFormed's progress): booting, no peer, off.
func BriefError(e string) string {
	switch {
	case strings.Contains(e, errAgentNotUp.Error()):
		return "booting"
	case strings.Contains(e, "peer.sock"):
		return "peer not running yet"
	case strings.Contains(e, "guest agent socket"):
		return "off"
	}
	return e
}

// AliveNames are the names of the alive members in st, sorted.
func AliveNames(st client.Status) []string {
	var out []string
	for _, m := range st.Members {
		if m.State == client.StateAlive {
			out = append(out, m.Name)
		}
	}
	sort.Strings(out)
	return out
}
