//go:build qa

package qa_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/qa"
)

// Issue 5's scenarios on real shoal daemons: the cluster state store
// replicated over the node channel, driven with `shoal state …` inside
// the nodes (and, for bulk writes, peer/client on a node's socket).

// stateCluster brings up n nodes and waits until they formed one cluster
// and every node sees every other alive.
func stateCluster(t *testing.T, n int) *qa.Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("qa scenarios need root (network namespaces)")
	}
	c := qa.NewCluster(t, qa.Options{Nodes: n, Disks: -1})
	stateWait(t, "nodes form one cluster", 3*time.Minute, func() (bool, string) { return stateFormed(c, c.Nodes()...) })
	return c
}

// stateWait polls cond every 50 ms until it holds and returns how long
// that took; after timeout it fails the test. Durations are printed,
// never asserted.
func stateWait(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, why := cond()
		if ok {
			d := time.Since(start)
			t.Logf("%s: after %v", what, d.Round(time.Millisecond))
			return d
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %v: %s", what, timeout, why)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func stateStatus(c *qa.Cluster, node string) (client.Status, error) {
	out, err := c.Exec(node, "shoal", "status", "--json")
	if err != nil {
		return client.Status{}, err
	}
	var st client.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return client.Status{}, fmt.Errorf("shoal status --json on %s: %w", node, err)
	}
	return st, nil
}

// stateFormed reports whether nodes are in one cluster, each seeing all
// of them alive.
func stateFormed(c *qa.Cluster, nodes ...string) (bool, string) {
	var cluster string
	for _, n := range nodes {
		st, err := stateStatus(c, n)
		if err != nil {
			return false, err.Error()
		}
		if st.ClusterID == "" || (cluster != "" && st.ClusterID != cluster) {
			return false, fmt.Sprintf("%s is in cluster %q (%s)", n, st.ClusterID, st.Phase)
		}
		cluster = st.ClusterID
		alive := 0
		for _, m := range st.Members {
			if m.State == client.StateAlive {
				alive++
			}
		}
		if alive != len(nodes) {
			return false, fmt.Sprintf("%s sees %d alive members, want %d", n, alive, len(nodes))
		}
	}
	return true, ""
}

func stateDigest(c *qa.Cluster, node string) (client.StateDigest, error) {
	out, err := c.Exec(node, "shoal", "state", "digest", "--json")
	if err != nil {
		return client.StateDigest{}, err
	}
	var d client.StateDigest
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		return d, fmt.Errorf("shoal state digest --json on %s: %w: %q", node, err, out)
	}
	return d, nil
}

// digestsEqual is a wait condition: `shoal state digest` is the same on
// every node (and, when records > 0, they hold that many records).
func digestsEqual(c *qa.Cluster, records int, nodes ...string) func() (bool, string) {
	return func() (bool, string) {
		var first client.StateDigest
		for i, n := range nodes {
			d, err := stateDigest(c, n)
			if err != nil {
				return false, err.Error()
			}
			if records > 0 && d.Records < records {
				return false, fmt.Sprintf("%s has %d records, want at least %d", n, d.Records, records)
			}
			if i == 0 {
				first = d
			} else if d.Digest != first.Digest {
				return false, fmt.Sprintf("%s digest %s (%d records) != %s digest %s (%d records)", n, d.Digest[:12], d.Records, nodes[0], first.Digest[:12], first.Records)
			}
		}
		return true, ""
	}
}

func statePut(t *testing.T, c *qa.Cluster, node, key string, fields ...string) {
	t.Helper()
	if out, err := c.Exec(node, append([]string{"shoal", "state", "put", key}, fields...)...); err != nil {
		t.Fatalf("state put %s on %s: %v: %s", key, node, err, out)
	}
}

// nodeClient is a peer/client on node's local API socket, reached from
// the host (the socket file lives in the node's run dir).
func nodeClient(t *testing.T, c *qa.Cluster, node string) *client.Client {
	t.Helper()
	sock := filepath.Join(c.NodeDir(node), "run", "peer.sock")
	if len(sock) > 100 { // UNIX socket paths are short: go through a link
		link := filepath.Join(os.TempDir(), fmt.Sprintf("shq-%d-%s.sock", os.Getpid(), node))
		os.Remove(link)
		if err := os.Symlink(sock, link); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(link) })
		sock = link
	}
	return client.New(sock)
}

// bulkPut writes n records prefix<i> on node, 8 at a time.
func bulkPut(t *testing.T, c *qa.Cluster, node, prefix string, n int) time.Duration {
	t.Helper()
	cl := nodeClient(t, c, node)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				if _, err := cl.PutState(t.Context(), fmt.Sprintf("%s%06d", prefix, i), map[string]string{"i": fmt.Sprint(i), "by": node}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case err := <-errs:
				t.Fatalf("bulk put on %s: %v", node, err)
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("bulk put on %s: %v", node, err)
	default:
	}
	d := time.Since(start)
	t.Logf("wrote %d records on %s in %v (%.0f/s)", n, node, d.Round(time.Millisecond), float64(n)/d.Seconds())
	return d
}

// TestFastStatePutPartitionHeal: a put on node1 becomes visible on node3;
// after `partition node1 / node2,node3`, writes on both sides (also to the
// same field of one record) and heal, `shoal state digest` is equal on
// all nodes.
func TestFastStatePutPartitionHeal(t *testing.T) {
	c := stateCluster(t, 3)
	start := time.Now()
	statePut(t, c, "node1", "vm/qa1", "owner=node1", "cpus=2")
	stateWait(t, "put on node1 visible on node3 (including the CLI round trips)", time.Minute, func() (bool, string) {
		out, err := c.Exec("node3", "shoal", "state", "get", "vm/qa1")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(out, "owner=node1"), out
	})
	t.Logf("put→visible on node3: %v from before the put command started", time.Since(start).Round(time.Millisecond))
	statePropagation(t, c, "node1", "node3", 20)

	// A watch on node2 sees the next write (once node2 has every earlier
	// one: the propagation above only waited for node3).
	stateWait(t, "node2 has node1's writes", time.Minute, digestsEqual(c, 0, "node1", "node2"))
	l, err := nodeClient(t, c, "node2").ListState(t.Context(), "vm/")
	if err != nil {
		t.Fatal(err)
	}
	statePut(t, c, "node1", "vm/qa2", "owner=node1")
	out, err := c.Exec("node2", "shoal", "state", "watch", "vm/", "--from", fmt.Sprint(l.Rev), "--count", "1")
	if err != nil || !strings.Contains(out, "vm/qa2") {
		t.Errorf("watch on node2: %q, %v; want the put of vm/qa2", out, err)
	}

	id1 := ""
	if st, err := stateStatus(c, "node1"); err == nil {
		id1 = st.Self.ID
	}
	c.Partition([]string{"node1"}, []string{"node2", "node3"})
	stateWait(t, "node2 sees node1 failed", time.Minute, func() (bool, string) {
		st, err := stateStatus(c, "node2")
		if err != nil {
			return false, err.Error()
		}
		for _, m := range st.Members {
			if m.ID == id1 {
				return m.State == client.StateFailed, m.State
			}
		}
		return false, "node1 not listed"
	})
	for i := range 5 {
		statePut(t, c, "node1", fmt.Sprintf("vm/a%d", i), "side=a")
		statePut(t, c, "node2", fmt.Sprintf("vm/b%d", i), "side=b")
		statePut(t, c, "node3", fmt.Sprintf("vm/c%d", i), "side=b")
	}
	statePut(t, c, "node1", "setting/motd", "value=from node1")
	statePut(t, c, "node3", "setting/motd", "value=from node3")
	if out, err := c.Exec("node3", "shoal", "state", "rm", "vm/qa1"); err != nil {
		t.Fatalf("state rm: %v: %s", err, out)
	}
	d1, _ := stateDigest(c, "node1")
	d2, _ := stateDigest(c, "node2")
	if d1.Digest == d2.Digest {
		t.Errorf("digests equal during the partition (%s): the partition did not hold", d1.Digest)
	}
	c.HealPartition()
	stateWait(t, "digests equal on all nodes after heal", 2*time.Minute, digestsEqual(c, 0, "node1", "node2", "node3"))
	for _, n := range c.Nodes() {
		out, err := c.Exec(n, "shoal", "state", "ls", "vm/", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var l client.StateList
		json.Unmarshal([]byte(out), &l)
		if len(l.Records) != 36 { // 20 prop, qa2, 15 written during the partition; qa1 deleted
			t.Errorf("%s lists %d vm records after heal, want 36", n, len(l.Records))
		}
	}
}

// stateKilledCatchesUp kills node3, writes n records on node1, restarts
// node3 and waits until every digest is equal.
func stateKilledCatchesUp(t *testing.T, n int) {
	c := stateCluster(t, 3)
	c.Kill("node3")
	bulkPut(t, c, "node1", "vm/bulk", n)
	c.Restart("node3")
	stateWait(t, fmt.Sprintf("node3 restarted caught up with %d records changed while it was down (digests equal)", n),
		10*time.Minute, digestsEqual(c, n, "node1", "node2", "node3"))
	// Its logs say how (changes from the log, or a snapshot).
	if b, err := os.ReadFile(c.LogPath("node3", "peer")); err == nil {
		t.Logf("node3 peer log: %d bytes", len(b))
	}
}

// TestFastStateKilledNodeCatchesUp: a node killed while 10k records change
// catches up after restart.
func TestFastStateKilledNodeCatchesUp(t *testing.T) { stateKilledCatchesUp(t, 10_000) }

// TestStateKilledNodeCatchesUp100k is the full size (slow: not in
// make test's fast set).
func TestStateKilledNodeCatchesUp100k(t *testing.T) { stateKilledCatchesUp(t, 100_000) }

// TestFastStateRemovedReAdded: a node removed from the cluster is refused
// for good under its old identity (membership's rule); wiped, it comes
// back as a new node, joins by itself and converges.
func TestFastStateRemovedReAdded(t *testing.T) {
	c := stateCluster(t, 3)
	statePut(t, c, "node1", "vm/before", "x=1")
	st3, err := stateStatus(c, "node3")
	if err != nil {
		t.Fatal(err)
	}
	c.Kill("node3")
	stateWait(t, "node1 sees node3 failed", time.Minute, func() (bool, string) {
		st, err := stateStatus(c, "node1")
		if err != nil {
			return false, err.Error()
		}
		for _, m := range st.Members {
			if m.ID == st3.Self.ID {
				return m.State == client.StateFailed, m.State
			}
		}
		return false, "not listed"
	})
	if out, err := c.Exec("node1", "shoal", "node", "remove", st3.Self.ID); err != nil {
		t.Fatalf("node remove: %v: %s", err, out)
	}
	statePut(t, c, "node2", "vm/while-removed", "x=2")
	if out, err := c.Exec("node1", "shoal", "state", "rm", "vm/before"); err != nil {
		t.Fatalf("state rm: %v: %s", err, out)
	}
	// Wipe node3's data dir: it comes back as a new node.
	lib := filepath.Join(c.NodeDir("node3"), "lib")
	ents, err := os.ReadDir(lib)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(lib, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	c.Restart("node3")
	stateWait(t, "wiped node3 joins again as a new node", 3*time.Minute, func() (bool, string) { return stateFormed(c, c.Nodes()...) })
	stateWait(t, "re-added node3 converges (digests equal)", 2*time.Minute, digestsEqual(c, 0, "node1", "node2", "node3"))
	out, err := c.Exec("node3", "shoal", "state", "ls", "vm/")
	if err != nil || strings.Contains(out, "vm/before") || !strings.Contains(out, "vm/while-removed") {
		t.Errorf("node3 after re-add: %q, %v; want vm/while-removed and not the deleted vm/before", out, err)
	}
}

// statePropagation puts n records on from through its socket and polls
// to's socket every 2 ms until each is visible; it prints the latencies
// (no CLI processes in the measure).
func statePropagation(t *testing.T, c *qa.Cluster, from, to string, n int) {
	t.Helper()
	src, dst := nodeClient(t, c, from), nodeClient(t, c, to)
	var ds []time.Duration
	for i := range n {
		key := fmt.Sprintf("vm/prop%03d", i)
		start := time.Now()
		if _, err := src.PutState(t.Context(), key, map[string]string{"i": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := dst.GetState(t.Context(), key); err == nil {
				break
			} else if !errors.Is(err, client.ErrStateNotFound) {
				t.Fatal(err)
			}
			if time.Since(start) > time.Minute {
				t.Fatalf("%s not visible on %s after a minute", key, to)
			}
			time.Sleep(2 * time.Millisecond)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	t.Logf("put on %s (fsync included) → visible on %s, %d writes: min %v p50 %v p90 %v max %v", from, to, n,
		ds[0].Round(time.Microsecond), ds[len(ds)/2].Round(time.Microsecond), ds[len(ds)*9/10].Round(time.Microsecond), ds[len(ds)-1].Round(time.Microsecond))
}
