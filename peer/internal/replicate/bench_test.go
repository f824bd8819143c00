package replicate

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/hlc"
	"github.com/shoal-hci/shoal/peer/internal/statestore"
)

// waitAll blocks until every store has applied dot.
func waitAll(stores []*statestore.Store, dot crdt.Dot) {
	var wg sync.WaitGroup
	for _, s := range stores {
		wg.Go(func() {
			for {
				ch := s.Changed()
				if vv, err := s.VV(); err != nil || vv.Covers(dot) {
					return
				}
				<-ch
			}
		})
	}
	wg.Wait()
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkPropagation measures the time from a write on one node until
// every node has applied it, over MemNetwork with default intervals
// (fanout 3, pull every 1 s). Run with -benchtime=100x.
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{3, 32, 128} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			c := newCluster(b, n, 42, clusterOpts{node: func(_ int, nc *Config) { nc.PullInterval = time.Second }})
			c.start()
			defer c.stop()
			var ds []time.Duration
			i := 0
			for b.Loop() {
				s := c.stores[i%n]
				i++
				start := time.Now()
				ch, err := s.Write(fmt.Sprintf("vm/%d", i%100), crdt.Op{Field: "x", Set: true, Value: []byte(fmt.Sprint(i))})
				if err != nil {
					b.Fatal(err)
				}
				waitAll(c.stores, ch.Dot())
				ds = append(ds, time.Since(start))
			}
			push, pull, msgs := c.net.Bytes()
			b.ReportMetric(float64(pct(ds, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(pct(ds, 0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(msgs)/float64(len(ds)), "msgs/write")
			b.Logf("N=%d writes=%d p50=%s p99=%s push=%d B pull=%d B", n, len(ds), pct(ds, 0.5), pct(ds, 0.99), push, pull)
		})
	}
}

// genChanges makes n changes of origin gen#1 starting at seq first, one
// record each ("vm/<i>"), with a 100-byte value.
func genChanges(first uint64, n int, ver string) []*crdt.Change {
	var cs []*crdt.Change
	val := make([]byte, 100)
	copy(val, ver)
	for i := range n {
		seq := first + uint64(i)
		st := crdt.Stamp{TS: hlc.Timestamp{Wall: 1_700_000_000_000 + int64(seq)}, Origin: "gen#1"}
		d, _ := crdt.Delta(nil, 1, st, crdt.Dot{Origin: "gen#1", Seq: seq}, []crdt.Op{{Field: "v", Set: true, Value: val}, {Field: "n", Set: true, Value: []byte(ver)}})
		cs = append(cs, &crdt.Change{Origin: "gen#1", Seq: seq, Key: fmt.Sprintf("vm/%06d", i), Delta: d})
	}
	return cs
}

func applyAll(b *testing.B, s *statestore.Store, cs []*crdt.Change) {
	for len(cs) > 0 {
		k := min(len(cs), 5000)
		if _, err := s.Apply(cs[:k]); err != nil {
			b.Fatal(err)
		}
		cs = cs[k:]
	}
}

// BenchmarkCatchUp100k measures how long a node that missed 100k changed
// records takes to catch up from one peer, and the bytes moved: through
// the change log (kept long enough) and through a snapshot (log compacted).
// Run with -benchtime=1x.
func BenchmarkCatchUp100k(b *testing.B) {
	const records = 100_000
	for _, mode := range []struct {
		name   string
		retain int
	}{{"log", 1_000_000}, {"snapshot", 10_000}} {
		b.Run(mode.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				dir := b.TempDir()
				net := NewMemNetwork(1)
				var stores []*statestore.Store
				var nodes []*Node
				for _, id := range []string{"a", "b"} {
					s, err := statestore.Open(statestore.Config{Path: filepath.Join(dir, id+".db"), NodeID: id, NoSync: true, LogRetain: mode.retain, Logger: slog.New(slog.DiscardHandler)})
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					nd, _ := New(Config{Store: s, Transport: net.Transport(id), Peers: func() []string { return nil }, Logger: slog.New(slog.DiscardHandler)})
					net.Add(id, nd)
					stores, nodes = append(stores, s), append(nodes, nd)
				}
				v1 := genChanges(1, records, "v1")
				applyAll(b, stores[0], v1)
				applyAll(b, stores[1], v1)
				applyAll(b, stores[0], genChanges(records+1, records, "v2")) // b was offline
				_, pull0, _ := net.Bytes()
				b.StartTimer()
				start := time.Now()
				if err := nodes[1].PullOnce(context.Background(), "a"); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				b.StopTimer()
				da, _ := stores[0].Digest()
				db, _ := stores[1].Digest()
				if da != db {
					b.Fatal("not converged after catch-up")
				}
				_, pull1, _ := net.Bytes()
				mb := float64(pull1-pull0) / 1e6
				b.ReportMetric(took.Seconds(), "catchup-s")
				b.ReportMetric(mb, "MB")
				b.Logf("%s: 100k changed records caught up in %s, %.1f MB (%.0f B/record), snapshots=%d",
					mode.name, took, mb, float64(pull1-pull0)/records, nodes[1].Stats().Snapshots)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkQuietAntiEntropy measures background traffic in a converged,
// idle cluster: pulls compare version vectors and move no data. It runs
// pulls every 100 ms and reports the bytes per second at the default 1 s
// interval. Run with -benchtime=1x.
func BenchmarkQuietAntiEntropy(b *testing.B) {
	for _, n := range []int{3, 32} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				c := newCluster(b, n, 7, clusterOpts{node: func(_ int, nc *Config) { nc.PullInterval = 100 * time.Millisecond }})
				for i := range 100 {
					if _, err := c.stores[i%n].Write(fmt.Sprintf("vm/%d", i), crdt.Op{Field: "x", Set: true, Value: make([]byte, 200)}); err != nil {
						b.Fatal(err)
					}
				}
				c.start()
				for !c.converged(b) {
					time.Sleep(50 * time.Millisecond)
				}
				time.Sleep(2 * time.Second) // let acks settle and peers learn they agree
				push0, pull0, _ := c.net.Bytes()
				var pulls0 int64
				for _, nd := range c.nodes {
					pulls0 += nd.Stats().Pulls
				}
				b.StartTimer()
				const window = 3 * time.Second
				time.Sleep(window)
				b.StopTimer()
				push1, pull1, _ := c.net.Bytes()
				var pulls1 int64
				for _, nd := range c.nodes {
					pulls1 += nd.Stats().Pulls
				}
				c.stop()
				perPull := float64(pull1-pull0) / float64(pulls1-pulls0)
				// at the default interval each node makes one pull per second
				b.ReportMetric(perPull, "B/s/node")
				b.ReportMetric(perPull*float64(n), "B/s/cluster")
				b.ReportMetric(float64(push1-push0), "push-B")
				b.Logf("N=%d quiet: %.0f B per pull exchange => %.0f B/s per node, %.0f B/s cluster at 1 s pulls; pushes %d B",
					n, perPull, perPull, perPull*float64(n), push1-push0)
				b.StartTimer()
			}
		})
	}
}
