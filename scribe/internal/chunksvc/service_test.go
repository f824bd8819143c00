package chunksvc_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/chunksvc"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
	"github.com/shoal-hci/shoal/scribe/internal/loopcluster"
)

func newCluster(t *testing.T, nodes int) *loopcluster.Cluster {
	return loopcluster.ForTest(t, loopcluster.Config{Nodes: nodes, DiskSize: 32 << 20, DisksPerNode: 2})
}

func dial(t *testing.T, c *loopcluster.Cluster, node string) *chunksvc.Client {
	t.Helper()
	cl, err := chunksvc.Dial(context.Background(), c.Addr(node), c.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestClientMatchesLocal runs the same operations through a Client and a
// LocalReplica on the same node and expects the same results.
func TestClientMatchesLocal(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	remote := dial(t, c, "node1")
	local := chunksvc.Local(c.Stores("node1"))
	stats, err := remote.Stat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	localStats, _ := local.Stat(ctx)
	if diff := cmp.Diff(localStats, stats); diff != "" || len(stats) != 2 {
		t.Fatalf("stat over the wire (-local +remote):\n%s", diff)
	}
	disk := stats[1].ID
	vsd := chunkstore.ID{0x42}
	st := chunkstore.Stamp{Gen: 3, Members: [3]chunkstore.ID{disk}}
	for i, r := range []interface {
		Write(context.Context, chunkstore.ID, chunkstore.ChunkKey, uint64, chunkstore.Stamp, int64, []byte, bool) error
		Read(context.Context, chunkstore.ID, chunkstore.ChunkKey, int64, []byte) error
		Zero(context.Context, chunkstore.ID, chunkstore.ChunkKey, uint64, chunkstore.Stamp, int64, int64, bool) error
		Sync(context.Context) error
	}{remote, local} {
		key := chunkstore.ChunkKey{VSD: vsd, Extent: uint64(i)}
		data := bytes.Repeat([]byte{byte(i + 1)}, 3*4096)
		if err := r.Write(ctx, disk, key, 1, st, 4096, data, true); err != nil {
			t.Fatal(err)
		}
		if err := r.Zero(ctx, disk, key, 1, st, 8192, 4096, false); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 5*4096)
		if err := r.Read(ctx, disk, key, 0, got); err != nil {
			t.Fatal(err)
		}
		want := append(append(append(make([]byte, 4096), data[:4096]...), make([]byte, 4096)...), append(data[:4096], make([]byte, 4096)...)...)
		if !bytes.Equal(got, want) {
			t.Fatalf("replica %d read back other data", i)
		}
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := remote.Chunks(ctx, vsd)
	if err != nil {
		t.Fatal(err)
	}
	lc, _ := local.Chunks(ctx, vsd)
	if diff := cmp.Diff(lc, rc); diff != "" || len(rc) != 2 {
		t.Fatalf("chunk lists (-local +remote):\n%s", diff)
	}
	if rc[0].Stamp != st {
		t.Fatalf("stamp %+v, want %+v", rc[0].Stamp, st)
	}
	if err := remote.SetStamp(ctx, disk, rc[0].Key, 1, chunkstore.Stamp{Gen: 9}, true); err != nil {
		t.Fatal(err)
	}
	if err := remote.Free(ctx, disk, rc[1].Key, 1); err != nil {
		t.Fatal(err)
	}
	rc, _ = remote.Chunks(ctx, vsd)
	if len(rc) != 1 || rc[0].Stamp.Gen != 9 {
		t.Fatalf("after stamp and free: %+v", rc)
	}
}

func TestErrorsKeepTheirIdentity(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	cl := dial(t, c, "node1")
	disk := c.Stores("node1")[0].Superblock().DiskID
	key := chunkstore.ChunkKey{VSD: chunkstore.ID{1}}
	if err := cl.Write(ctx, disk, key, 5, chunkstore.Stamp{}, 0, []byte("x"), false); err != nil {
		t.Fatal(err)
	}
	if err := cl.Fence(ctx, key.VSD, 5); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"stale epoch", cl.Write(ctx, disk, key, 4, chunkstore.Stamp{}, 0, []byte("y"), false), chunkstore.ErrStaleEpoch},
		{"fence older", cl.Fence(ctx, key.VSD, 3), chunkstore.ErrStaleEpoch},
		{"unknown disk", cl.Read(ctx, chunkstore.ID{0xee}, key, 0, make([]byte, 1)), chunksvc.ErrNoDisk},
		{"outside the chunk", cl.Read(ctx, disk, key, 1<<20-10, make([]byte, 20)), chunkstore.ErrRange},
		{"beyond the wire bound", cl.Write(ctx, disk, key, 5, chunkstore.Stamp{}, chunksvc.MaxData+1, []byte("z"), false), chunkstore.ErrRange},
		{"register at an older epoch", cl.RegisterPut(ctx, key.VSD, 4, []genreg.Entry{{Extent: 1, Gen: 9}}), chunkstore.ErrStaleEpoch},
		{"register read at an older epoch", func() error { _, err := cl.RegisterGet(ctx, key.VSD, 4); return err }(), chunkstore.ErrStaleEpoch},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	// The connection is still usable after error responses.
	if err := cl.Sync(ctx); err != nil {
		t.Fatalf("sync after errors: %v", err)
	}
}

func TestPipelinedConcurrentWrites(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	cl := dial(t, c, "node1")
	disk := c.Stores("node1")[0].Superblock().DiskID
	vsd := chunkstore.ID{3}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := chunkstore.ChunkKey{VSD: vsd, Extent: uint64(i % 4)}
			data := bytes.Repeat([]byte{byte(i)}, 4096)
			if err := cl.Write(ctx, disk, key, 1, chunkstore.Stamp{}, int64(i/4)*4096, data, false); err != nil {
				errs <- err
				return
			}
			got := make([]byte, 4096)
			if err := cl.Read(ctx, disk, key, int64(i/4)*4096, got); err != nil {
				errs <- err
			} else if !bytes.Equal(got, data) {
				errs <- fmt.Errorf("request %d read other data", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestUntrustedClientRefused(t *testing.T) {
	c := newCluster(t, 1)
	ca, err := loopcluster.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("intruder")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ca.ClientTLS(cert)
	cfg.InsecureSkipVerify = true // the intruder trusts anyone; the server must not
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := chunksvc.Dial(ctx, c.Addr("node1"), cfg)
	if err == nil {
		defer cl.Close()
		err = cl.Sync(ctx)
	}
	if !errors.Is(err, chunksvc.ErrUnreachable) {
		t.Fatalf("request with a foreign certificate: %v, want the connection refused", err)
	}
}

// TestHostileBytes sends garbage after a valid TLS handshake: the server
// closes the connection and keeps serving others.
func TestHostileBytes(t *testing.T) {
	c := newCluster(t, 1)
	inputs := map[string][]byte{
		"garbage":      bytes.Repeat([]byte{0xff}, 300),
		"huge write":   hugeWrite(),
		"short header": {0x43, 1, 0},
	}
	for name, in := range inputs {
		conn, err := tls.Dial("tcp", c.Addr("node1"), c.ClientTLS())
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(in)
		if name == "short header" {
			conn.CloseWrite()
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(make([]byte, 16))
		conn.Close()
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Errorf("%s: server answered %d bytes or left the connection open (%v)", name, n, err)
		}
	}
	cl := dial(t, c, "node1")
	if err := cl.Sync(context.Background()); err != nil {
		t.Fatalf("server no longer serves after hostile input: %v", err)
	}
}

func hugeWrite() []byte {
	b := make([]byte, 128)
	b[0], b[1] = 0x43, 1
	b[4], b[5], b[6], b[7] = 0xff, 0xff, 0xff, 0x7f // length
	b[124], b[125], b[126], b[127] = 0xff, 0xff, 0xff, 0x7f
	return b
}

// TestRegisterOverTheWire: entries put through a Client are what the
// node's register holds, batches merge per extent (higher generation
// wins), and a read fences the register.
func TestRegisterOverTheWire(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	cl := dial(t, c, "node1")
	vsd := chunkstore.ID{3}
	m := [3]chunkstore.ID{{0xd1}, {0xd2}}
	batches := [][]genreg.Entry{
		{{Extent: 1, Gen: 1<<32 + 1, Members: m}, {Extent: 2, Gen: 1<<32 + 1, Members: m}},
		{{Extent: 1, Gen: 1<<32 + 2, Members: [3]chunkstore.ID{{0xd1}}}, {Extent: 2, Gen: 1 << 32, Members: m}},
	}
	for _, b := range batches {
		if err := cl.RegisterPut(ctx, vsd, 1, b); err != nil {
			t.Fatal(err)
		}
	}
	want := []genreg.Entry{batches[1][0], batches[0][1]}
	got, err := cl.RegisterGet(ctx, vsd, 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("over the wire (-want +got):\n%s", diff)
	}
	local, err := c.Register("node1").Read(ctx, vsd, 2)
	if err != nil || !cmp.Equal(want, local) {
		t.Fatalf("the node's register holds %v (err %v), want %v", local, err, want)
	}
	if err := cl.RegisterPut(ctx, vsd, 1, batches[0]); !errors.Is(err, chunkstore.ErrStaleEpoch) {
		t.Fatalf("put at epoch 1 after a read at 2: %v, want ErrStaleEpoch", err)
	}
}

// TestMixedSizesOverTheWire pipelines small and chunk-sized writes and
// reads on one connection: large payloads bypass the buffers on both
// sides (Client.writeData, readData), small ones share them, and every
// byte must come back where it was written.
func TestMixedSizesOverTheWire(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	cl := dial(t, c, "node1")
	s := c.Stores("node1")[0]
	disk, chunk := s.Superblock().DiskID, int(s.ChunkSize())
	sizes := []int{4096, 60 << 10, chunk, 12288, chunk - 4096}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(sizes))
	for i := range 2 * len(sizes) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := sizes[i%len(sizes)]
			key := chunkstore.ChunkKey{VSD: chunkstore.ID{9}, Extent: uint64(i)}
			data := make([]byte, n)
			for j := range data {
				data[j] = byte(i*7 + j/4096 + j%251)
			}
			if err := cl.Write(ctx, disk, key, 1, chunkstore.Stamp{}, 0, data, false); err != nil {
				errs <- fmt.Errorf("write %d of %d bytes: %w", i, n, err)
				return
			}
			got := make([]byte, n)
			if err := cl.Read(ctx, disk, key, 0, got); err != nil {
				errs <- fmt.Errorf("read %d of %d bytes: %w", i, n, err)
			} else if !bytes.Equal(got, data) {
				errs <- fmt.Errorf("request %d (%d bytes) read other data", i, n)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Errorf("store check: %v", err)
	}
}

// BenchmarkRoundTrip prints the latency of one chunk-service request that
// does no device I/O (a sync of a clean store), one at a time: what a
// synchronously replicated write at queue depth 1 pays on top of the
// device write (mutual TLS on loopback, both sides' wake-ups). Run:
//
//	go test -run '^$' -bench RoundTrip -benchtime 20000x ./scribe/internal/chunksvc/
func BenchmarkRoundTrip(b *testing.B) {
	c := loopcluster.ForTest(b, loopcluster.Config{Nodes: 1, DiskSize: 32 << 20, DisksPerNode: 1})
	cl, err := chunksvc.Dial(context.Background(), c.Addr("node1"), c.ClientTLS())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if err := cl.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/roundtrip")
}
