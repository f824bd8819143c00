//go:build qa

package qa_test

import (
	"encoding/json"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/netd"
	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/qa"
)

// Issue 4's scenarios on real shoal daemons (netd + peer) in network
// namespaces: nobody types anything, and the cluster forms.

func needsRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("qa scenarios need root (network namespaces)")
	}
}

func selfID(t *testing.T, c *qa.Cluster, node string) string {
	t.Helper()
	st, err := c.PeerStatus(node)
	if err != nil {
		t.Fatal(err)
	}
	return st.Self.ID
}

// TestFastMembershipFormJoinFailPartition: three fresh nodes form one
// cluster with no input; a fourth plugged in later joins by itself (auto);
// a killed node is marked failed and comes back alive after restart; a
// partition heals into one cluster.
func TestFastMembershipFormJoinFailPartition(t *testing.T) {
	needsRoot(t)
	c := qa.NewCluster(t, qa.Options{Nodes: 3, Disks: -1})
	c.WaitFor("3 fresh nodes form one cluster with no input", 2*time.Minute, c.OneCluster("node1", "node2", "node3"))

	checkNetd(t, c, "node1", "node2")
	checkStatusAddr(t, c, "node1", "node2")

	n4 := c.AddNode()
	c.WaitFor(n4+" plugged in joins by itself (policy auto)", 2*time.Minute, c.OneCluster("node1", "node2", "node3", n4))

	id2 := selfID(t, c, "node2")
	c.Kill("node2")
	c.WaitFor("killed node2 is marked failed on node1", time.Minute, c.MemberState("node1", id2, client.StateFailed))
	c.Restart("node2")
	c.WaitFor("restarted node2 is alive again everywhere, same identity", time.Minute, c.OneCluster("node1", "node2", "node3", n4))
	if got := selfID(t, c, "node2"); got != id2 {
		t.Errorf("node2 came back as %s, want its old identity %s", got, id2)
	}

	id1 := selfID(t, c, "node1")
	c.Partition([]string{"node1"}, []string{"node2", "node3", n4})
	c.WaitFor("node1 cut off by a partition is seen failed by the others", time.Minute,
		c.MemberState("node2", id1, client.StateFailed, client.StateSuspect))
	c.HealPartition()
	c.WaitFor("the partition heals into one cluster", 2*time.Minute, c.OneCluster("node1", "node2", "node3", n4))
}

// TestFastMembershipAdmission: under policy approve a new node waits as
// pending (listed with its hardware fingerprint) until approved; a removed
// node is refused when it comes back, with a log line on both sides; a
// node that formed its own cluster stays foreign.
func TestFastMembershipAdmission(t *testing.T) {
	needsRoot(t)
	c := qa.NewCluster(t, qa.Options{Nodes: 3, Disks: -1})
	c.WaitFor("3 fresh nodes form one cluster", 2*time.Minute, c.OneCluster("node1", "node2", "node3"))
	if out, err := c.Shoal("node1", "cluster", "policy", "approve"); err != nil {
		t.Fatalf("shoal cluster policy approve: %v: %s", err, out)
	}

	n4 := c.AddNode()
	var id4 string
	c.WaitFor(n4+" waits as pending under policy approve", time.Minute, func() (bool, string) {
		id4 = selfID(t, c, n4)
		st, err := c.PeerStatus("node2")
		if err != nil {
			return false, err.Error()
		}
		for _, p := range st.Pending {
			if p.ID == id4 {
				if p.Hardware == "" {
					return false, "pending node listed without its hardware fingerprint"
				}
				return true, ""
			}
		}
		return false, "node2 does not list " + id4 + " as pending"
	})
	if st, _ := c.PeerStatus(n4); st.ClusterID != "" {
		t.Fatalf("%s is in cluster %s before anyone approved it", n4, st.ClusterID)
	}
	if out, err := c.Shoal("node2", "node", "approve", id4); err != nil {
		t.Fatalf("shoal node approve: %v: %s", err, out)
	}
	c.WaitFor("approved "+n4+" becomes a member", time.Minute, c.OneCluster("node1", "node2", "node3", n4))

	// Removed: kill it, forget it, restart it: refused on both sides.
	c.Kill(n4)
	c.WaitFor(n4+" is failed on node1", time.Minute, c.MemberState("node1", id4, client.StateFailed))
	if out, err := c.Shoal("node1", "node", "remove", id4); err != nil {
		t.Fatalf("shoal node remove: %v: %s", err, out)
	}
	c.Restart(n4)
	c.WaitFor("the removed node is refused, with a clear log line on both sides", time.Minute, func() (bool, string) {
		member := false
		for _, n := range []string{"node1", "node2", "node3"} {
			for _, line := range strings.Split(readFile(c.LogPath(n, "peer")), "\n") {
				if strings.Contains(line, "refused") && strings.Contains(line, id4) && strings.Contains(line, "removed") {
					member = true
				}
			}
		}
		if !member {
			return false, "no member logged refusing the removed node " + id4
		}
		if !strings.Contains(readFile(c.LogPath(n4, "peer")), "this node was removed from its cluster by an operator") {
			return false, "the removed node's own log does not say it was removed"
		}
		return true, ""
	})
	c.WaitFor("the removed node stops gossiping (phase removed)", 30*time.Second, func() (bool, string) {
		st, err := c.PeerStatus(n4)
		if err != nil {
			return false, err.Error()
		}
		return st.Phase == client.PhaseRemoved, n4 + " is in phase " + st.Phase
	})
	undecryptable := func() int {
		return strings.Count(readFile(c.LogPath("node1", "peer")), "no installed keys could decrypt")
	}
	before := undecryptable()
	time.Sleep(3 * time.Second) // real processes: watch the log for a while
	if after := undecryptable(); after > before {
		t.Errorf("node1 still receives undecryptable gossip from the removed node (%d new lines in 3 s)", after-before)
	}
	c.WaitFor("the members stay three, without the removed node", 30*time.Second, c.OneCluster("node1", "node2", "node3"))
	st, _ := c.PeerStatus("node1")
	if slices.ContainsFunc(st.Members, func(m client.Member) bool { return m.ID == id4 && m.State == client.StateAlive }) {
		t.Errorf("removed node %s is alive in node1's view", id4)
	}
}

// checkNetd: `shoal net status --json` on node shows the link, a bound
// lease and the unique-local backplane address, which other reaches and
// which peer gossips on.
func checkNetd(t *testing.T, c *qa.Cluster, node, other string) {
	t.Helper()
	out, err := c.Shoal(node, "net", "status", "--json")
	if err != nil {
		t.Fatalf("shoal net status on %s: %v: %s", node, err, out)
	}
	var ns netd.Status
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		t.Fatalf("shoal net status --json: %v: %q", err, out)
	}
	if !ns.Ready || ns.LAN == "" || len(ns.Links) == 0 {
		t.Errorf("%s: netd not ready or no LAN link: %s", node, out)
	}
	if !slices.ContainsFunc(ns.DHCP, func(d netd.DHCPStatus) bool { return d.State == "bound" && d.Address != "" }) {
		t.Errorf("%s: no bound DHCP lease (dnsmasq serves the bridge): %+v", node, ns.DHCP)
	}
	addr, _, _ := strings.Cut(ns.Backplane.Address, "/")
	if !strings.HasPrefix(addr, "fd53:686f:616c:") {
		t.Fatalf("%s: backplane address %q is not in fd53:686f:616c::/64", node, ns.Backplane.Address)
	}
	if out, err := c.Exec(other, "ping", "-6", "-c1", "-W2", addr); err != nil {
		t.Errorf("%s cannot reach %s's backplane address %s: %v: %s", other, node, addr, err, out)
	}
	st, err := c.PeerStatus(node)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Self.Gossip, addr) {
		t.Errorf("%s gossips on %s, not on its backplane address %s", node, st.Self.Gossip, addr)
	}
	t.Logf("%s: lan %s, lease %v, backplane %s", node, ns.LAN, ns.DHCP[0].Address, addr)
}

// checkStatusAddr: `shoal status --addr HOST` on node asks other's node
// API (over mutual TLS, default port) and shows other's view.
func checkStatusAddr(t *testing.T, c *qa.Cluster, node, other string) {
	t.Helper()
	want, err := c.PeerStatus(other)
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(want.Self.API)
	if err != nil {
		t.Fatalf("%s: node API address %q: %v", other, want.Self.API, err)
	}
	out, err := c.Shoal(node, "status", "--json", "--addr", host)
	if err != nil {
		t.Fatalf("shoal status --addr %s on %s: %v: %s", host, node, err, out)
	}
	var got client.Status
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("shoal status --json --addr: %v: %q", err, out)
	}
	if got.Self.ID != want.Self.ID || got.ClusterID != want.ClusterID || len(got.Members) != len(want.Members) {
		t.Errorf("shoal status --addr %s on %s: self %s cluster %s, %d members; want %s's view: self %s cluster %s, %d members",
			host, node, got.Self.ID, got.ClusterID, len(got.Members), other, want.Self.ID, want.ClusterID, len(want.Members))
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
