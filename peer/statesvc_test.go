package peer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/peer"
	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/peertest"
)

func stateOpts(c *peer.Config) {
	c.State.NoSync = true
	c.State.PullInterval = 200 * time.Millisecond
}

// digests returns each running node's state digest.
func digests(t *testing.T, nodes ...*peertest.Node) []string {
	t.Helper()
	var out []string
	for _, nd := range nodes {
		d, err := nd.Client.DigestState(t.Context())
		if err != nil {
			t.Fatalf("digest: %v", err)
		}
		out = append(out, d.Digest)
	}
	return out
}

func allEqual(s []string) bool {
	for _, x := range s {
		if x != s[0] {
			return false
		}
	}
	return true
}

func TestStatePutVisibleEverywhere(t *testing.T) {
	c := peertest.NewCluster(t, 3, stateOpts)
	ctx := t.Context()
	n0, n2 := c.Nodes[0].Client, c.Nodes[2].Client
	w, err := n0.PutState(ctx, "vm/web1", map[string]string{"cpus": "2", "memory": "4096"})
	if err != nil {
		t.Fatal(err)
	}
	if w.Origin == "" || w.Seq == 0 {
		t.Errorf("put returned %+v, want origin and seq", w)
	}
	var got client.StateRecord
	c.WaitFor("vm/web1 on node 2", func() bool {
		got, err = n2.GetState(ctx, "vm/web1")
		return err == nil
	})
	want := client.StateRecord{Key: "vm/web1", Fields: map[string]client.StateField{
		"cpus": {Kind: client.KindRegister, Value: "2"}, "memory": {Kind: client.KindRegister, Value: "4096"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("record on node 2 (-want +got):\n%s", diff)
	}
	// field-level: a write of one field on node 2 keeps the other
	if _, err := n2.PutState(ctx, "vm/web1", map[string]string{"cpus": "4"}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("cpus=4 on node 0", func() bool {
		r, err := n0.GetState(ctx, "vm/web1")
		return err == nil && r.Fields["cpus"].Value == "4" && r.Fields["memory"].Value == "4096"
	})
	if _, err := n0.DeleteState(ctx, "vm/web1"); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("vm/web1 deleted on node 2", func() bool {
		_, err := n2.GetState(ctx, "vm/web1")
		return errors.Is(err, client.ErrStateNotFound)
	})
	c.WaitFor("equal digests", func() bool { return allEqual(digests(t, c.Nodes...)) })

	// Bad input gets a clear error.
	if _, err := n0.PutState(ctx, "no slash", map[string]string{"a": "b"}); err == nil {
		t.Error("put of a bad key succeeded")
	}
	if _, err := n0.PutState(ctx, "vm/x", nil); err == nil {
		t.Error("put without fields succeeded")
	}
	// Membership events became cluster event records.
	l, err := n0.ListState(ctx, "event/")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, r := range l.Records {
		kinds[r.Fields["kind"].Value] = true
	}
	if !kinds["member.join"] && !kinds["member.admit"] && !kinds["member.form"] {
		t.Errorf("no membership event records; kinds seen: %v", kinds)
	}
}

func TestStateWatchResume(t *testing.T) {
	c := peertest.NewCluster(t, 2, stateOpts)
	ctx := t.Context()
	n0, n1 := c.Nodes[0].Client, c.Nodes[1].Client
	l, err := n1.ListState(ctx, "vm/")
	if err != nil {
		t.Fatal(err)
	}
	const total = 30
	go func() {
		for i := range total {
			n0.PutState(ctx, fmt.Sprintf("vm/w%02d", i), map[string]string{"i": fmt.Sprint(i)})
			n0.PutState(ctx, fmt.Sprintf("disk/d%02d", i), map[string]string{"i": fmt.Sprint(i)}) // not watched
		}
	}()
	// Follow in small long-polls, as a client reconnecting after each
	// batch would: every event once, in order.
	var keys []string
	rev := l.Rev
	deadline := time.Now().Add(peertest.WaitTimeout)
	for len(keys) < total && time.Now().Before(deadline) {
		b, err := n1.WatchStateOnce(ctx, "vm/", rev, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range b.Events {
			if ev.Rev <= rev {
				t.Fatalf("event %d after resuming from %d", ev.Rev, rev)
			}
			if !strings.HasPrefix(ev.Key, "vm/") {
				t.Fatalf("event for %q under vm/", ev.Key)
			}
			keys = append(keys, ev.Key)
			rev = ev.Rev
		}
		if b.Rev < rev {
			t.Fatalf("batch rev %d below its last event %d", b.Rev, rev)
		}
		rev = b.Rev
	}
	var want []string
	for i := range total {
		want = append(want, fmt.Sprintf("vm/w%02d", i))
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("watched keys (-want +got):\n%s", diff)
	}

	// WatchState (the looping client) stops with fn's error.
	stop := errors.New("stop")
	n := 0
	err = n1.WatchState(ctx, "vm/", l.Rev, func(client.StateEvent) error {
		if n++; n == total {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != total {
		t.Errorf("WatchState = %v after %d events, want stop after %d", err, n, total)
	}

	// A revision the node does not have: 410, ErrStateResync.
	_, err = n1.WatchStateOnce(ctx, "vm/", rev+1_000_000, time.Millisecond)
	if !errors.Is(err, client.ErrStateResync) {
		t.Errorf("watch from a future revision = %v, want ErrStateResync", err)
	}
}

func TestStatePartitionConverges(t *testing.T) {
	c := peertest.NewCluster(t, 3, stateOpts)
	ctx := t.Context()
	c.Partition([]int{0}, []int{1, 2})
	c.WaitFor("node 0 sees the others failed", func() bool {
		return peertest.Count(c.Nodes[0].Peer.Status(), client.StateFailed) == 2
	})
	for i := range 20 {
		if _, err := c.Nodes[0].Client.PutState(ctx, fmt.Sprintf("vm/a%d", i), map[string]string{"side": "a"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Nodes[2].Client.PutState(ctx, fmt.Sprintf("vm/b%d", i), map[string]string{"side": "b"}); err != nil {
			t.Fatal(err)
		}
	}
	// both sides write the same field of one record: one winner everywhere
	c.Nodes[0].Client.PutState(ctx, "setting/motd", map[string]string{"value": "from a"})
	c.Nodes[1].Client.PutState(ctx, "setting/motd", map[string]string{"value": "from b"})
	c.Heal()
	c.WaitConverged(3)
	c.WaitFor("equal digests after heal", func() bool { return allEqual(digests(t, c.Nodes...)) })
	for _, nd := range c.Nodes {
		l, err := nd.Client.ListState(ctx, "vm/")
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Records) != 40 {
			t.Errorf("node %s has %d vm records, want 40", nd.ID(), len(l.Records))
		}
	}
}

func TestStateRestartKeepsAndCatchesUp(t *testing.T) {
	c := peertest.NewCluster(t, 3, stateOpts)
	ctx := t.Context()
	c.Nodes[2].Stop()
	for i := range 200 {
		if _, err := c.Nodes[0].Client.PutState(ctx, fmt.Sprintf("vm/r%03d", i), map[string]string{"i": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	c.Restart(c.Nodes[2])
	c.WaitConverged(3)
	c.WaitFor("node 2 caught up", func() bool { return allEqual(digests(t, c.Nodes...)) })
	l, err := c.Nodes[2].Client.ListState(ctx, "vm/")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Records) != 200 {
		t.Errorf("node 2 has %d records after catching up, want 200", len(l.Records))
	}
}

func TestStateDigestSingleNode(t *testing.T) {
	c := peertest.NewCluster(t, 1, stateOpts)
	cl := c.Nodes[0].Client
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := cl.PutState(ctx, "setting/x", map[string]string{"value": "1"}); err != nil {
		t.Fatal(err)
	}
	d, err := cl.DigestState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Digest) != 64 || d.Records < 1 || len(d.VV) == 0 {
		t.Errorf("digest = %+v", d)
	}
}

func TestStateDroppedOnLeave(t *testing.T) {
	c := peertest.NewCluster(t, 2, stateOpts)
	ctx := t.Context()
	if _, err := c.Nodes[0].Client.PutState(ctx, "vm/old", map[string]string{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("vm/old on node 1", func() bool {
		_, err := c.Nodes[1].Client.GetState(ctx, "vm/old")
		return err == nil
	})
	if err := c.Nodes[1].Client.LeaveCluster(ctx); err != nil {
		t.Fatal(err)
	}
	// The node left: the old cluster's records must not travel into the
	// next cluster it joins or creates.
	if _, err := c.Nodes[1].Client.GetState(ctx, "vm/old"); !errors.Is(err, client.ErrStateNotFound) {
		t.Errorf("get vm/old after leave = %v, want ErrStateNotFound", err)
	}
	// It still reads and writes locally.
	if _, err := c.Nodes[1].Client.PutState(ctx, "setting/x", map[string]string{"value": "1"}); err != nil {
		t.Errorf("put after leave: %v", err)
	}
}

// A node that just joined has the cluster state at once (its first pull
// goes out when its Services start, as soon as it is a member) and gets a
// write made right after it joined, with periodic pulls out of the way
// (one an hour): nothing waits for a control tick or a pull round.
func TestStateRightAfterJoin(t *testing.T) {
	c := peertest.NewCluster(t, 3, func(cfg *peer.Config) {
		cfg.State.NoSync = true
		cfg.State.PullInterval = time.Hour
	})
	ctx := t.Context()
	n0 := c.Nodes[0].Client
	if _, err := n0.PutState(ctx, "vm/before", map[string]string{"x": "1"}); err != nil {
		t.Fatal(err)
	}
	nd := c.AddNode()
	start := time.Now()
	c.WaitFor("the new node is a member", func() bool { return nd.Peer.Phase() == client.PhaseMember })
	c.WaitFor("vm/before on the new node", func() bool {
		_, err := nd.Client.GetState(ctx, "vm/before")
		return err == nil
	})
	t.Logf("state loaded %s after the new node started", time.Since(start).Round(time.Millisecond))
	c.WaitFor("node 0 sees the new node alive", func() bool {
		return peertest.StateOf(c.Nodes[0].Peer.Status(), nd.ID()) == client.StateAlive
	})
	start = time.Now()
	if _, err := n0.PutState(ctx, "vm/after", map[string]string{"x": "2"}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("vm/after on the new node", func() bool {
		r, err := nd.Client.GetState(ctx, "vm/after")
		return err == nil && r.Fields["x"].Value == "2"
	})
	t.Logf("a write right after the join reached the new node in %s", time.Since(start).Round(time.Millisecond))
}
