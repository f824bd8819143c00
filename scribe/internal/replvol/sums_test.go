package replvol_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/loopcluster"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

// sumsPool's replicas record how writes reach them: with checksums
// (WriteSums) or without (Write).
type sumsPool struct {
	replvol.Pool
	mu    sync.Mutex
	calls []string // "node sums|plain bytes", in order
}

func (p *sumsPool) Replica(node string) (replvol.Replica, error) {
	r, err := p.Pool.Replica(node)
	if err != nil {
		return nil, err
	}
	return sumsReplica{r, p, node}, nil
}

func (p *sumsPool) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls
	p.calls = nil
	slices.Sort(c)
	return c
}

type sumsReplica struct {
	replvol.Replica
	p    *sumsPool
	node string
}

func (r sumsReplica) note(kind string, n int) {
	r.p.mu.Lock()
	r.p.calls = append(r.p.calls, fmt.Sprintf("%s %s %d", r.node, kind, n))
	r.p.mu.Unlock()
}

func (r sumsReplica) Write(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, fua bool) error {
	r.note("plain", len(p))
	return r.Replica.Write(ctx, disk, key, epoch, st, off, p, fua)
}

func (r sumsReplica) WriteSums(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, sums []uint32, fua bool) error {
	kind := "sums"
	if !slices.Equal(sums, chunkstore.BlockSums(nil, p)) {
		kind = "wrong-sums"
	}
	r.note(kind, len(p))
	return r.Replica.(interface {
		WriteSums(context.Context, chunkstore.ID, chunkstore.ChunkKey, uint64, chunkstore.Stamp, int64, []byte, []uint32, bool) error
	}).WriteSums(ctx, disk, key, epoch, st, off, p, sums, fua)
}

// TestLargeWritesCarryChecksums: a block-aligned write piece of 64 KiB or
// more reaches every replica with the checksums of its blocks, computed
// once by the owner; smaller or unaligned ones go without.
func TestLargeWritesCarryChecksums(t *testing.T) {
	c := newCluster(t, 2)
	p := &sumsPool{Pool: c.Pool("node1")}
	v := open(t, p, 1, "node1")
	ctx := context.Background()
	tests := []struct {
		name string
		off  int64
		n    int
		want []string
	}{
		{"whole chunk", 0, mib, []string{"node1 sums 1048576", "node2 sums 1048576"}},
		{"64 KiB", 2 * mib, 64 << 10, []string{"node1 sums 65536", "node2 sums 65536"}},
		{"4 KiB", 3 * mib, 4096, []string{"node1 plain 4096", "node2 plain 4096"}},
		{"unaligned", 4*mib + 512, 128 << 10, []string{"node1 plain 131072", "node2 plain 131072"}},
		{"two pieces", 5*mib + mib/2, mib, []string{"node1 sums 524288", "node1 sums 524288", "node2 sums 524288", "node2 sums 524288"}},
	}
	for i, tt := range tests {
		data := bytes.Repeat([]byte{byte(i + 1), 2, 3, 4, 5}, tt.n/5+1)[:tt.n]
		if err := v.WriteAt(ctx, data, tt.off, true); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := p.take(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: replicas got %q; want %q", tt.name, got, tt.want)
		}
		got := make([]byte, tt.n)
		if err := v.ReadAt(ctx, got, tt.off); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: read back: %v, equal %v", tt.name, err, bytes.Equal(got, data))
		}
	}
}

// BenchmarkWrite1MiB writes whole 1 MiB chunks through a 2-replica
// Volume on two in-process nodes (the remote replica over the chunk
// service's TLS, O_DIRECT disks), eight at a time as fio's QD8 row does,
// and prints CPU time per MiB (both nodes, one process) and allocations:
//
//	go test -run '^$' -bench Write1MiB -benchtime 2000x ./scribe/internal/replvol/
func BenchmarkWrite1MiB(b *testing.B) {
	c := loopcluster.ForTest(b, loopcluster.Config{Nodes: 2, DiskSize: 256 * mib, Direct: true})
	v, err := replvol.Open(context.Background(), replvol.Config{Pool: c.Pool("node1"), Epoch: 1, LocalNode: "node1", VSD: vsdID, Size: 64 * mib, Log: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	const qd = 8
	bufs := make([][]byte, qd)
	for i := range bufs {
		bufs[i] = bytes.Repeat([]byte{byte(i + 1), 7, 9, 11}, mib/4)
		if err := v.WriteAt(ctx, bufs[i], int64(i)*mib, false); err != nil { // place the extents
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu0 := selfCPU()
	b.ReportAllocs()
	b.ResetTimer()
	for w := range qd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if err := v.WriteAt(ctx, bufs[w], (i%64)*mib, false); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric((selfCPU()-cpu0)*1e6/float64(b.N), "cpu-µs/MiB")
	b.ReportMetric(float64(b.N)*mib/1e6/b.Elapsed().Seconds(), "MB/s")
}

// selfCPU is the process's user+system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
