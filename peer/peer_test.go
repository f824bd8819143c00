package peer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer"
	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/peertest"
)

func TestFormThenAutoJoin(t *testing.T) {
	c := peertest.NewCluster(t, 3)
	id := c.Nodes[0].Status().ClusterID
	for i, nd := range c.Nodes {
		st := nd.Status()
		if st.ClusterID != id || st.Phase != client.PhaseMember {
			t.Errorf("node %d: cluster %q phase %q, want %q member", i, st.ClusterID, st.Phase, id)
		}
	}
	c.AddNode()
	c.WaitConverged(4)
	if got := c.Nodes[3].Status().ClusterID; got != id {
		t.Errorf("4th node joined cluster %q, want %q", got, id)
	}
}

func TestApprovePolicy(t *testing.T) {
	c := peertest.NewCluster(t, 3, peertest.WithPolicy(client.PolicyApprove))
	nd := c.AddNode()
	c.WaitFor("every member lists the 4th node as pending", func() bool {
		for _, m := range c.Nodes[:3] {
			if peertest.StateOf(m.Status(), nd.ID()) != client.StatePending {
				return false
			}
		}
		return true
	})
	ms, err := c.Nodes[1].Client.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == nd.ID() && m.Hardware != nd.Config.Hardware {
			t.Errorf("pending node shows hardware %q, want %q", m.Hardware, nd.Config.Hardware)
		}
	}
	if st := nd.Status(); st.Phase != client.PhaseJoining || st.ClusterID != "" {
		t.Fatalf("pending node: phase %q cluster %q, want joining and no cluster", st.Phase, st.ClusterID)
	}
	// Approve from every member: the pending request sits at one of them;
	// the others forward.
	if err := c.Nodes[2].Client.Approve(context.Background(), nd.ID(), ""); err != nil {
		t.Fatalf("approve: %v", err)
	}
	c.WaitConverged(4)
}

func TestCodePolicy(t *testing.T) {
	c := peertest.NewCluster(t, 3, peertest.WithPolicy(client.PolicyCode))
	nd := c.AddNode()
	var code string
	c.WaitFor("4th node shows its admission code", func() bool {
		code = nd.Status().Code
		return code != "" && nd.Status().Phase == client.PhaseJoining
	})
	c.WaitFor("4th node pending", func() bool {
		for _, m := range c.Nodes[:3] {
			if peertest.StateOf(m.Status(), nd.ID()) == client.StatePending {
				return true
			}
		}
		return false
	})
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	err := c.Nodes[0].Client.Approve(context.Background(), nd.ID(), wrong)
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Fatalf("approve with wrong code: err %v, want 403", err)
	}
	if err := c.Nodes[1].Client.Approve(context.Background(), nd.ID(), code); err != nil {
		t.Fatalf("approve with the right code: %v", err)
	}
	c.WaitConverged(4)
}

func TestFailedNodeRecovers(t *testing.T) {
	c := peertest.NewCluster(t, 3)
	victim := c.Nodes[2]
	id := victim.ID()
	victim.Stop()
	c.WaitFor("survivors see the killed node failed", func() bool {
		return peertest.StateOf(c.Nodes[0].Status(), id) == client.StateFailed &&
			peertest.StateOf(c.Nodes[1].Status(), id) == client.StateFailed
	})
	c.Restart(victim)
	if victim.ID() != id {
		t.Fatalf("node ID changed across restart: %s -> %s", id, victim.ID())
	}
	c.WaitConverged(3)
	evs, err := c.Nodes[0].Client.Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sawFail, sawRecover bool
	for _, e := range evs {
		if e.NodeID == id {
			sawFail = sawFail || e.Type == "fail"
			sawRecover = sawRecover || e.Type == "recover"
		}
	}
	if !sawFail || !sawRecover {
		t.Errorf("events of node %s: fail %v recover %v, want both; events: %+v", id, sawFail, sawRecover, evs)
	}
}

func TestRemovedNodeIsRefused(t *testing.T) {
	c := peertest.NewCluster(t, 3)
	victim := c.Nodes[2]
	id := victim.ID()
	if err := c.Nodes[0].Client.Remove(context.Background(), id); err == nil {
		t.Fatal("removing an alive node succeeded, want refusal")
	}
	victim.Stop()
	c.WaitFor("node failed", func() bool { return peertest.StateOf(c.Nodes[0].Status(), id) == client.StateFailed })
	if err := c.Nodes[0].Client.Remove(context.Background(), id); err != nil {
		t.Fatalf("remove: %v", err)
	}
	c.WaitFor("node gone from every member", func() bool {
		return peertest.StateOf(c.Nodes[0].Status(), id) == "" && peertest.StateOf(c.Nodes[1].Status(), id) == ""
	})
	// It comes back with its old certificate and key: refused.
	c.Restart(victim)
	c.WaitFor("removed node refused by a member", func() bool {
		evs, _ := c.Nodes[0].Client.Events(context.Background())
		evs1, _ := c.Nodes[1].Client.Events(context.Background())
		for _, e := range append(evs, evs1...) {
			if e.Type == "refuse" && e.NodeID == id {
				return true
			}
		}
		return false
	})
	for i, nd := range c.Nodes[:2] {
		if s := peertest.StateOf(nd.Status(), id); s == client.StateAlive {
			t.Errorf("node %d sees the removed node alive", i)
		}
	}
}

func TestForeignNodeRefused(t *testing.T) {
	a := peertest.NewCluster(t, 3)
	b := peertest.NewCluster(t, 1)
	foreign := b.Nodes[0]
	if foreign.Status().ClusterID == a.Nodes[0].Status().ClusterID {
		t.Fatal("two clusters share an ID")
	}
	// Gossip: a different key and cluster.
	if err := foreign.Peer.JoinGossip([]string{a.Nodes[0].Peer.GossipAddr()}); err == nil {
		t.Error("foreign node joined gossip of another cluster")
	}
	// Node API: certificate of another CA.
	err := peer.CallMember(foreign.Peer, context.Background(), "GET", a.Nodes[0].Peer.APIAddr(), "/v1/keyring", nil, nil)
	if err == nil {
		t.Error("foreign node read the keyring of another cluster")
	}
	// Explicit join while in a cluster.
	if _, err := foreign.Client.JoinCluster(context.Background(), a.Nodes[0].Peer.APIAddr()); err == nil {
		t.Error("a member of one cluster joined another without leaving")
	}
	a.WaitConverged(3)
	if got := peertest.Count(a.Nodes[0].Status(), client.StateAlive); got != 3 {
		t.Errorf("cluster a has %d alive members, want 3", got)
	}
}

func TestTwoClustersNeverMerge(t *testing.T) {
	c := peertest.NewUnformed(t, 2, peertest.WithQuorum(0))
	ctx := context.Background()
	a, err := c.Nodes[0].Client.CreateCluster(ctx, client.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Nodes[1].Client.CreateCluster(ctx, client.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitFor("each cluster lists the other as foreign", func() bool {
		for _, f := range c.Nodes[0].Status().Foreign {
			if f.ClusterID == b.ClusterID {
				return true
			}
		}
		return false
	})
	// A new node plugged in hears both: it joins neither by itself.
	c.AddNode()
	c.WaitFor("new node hears both clusters", func() bool { return len(c.Nodes[2].Status().Foreign) == 2 })
	for range 20 { // a few control-loop ticks
		c.WaitFor("a status", func() bool { return true })
		if st := c.Nodes[2].Status(); st.Phase != client.PhaseUnclaimed {
			t.Fatalf("node hearing two clusters: phase %q, want unclaimed", st.Phase)
		}
		time.Sleep(peertest.Timers().Tick)
	}
	// An operator picks one.
	if _, err := c.Nodes[2].Client.JoinCluster(ctx, c.Nodes[0].Peer.APIAddr()); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("explicit join into a", func() bool {
		st := c.Nodes[2].Status()
		return st.ClusterID == a.ClusterID && peertest.Count(st, client.StateAlive) == 2
	})
}

func TestLeaveThenExplicitJoin(t *testing.T) {
	c := peertest.NewCluster(t, 3)
	ctx := context.Background()
	nd := c.Nodes[1]
	if err := nd.Client.LeaveCluster(ctx); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("others see it left", func() bool { return peertest.StateOf(c.Nodes[0].Status(), nd.ID()) == client.StateLeft })
	if st := nd.Status(); st.Phase != client.PhaseUnclaimed || st.ClusterID != "" {
		t.Fatalf("after leave: phase %q cluster %q", st.Phase, st.ClusterID)
	}
	if _, err := os.Stat(filepath.Join(nd.Config.DataDir, "cluster.json")); err == nil {
		t.Error("cluster.json still there after leave")
	}
	if _, err := nd.Client.JoinCluster(ctx, "127.0.0.1:1"); err == nil {
		t.Error("join through an address where no node listens succeeded")
	}
	if st := nd.Status(); st.Phase != client.PhaseUnclaimed {
		t.Errorf("after a failed join: phase %q, want unclaimed", st.Phase)
	}
	if _, err := nd.Client.JoinCluster(ctx, c.Nodes[0].Peer.APIAddr()); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged(3)
}

func TestRotateKey(t *testing.T) {
	c := peertest.NewCluster(t, 3)
	before, _ := os.ReadFile(filepath.Join(c.Nodes[0].Config.DataDir, "keyring.json"))
	if err := c.Nodes[0].Client.RotateKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := make([]string, 3)
	for i, nd := range c.Nodes {
		b, _ := os.ReadFile(filepath.Join(nd.Config.DataDir, "keyring.json"))
		after[i] = string(b)
	}
	if after[0] == string(before) || after[0] != after[1] || after[1] != after[2] {
		t.Errorf("keyrings after rotation differ or did not change:\nbefore %s\nafter %q", before, after)
	}
	c.WaitConverged(3)
	c.AddNode()
	c.WaitConverged(4)
}

func TestMissedRotationRecovers(t *testing.T) {
	c := peertest.NewCluster(t, 3)
	away := c.Nodes[2]
	away.Stop()
	c.WaitFor("node failed", func() bool { return peertest.StateOf(c.Nodes[0].Status(), away.ID()) == client.StateFailed })
	if err := c.Nodes[0].Client.RotateKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Restart(away)
	c.WaitConverged(3)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*peer.Config)
		ok   bool
	}{
		{"default", func(*peer.Config) {}, true},
		{"no data dir", func(c *peer.Config) { c.DataDir = "" }, false},
		{"bad bind", func(c *peer.Config) { c.Bind = "nope" }, false},
		{"link-local bind", func(c *peer.Config) { c.Bind = "fe80::1" }, false},
		{"bad policy", func(c *peer.Config) { c.Policy = "maybe" }, false},
		{"bad port", func(c *peer.Config) { c.APIPort = 70000 }, false},
		{"zero tick", func(c *peer.Config) { c.Timers.Tick = 0 }, false},
		{"small-cluster probe timeout not below its interval", func(c *peer.Config) { c.Timers.SmallProbeTimeout = c.Timers.SmallProbeInterval }, false},
		{"no small-cluster probe timers", func(c *peer.Config) {
			c.Timers.SmallCluster, c.Timers.SmallProbeInterval, c.Timers.SmallProbeTimeout = 0, 0, 0
		}, true},
		{"negative heal grace", func(c *peer.Config) { c.Timers.HealGrace = -time.Second }, false},
		{"large cluster without a minimum multiplier", func(c *peer.Config) { c.Timers.MinRetransmitMult = 0 }, false},
		{"no large-cluster multiplier", func(c *peer.Config) { c.Timers.LargeCluster, c.Timers.MinRetransmitMult = 0, 0 }, true},
		{"negative retransmit multiplier", func(c *peer.Config) { c.Timers.RetransmitMult = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := peer.DefaultConfig()
			tt.mod(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestPartitionHeals(t *testing.T) {
	c := peertest.NewCluster(t, 4)
	id := c.Nodes[0].Status().ClusterID
	c.Partition([]int{0, 1}, []int{2, 3})
	c.WaitFor("each side sees the other failed", func() bool {
		return peertest.StateOf(c.Nodes[0].Status(), c.Nodes[3].ID()) == client.StateFailed &&
			peertest.StateOf(c.Nodes[3].Status(), c.Nodes[0].ID()) == client.StateFailed
	})
	c.Heal()
	c.WaitConverged(4)
	for i, nd := range c.Nodes {
		if got := nd.Status().ClusterID; got != id {
			t.Errorf("node %d in cluster %q after healing, want %q", i, got, id)
		}
	}
}

func TestRemovePendingNode(t *testing.T) {
	c := peertest.NewCluster(t, 3, peertest.WithPolicy(client.PolicyApprove))
	nd := c.AddNode()
	c.WaitFor("every member lists the new node as pending", func() bool {
		for _, m := range c.Nodes[:3] {
			if peertest.StateOf(m.Status(), nd.ID()) != client.StatePending {
				return false
			}
		}
		return true
	})
	if err := c.Nodes[2].Client.Remove(context.Background(), nd.ID()); err != nil {
		t.Fatalf("remove pending node: %v", err)
	}
	c.WaitFor("the denied node is refused and no longer pending", func() bool {
		evs, _ := nd.Client.Events(context.Background())
		refused := false
		for _, e := range evs {
			refused = refused || e.Type == "refuse"
		}
		for _, m := range c.Nodes[:3] {
			if peertest.StateOf(m.Status(), nd.ID()) != "" {
				return false
			}
		}
		return refused
	})
	if st := nd.Status(); st.ClusterID != "" {
		t.Errorf("denied node is in cluster %s", st.ClusterID)
	}
}
