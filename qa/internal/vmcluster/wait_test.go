package vmcluster

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-hci/shoal/peer/client"
)

// TestWaitFormed plays three nodes' guest agents answering `shoal status
// --json`: node3 has no peer yet, then all are unclaimed, then node1 forms
// alone, then all three agree. WaitFormed must wait for the last, and the
// API forward's target must be node1's API.
func TestWaitFormed(t *testing.T) {
	defer func(d time.Duration) { waitPoll = d }(waitPoll)
	waitPoll = 10 * time.Millisecond
	dir, err := os.MkdirTemp("", "shv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st := &State{Dir: dir, APIPort: 1}
	var mu sync.Mutex
	round := map[string]int{}
	member := func(n string, alive int) client.Status {
		s := client.Status{Phase: client.PhaseMember, ClusterID: "c0ffee", Self: client.Member{ID: n, API: "[fd53::" + n[4:] + "]:7443"}}
		for i := range 3 {
			state := client.StateFailed
			if i < alive {
				state = client.StateAlive
			}
			s.Members = append(s.Members, client.Member{ID: "n" + string(rune('1'+i)), State: state})
		}
		return s
	}
	// status answers node n's shoal status: its own story, one step per call.
	status := func(n string) (string, int) {
		mu.Lock()
		r := round[n]
		round[n]++
		mu.Unlock()
		var s client.Status
		switch {
		case n == "node3" && r == 0:
			return "", 1 // peer not running yet
		case r < 2:
			s = client.Status{Phase: client.PhaseUnclaimed}
		case r < 3 && n == "node1":
			s = member(n, 1)
		case r < 3:
			s = client.Status{Phase: client.PhaseJoining}
		default:
			s = member(n, 3)
		}
		b, _ := json.Marshal(s)
		return string(b), 0
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		st.Nodes = append(st.Nodes, NodeState{Name: n})
		if err := os.MkdirAll(nodeDir(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
		startAgent(t, nodeDir(dir, n)+"/"+fAgent, &fakeAgent{out: func(argv []string) (string, int) {
			if !cmp.Equal(argv, []string{"/usr/bin/shoal", "status", "--json"}) {
				t.Errorf("%s ran %q, want shoal status --json", n, argv)
			}
			return status(n)
		}})
	}
	c := &Cluster{st: st, opts: Options{}.withDefaults()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var progress []string
	f, err := c.WaitFormed(ctx, nil, 3, func(s string) { progress = append(progress, s) })
	if err != nil {
		t.Fatal(err)
	}
	if f.ClusterID != "c0ffee" || len(f.Status) != 3 {
		t.Errorf("formed %q with %d statuses, want c0ffee with 3", f.ClusterID, len(f.Status))
	}
	for n, s := range f.Status {
		if aliveCount(s) != 3 {
			t.Errorf("WaitFormed returned while %s saw %d alive", n, aliveCount(s))
		}
	}
	if len(progress) < 3 || !strings.Contains(progress[0], "node3: shoal status exited 1") {
		t.Errorf("progress %q: want every change, starting with node3 without a peer", progress)
	}
	if b, err := os.ReadFile(apiTargetPath(dir)); err != nil || strings.TrimSpace(string(b)) != "[fd53::1]:7443" {
		t.Errorf("API forward target %q (%v), want node1's API", b, err)
	}
}
