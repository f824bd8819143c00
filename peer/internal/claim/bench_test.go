package claim

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkClaim measures the latency of one Propose that wins a fresh
// (resource, epoch 1), from one node to N voters in one process: two round
// trips to a majority, each answer after a save (bbolt: fsynced; every
// voter's file shares this machine's one disk). Transports: in memory, or
// HTTP on loopback (plain, no TLS). It prints p50 and p99 in microseconds.
//
//	go test ./peer/internal/claim -run '^$' -bench Claim -benchtime 200x
func BenchmarkClaim(b *testing.B) {
	for _, c := range []struct{ transport, store string }{{"mem", "mem"}, {"mem", "bolt"}, {"http", "bolt"}} {
		for _, n := range []int{3, 32} {
			b.Run(fmt.Sprintf("transport=%s/store=%s/voters=%d", c.transport, c.store, n), func(b *testing.B) {
				benchClaim(b, c.transport, c.store, n)
			})
		}
	}
}

func benchClaim(b *testing.B, transport, kind string, n int) {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%02d", i)
	}
	voters, err := NewVoterSet(ids...)
	if err != nil {
		b.Fatal(err)
	}
	tr := NewMemTransport()
	var mu sync.Mutex
	urls := map[string]string{}
	dir := b.TempDir()
	var nodes []*Node
	for i, id := range ids {
		var s Store = NewMemStore()
		if kind == "bolt" {
			bs, err := OpenBolt(filepath.Join(dir, id+".db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				if err := bs.Check(); err != nil {
					b.Error(err)
				}
				bs.Close()
			})
			s = bs
		}
		cfg := DefaultConfig(id)
		cfg.Incarnation = uint64(i + 1)
		var t Transport = tr.From(id)
		if transport == "http" {
			hc := &http.Client{Transport: headerRT{id}}
			t = &HTTPTransport{Prefix: testPrefix, Client: func() *http.Client { return hc }, URL: func(to, path string) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				return urls[to] + path, nil
			}}
		}
		nd, err := New(cfg, s, t, voters)
		if err != nil {
			b.Fatal(err)
		}
		tr.Add(id, nd.Acceptor())
		if transport == "http" {
			srv := httptest.NewServer(nd.Handler(testPrefix, func(r *http.Request) string { return r.Header.Get("X-Node") }))
			b.Cleanup(srv.Close)
			mu.Lock()
			urls[id] = srv.URL
			mu.Unlock()
		}
		nodes = append(nodes, nd)
	}
	self := nodes[0]
	for _, id := range ids {
		self.Heard(id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); self.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		for _, nd := range nodes {
			nd.Close()
		}
	}()

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if _, err := self.Propose(ctx, fmt.Sprintf("vm/%d", i), 1, ids[0]); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op")
}
