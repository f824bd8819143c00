package replvol_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/scribe/internal/chunksvc"
	"github.com/shoal-hci/shoal/scribe/internal/loopcluster"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

// silentPool is a node's view of the cluster in which one node, once
// chosen, accepts chunk service requests and never answers them.
type silentPool struct {
	replvol.Pool
	mu   sync.Mutex
	node string
	c    *chunksvc.Client
}

func (p *silentPool) Replica(node string) (replvol.Replica, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if node == p.node {
		return p.c, nil
	}
	return p.Pool.Replica(node)
}

// dialSilent returns a Client whose peer reads every request and answers
// none.
func dialSilent(t *testing.T) *chunksvc.Client {
	t.Helper()
	ca, err := loopcluster.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue("silent")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Issue("owner")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ca.ServerTLS(srv))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		io.Copy(io.Discard, conn) // until the client closes
	}()
	c, err := chunksvc.Dial(context.Background(), ln.Addr().String(), ca.ClientTLS(cli))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		ln.Close()
		wg.Wait()
	})
	return c
}

// TestPipelinedWriteToSilentReplica: the owner holds one replica and
// sends the other's write without waiting; when that replica never
// answers, the write still completes within the fan-out's timeout, the
// silent replica is dropped and the extent reported degraded.
func TestPipelinedWriteToSilentReplica(t *testing.T) {
	testWriteToSilentReplica(t, false)
}

// TestWriteBackWriteToSilentReplica is TestPipelinedWriteToSilentReplica
// for a write-back write, whose remote response is handled where it
// arrives (writeAsync, Pending.Then): when it never comes, the request
// window's end completes the write, the replica is dropped and the next
// Flush succeeds (the data is on the other replica).
func TestWriteBackWriteToSilentReplica(t *testing.T) {
	testWriteToSilentReplica(t, true)
}

func testWriteToSilentReplica(t *testing.T, writeBack bool) {
	c := newCluster(t, 3)
	ctx := context.Background()
	pool := &silentPool{Pool: c.Pool("node1")}
	v, err := replvol.Open(ctx, replvol.Config{VSD: vsdID, Size: volume, Epoch: 1, Pool: pool, LocalNode: "node1", Timeout: 4 * time.Second, Log: quiet, WriteBack: writeBack})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	// Write extents until one is placed on this node and another.
	chunk := c.Stores("node1")[0].ChunkSize()
	first := bytes.Repeat([]byte{0xa1}, 8192)
	var e uint64
	var hs []string
	for ; int64(e)*chunk < volume; e++ {
		if err := v.WriteAt(ctx, first, int64(e)*chunk+4096, false); err != nil {
			t.Fatal(err)
		}
		if err := v.Flush(ctx); err != nil { // a write-back write lands
			t.Fatal(err)
		}
		if hs = holders(c, e); slices.Contains(hs, "node1") {
			break
		}
	}
	if len(hs) != 2 || !slices.Contains(hs, "node1") {
		t.Fatalf("no extent on node1 and another node (last on %v)", hs)
	}
	remote := hs[0]
	if remote == "node1" {
		remote = hs[1]
	}
	pool.mu.Lock()
	pool.node, pool.c = remote, dialSilent(t)
	pool.mu.Unlock()

	second := bytes.Repeat([]byte{0xb2}, 4096)
	base := int64(e) * chunk
	if err := v.WriteAt(ctx, second, base+8192, false); err != nil {
		t.Fatalf("write with %s silent: %v", remote, err)
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatalf("flush after a write with %s silent: %v", remote, err)
	}
	st := v.Status()
	if len(st.Degraded) != 1 || st.Degraded[0].Extent != e {
		t.Fatalf("degraded extents %+v, want extent %d", st.Degraded, e)
	}
	if !slices.ContainsFunc(st.Degraded[0].Missing, func(d replvol.Disk) bool { return d.Node == remote }) {
		t.Errorf("extent %d missing %+v, want a disk of %s", e, st.Degraded[0].Missing, remote)
	}
	if slices.ContainsFunc(st.Degraded[0].Replicas, func(d replvol.Disk) bool { return d.Node == remote }) {
		t.Errorf("extent %d still on %s: %+v", e, remote, st.Degraded[0].Replicas)
	}
	got := make([]byte, 8192)
	if err := v.ReadAt(ctx, got, base+4096); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(first[:4096]), second...)
	if !bytes.Equal(got, want) {
		t.Fatal("read back other data after the drop")
	}
}
