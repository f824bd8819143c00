package scribe_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/peertest"
	"github.com/shoal-hci/shoal/scribe"
	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
	"github.com/shoal-hci/shoal/scribe/internal/patterncheck"
)

// node is one in-process scribe daemon beside a peertest node.
type node struct {
	peer   *peertest.Node
	sock   string
	cfg    scribe.Config
	cancel context.CancelFunc
	done   chan error
}

func (n *node) start(t *testing.T) {
	t.Helper()
	ready := make(chan struct{})
	n.cfg.Ready = func() { close(ready) }
	d, err := scribe.New(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- d.Run(ctx) }()
	select {
	case <-ready:
	case err := <-n.done:
		t.Fatalf("scribe exited before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("scribe not ready after 30 s")
	}
}

func (n *node) stop(t *testing.T) {
	t.Helper()
	if n.cancel == nil {
		return
	}
	n.cancel()
	if err := <-n.done; err != nil {
		t.Errorf("scribe Run: %v", err)
	}
	n.cancel = nil
}

// newCluster starts 3 peers and a scribe beside each, with two 256 MiB
// file disks per node, and waits until every node published its record.
func newCluster(t *testing.T) []*node {
	t.Helper()
	pc := peertest.NewCluster(t, 3)
	base, err := os.MkdirTemp("", "scr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	var nodes []*node
	for i, p := range pc.Nodes {
		dir := filepath.Join(base, fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for k := 1; k <= 2; k++ {
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("disk%d", k)))
			if err != nil {
				t.Fatal(err)
			}
			f.Truncate(256 << 20)
			f.Close()
		}
		n := &node{peer: p, sock: filepath.Join(dir, "nbd.sock")}
		n.cfg = scribe.Config{
			DataDir: p.Config.DataDir, PeerSocket: p.Config.Socket, NBDSocket: n.sock,
			ChunkListen: "127.0.0.1:0", DiskGlobs: []string{filepath.Join(dir, "disk*")}, Buffered: true,
			Interval: 100 * time.Millisecond, DialTimeout: time.Second, ReplicaTimeout: 3 * time.Second,
			Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", i),
		}
		n.start(t)
		t.Cleanup(func() { n.stop(t) })
		nodes = append(nodes, n)
	}
	waitFor(t, "every node's scribe record on node 0", func() (bool, string) {
		l, err := nodes[0].peer.Client.ListState(t.Context(), scribe.NodePrefix)
		if err != nil {
			return false, err.Error()
		}
		return len(l.Records) == 3, fmt.Sprintf("%d records", len(l.Records))
	})
	// A peer starts fenced until it hears a majority; a scribe on a fenced
	// node refuses I/O, so the subtests start once no node is fenced.
	for i, n := range nodes {
		waitFor(t, fmt.Sprintf("node %d unfenced", i), func() (bool, string) {
			f, err := n.peer.Client.Fence(t.Context())
			if err != nil {
				return false, err.Error()
			}
			return !f.Fenced, fmt.Sprintf("%+v", f)
		})
	}
	return nodes
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 30 s: %s", what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createVSD(t *testing.T, c *client.Client, name string, size int64, replicas int) scribe.VSDRecord {
	t.Helper()
	rec := scribe.VSDRecord{Name: name, ID: scribe.NewVSDID(), Size: size, Replicas: replicas, Created: time.Now()}
	if _, err := c.PutState(t.Context(), scribe.VSDPrefix+name, rec.Fields()); err != nil {
		t.Fatal(err)
	}
	return rec
}

// dial opens export name on n, retrying while the VSD record travels.
func dial(t *testing.T, n *node, name string) *nbd.Client {
	t.Helper()
	var c *nbd.Client
	waitFor(t, "dial "+name, func() (bool, string) {
		var err error
		c, err = nbd.Dial(t.Context(), "unix", n.sock, name)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func writeSome(t *testing.T, ck *patterncheck.Checker, dev patterncheck.Device, from, to int64) {
	t.Helper()
	for b := from; b < to; b++ {
		if err := ck.Write(dev, b, b%7 == 0); err != nil {
			t.Fatalf("write block %d: %v", b, err)
		}
	}
	if err := ck.Flush(dev); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// TestDaemon runs three in-process peers with a scribe beside each (one
// cluster for every subtest: starting one is the slow part).
func TestDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three peers and three scribes")
	}
	nodes := newCluster(t)
	t.Run("ReplicaDownAndStaleOwner", func(t *testing.T) { replicaDownAndStaleOwner(t, nodes) })
	t.Run("ExportsAndRemoval", func(t *testing.T) { exportsAndRemoval(t, nodes) })
	t.Run("ReadOnlyImage", func(t *testing.T) { readOnlyImage(t, nodes) })
	t.Run("OwnerDownFailover", func(t *testing.T) { ownerDownFailover(t, nodes) })
}

// ownerDownFailover: the scribe of the node that owns a VSD (and holds
// replicas of it) stops; another node opens the VSD at once and reads
// every acknowledged write: no drop beyond the survivors' copies was
// registered, so they are current although they name the stopped node.
func ownerDownFailover(t *testing.T, nodes []*node) {
	createVSD(t, nodes[0].peer.Client, "f", 16<<20, 2)
	c0 := dial(t, nodes[0], "f")
	// Of 64 KiB: 16 MiB over 16 extents. Every extent has a replica on
	// node 0 (the owner) and one on node 1 or node 2; the writes after
	// node 1 stops must reach some extent of node 1's to degrade it,
	// so they cover all 16 (all on node 2: one VSD ID in 65536).
	const blocks = 256
	ck, err := patterncheck.New(patterncheck.Config{BlockSize: 64 << 10, Blocks: blocks, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	writeSome(t, ck, c0, 0, blocks)
	nodes[0].stop(t)
	defer nodes[0].start(t)
	c1 := dial(t, nodes[1], "f")
	if err := ck.Verify(c1); err != nil {
		t.Fatalf("read on the new owner with the old owner's scribe down: %v", err)
	}
	writeSome(t, ck, c1, 0, blocks/2)
	if err := ck.Verify(c1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 1 owns f with degraded extents", func() (bool, string) {
		rec, err := nodes[1].peer.Client.GetState(t.Context(), scribe.VSDStatusPrefix+"f")
		if err != nil {
			return false, err.Error()
		}
		st := scribe.ParseVSDStatus(rec)
		return st.Owner == nodes[1].peer.ID() && st.Degraded > 0 && st.Unavailable == 0, fmt.Sprintf("%+v", st)
	})
}

// readOnlyImage: a VSD written through node 0, closed, then marked
// read-only (as `shoal image upload` does) is served by every node at
// once, without a claim: reads return the data, writes get EPERM.
func readOnlyImage(t *testing.T, nodes []*node) {
	pc := nodes[0].peer.Client
	createVSD(t, pc, "img", 8<<20, 2)
	w := dial(t, nodes[0], "img")
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i/4096 + i)
	}
	if err := w.WriteAt(data, 1<<20, false); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	waitFor(t, "img closed on node 0", func() (bool, string) {
		rec, err := pc.GetState(t.Context(), scribe.VSDStatusPrefix+"img")
		if err != nil {
			return false, err.Error()
		}
		st := scribe.ParseVSDStatus(rec)
		return st.Owner == "", fmt.Sprintf("%+v", st)
	})
	before, err := pc.GetClaim(t.Context(), scribe.ClaimResource("img"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.PutState(t.Context(), scribe.VSDPrefix+"img", map[string]string{scribe.ReadOnlyField: "1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "img read-only on node 2", func() (bool, string) {
		rec, err := nodes[2].peer.Client.GetState(t.Context(), scribe.VSDPrefix+"img")
		if err != nil {
			return false, err.Error()
		}
		v, err := scribe.ParseVSD(rec)
		return err == nil && v.ReadOnly, fmt.Sprintf("%+v %v", v, err)
	})
	var readers []*nbd.Client
	for _, n := range nodes {
		readers = append(readers, dial(t, n, "img"))
	}
	got := make([]byte, len(data))
	for i, r := range readers {
		if err := r.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("reader on node %d: err %v, equal %v", i, err, bytes.Equal(got, data))
		}
		if err := r.WriteAt(make([]byte, 4096), 0, false); !nbd.IsRemote(err, 1) { // EPERM
			t.Fatalf("write on node %d's read-only export: %v, want EPERM", i, err)
		}
	}
	after, err := pc.GetClaim(t.Context(), scribe.ClaimResource("img"))
	if err != nil {
		t.Fatal(err)
	}
	if after.Epoch != before.Epoch || after.Holder != before.Holder {
		t.Fatalf("claim moved from %+v to %+v: read-only opens must not claim", before, after)
	}
}

// replicaDownAndStaleOwner: a VSD written through node 0's NBD socket
// survives the loss of another node's scribe; a second node taking the
// VSD over (next epoch) fences the first, whose writes are refused.
func replicaDownAndStaleOwner(t *testing.T, nodes []*node) {
	createVSD(t, nodes[0].peer.Client, "v1", 64<<20, 2)
	c0 := dial(t, nodes[0], "v1")
	if c0.Size() != 64<<20 {
		t.Fatalf("export size %d, want %d", c0.Size(), 64<<20)
	}
	// Of 64 KiB: 16 MiB over 16 extents. Every extent has a replica on
	// node 0 (the owner) and one on node 1 or node 2; the writes after
	// node 1 stops must reach some extent of node 1's to degrade it,
	// so they cover all 16 (all on node 2: one VSD ID in 65536).
	const blocks = 256
	ck, err := patterncheck.New(patterncheck.Config{BlockSize: 64 << 10, Blocks: blocks, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	writeSome(t, ck, c0, 0, blocks)
	if err := ck.Verify(c0); err != nil {
		t.Fatal(err)
	}

	// Node 1's scribe dies: writes go on degraded, everything reads back.
	nodes[1].stop(t)
	writeSome(t, ck, c0, 0, blocks)
	if err := ck.Verify(c0); err != nil {
		t.Fatalf("after node 1's scribe stopped: %v", err)
	}
	waitFor(t, "degraded extents in the vsd status", func() (bool, string) {
		rec, err := nodes[0].peer.Client.GetState(t.Context(), scribe.VSDStatusPrefix+"v1")
		if err != nil {
			return false, err.Error()
		}
		st := scribe.ParseVSDStatus(rec)
		return st.Owner == nodes[0].peer.ID() && st.Degraded > 0, fmt.Sprintf("%+v", st)
	})
	nodes[1].start(t)

	// Node 2 cannot open it by accident while node 0 serves it...
	if c, err := nbd.Dial(t.Context(), "unix", nodes[2].sock, "v1"); err == nil {
		c.Close()
		t.Fatal("node 2 opened v1 while node 0 has it open")
	}
	// ...but takes it over once it claimed the next epoch: node 0 is a
	// stale owner.
	if _, err := nodes[2].peer.Client.Claim(t.Context(), client.ClaimRequest{Resource: scribe.ClaimResource("v1")}); err != nil {
		t.Fatal(err)
	}
	c2 := dial(t, nodes[2], "v1")
	if err := ck.Verify(c2); err != nil {
		t.Fatalf("read on the new owner: %v", err)
	}
	err = c0.WriteAt(make([]byte, 4096), 0, true)
	if !nbd.IsRemote(err, 1) { // EPERM
		t.Fatalf("write by the stale owner: %v, want EPERM", err)
	}
	if err := ck.Verify(c2); err != nil {
		t.Fatalf("after the stale owner tried to write: %v", err)
	}
	waitFor(t, "node 2 owns v1 in the status", func() (bool, string) {
		rec, err := nodes[0].peer.Client.GetState(t.Context(), scribe.VSDStatusPrefix+"v1")
		if err != nil {
			return false, err.Error()
		}
		st := scribe.ParseVSDStatus(rec)
		return st.Owner == nodes[2].peer.ID() && st.Epoch == 2, fmt.Sprintf("%+v", st)
	})
}

// exportsAndRemoval: an unknown export is refused; a VSD with 3 replicas
// is written from node 1; once removed (the vsd-deleted/ record `shoal
// vsd rm` writes), every node frees its chunks.
func exportsAndRemoval(t *testing.T, nodes []*node) {
	if _, err := nbd.Dial(t.Context(), "unix", nodes[0].sock, "nope"); err == nil {
		t.Fatal("dial of a VSD that does not exist succeeded")
	}
	used := func() (int64, string) {
		l, err := nodes[0].peer.Client.ListState(t.Context(), scribe.NodePrefix)
		if err != nil {
			return -1, err.Error()
		}
		var sum int64
		for _, r := range l.Records {
			nr, err := scribe.ParseNode(r)
			if err != nil {
				return -1, err.Error()
			}
			for _, d := range nr.Disks {
				sum += d.Size - d.Free
			}
		}
		return sum, fmt.Sprintf("%d bytes used on the disks", sum)
	}
	base, why := used() // what the other subtests left
	if base < 0 {
		t.Fatal(why)
	}
	rec := createVSD(t, nodes[0].peer.Client, "a", 8<<20, 3)
	c := dial(t, nodes[1], "a")
	if err := c.WriteAt(make([]byte, 4096), 4096, true); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteAt([]byte("x"), 5<<20, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two extents on three replicas", func() (bool, string) {
		n, why := used()
		return n-base == 6<<20, why
	})
	c.Close()
	pc := nodes[2].peer.Client
	if _, err := pc.PutState(t.Context(), scribe.DeletedKey(rec.ID), map[string]string{"name": "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.DeleteState(t.Context(), scribe.VSDPrefix+"a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every chunk of the removed VSD freed", func() (bool, string) {
		n, why := used()
		return n == base, why
	})
	collected := func(id chunkstore.ID) func() (bool, string) {
		return func() (bool, string) {
			_, err := pc.GetState(t.Context(), scribe.DeletedKey(id))
			return errors.Is(err, client.ErrStateNotFound), fmt.Sprintf("vsd-deleted record: %v", err)
		}
	}
	waitFor(t, "the vsd-deleted record collected once every node freed it", collected(rec.ID))

	// Removed while open: removal wins. The open VSD refuses I/O (EPERM),
	// its chunks are freed once its client is gone, and the record is
	// collected.
	recB := createVSD(t, nodes[0].peer.Client, "b", 8<<20, 2)
	cb := dial(t, nodes[1], "b")
	if err := cb.WriteAt(make([]byte, 4096), 0, true); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.PutState(t.Context(), scribe.DeletedKey(recB.ID), map[string]string{"name": "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.DeleteState(t.Context(), scribe.VSDPrefix+"b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "I/O on the removed open VSD refused", func() (bool, string) {
		err := cb.WriteAt(make([]byte, 4096), 0, false)
		return nbd.IsRemote(err, 1), fmt.Sprintf("write: %v", err) // EPERM
	})
	cb.Close()
	waitFor(t, "every chunk of the VSD removed while open freed", func() (bool, string) {
		n, why := used()
		return n == base, why
	})
	waitFor(t, "its vsd-deleted record collected", collected(recB.ID))
}
