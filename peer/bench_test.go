package peer_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"log"
	mrand "math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/shoal-hci/shoal/peer"
)

// gossipNode is one member of a benchmark cluster.
type gossipNode interface {
	alive() int // members seen alive (or suspect), self included
	addr() string
	kill()
}

type rawNode struct{ m *memberlist.Memberlist }

func (n rawNode) alive() int   { return n.m.NumMembers() }
func (n rawNode) addr() string { return n.m.LocalNode().Address() }
func (n rawNode) kill()        { n.m.Shutdown() }

type serfNode struct{ s *serf.Serf }

func (n serfNode) alive() int   { return n.s.Memberlist().NumMembers() }
func (n serfNode) addr() string { return n.s.Memberlist().LocalNode().Address() }
func (n serfNode) kill()        { n.s.Shutdown() }

// startRaw starts stock memberlist (DefaultLANConfig, compression off as
// in NOTES.md), every node joining node 0 at once.
func startRaw(tb testing.TB, n int) []gossipNode {
	nodes := make([]gossipNode, n)
	var wg sync.WaitGroup
	for i := range n {
		c := memberlist.DefaultLANConfig()
		c.Name = "raw-" + strconv.Itoa(i)
		c.BindAddr, c.BindPort, c.AdvertisePort = "127.0.0.1", 0, 0
		c.EnableCompression = false
		c.LogOutput = io.Discard
		m, err := memberlist.Create(c)
		if err != nil {
			tb.Fatalf("memberlist %d: %v", i, err)
		}
		nodes[i] = rawNode{m}
		if i > 0 {
			wg.Add(1)
			go func() { defer wg.Done(); m.Join([]string{nodes[0].addr()}) }()
		}
	}
	wg.Wait()
	return nodes
}

// startShoal starts serf with shoal's gossip configuration (encrypted,
// bounded push/pull) and shoal's join pattern: each node contacts up to
// three random nodes already in the cluster (what an admission reply
// lists), with at most 4 joins in flight (paced).
func startShoal(tb testing.TB, n int) []gossipNode { return startSerf(tb, n, true) }

// startSerf starts serf with shoal's configuration (tuned) or serf's and
// memberlist's stock LAN configuration, joined the same paced way.
func startSerf(tb testing.TB, n int, tuned bool) []gossipNode {
	key := make([]byte, 32)
	rand.Read(key)
	nodes := make([]gossipNode, n)
	sem := make(chan struct{}, 4)
	var mu sync.Mutex
	joined := []string{} // nodes already in: what an admission reply lists
	var wg sync.WaitGroup
	for i := range n {
		c := peer.GossipConfig(peer.DefaultTimers())
		if !tuned {
			c = serf.DefaultConfig()
			c.MemberlistConfig = memberlist.DefaultLANConfig()
			c.MemberlistConfig.EnableCompression = false
		}
		c.NodeName = "shoal-" + strconv.Itoa(i)
		c.MemberlistConfig.BindAddr, c.MemberlistConfig.BindPort, c.MemberlistConfig.AdvertisePort = "127.0.0.1", 0, 0
		if tuned {
			kr, _ := memberlist.NewKeyring(nil, key)
			c.MemberlistConfig.Keyring = kr
		}
		c.Logger = log.New(io.Discard, "", 0)
		c.MemberlistConfig.Logger = c.Logger
		c.Tags = map[string]string{"c": "bench", "v": "dev"}
		s, err := serf.Create(c)
		if err != nil {
			tb.Fatalf("serf %d: %v", i, err)
		}
		nodes[i] = serfNode{s}
		if i == 0 {
			joined = append(joined, nodes[0].addr())
			continue
		}
		sem <- struct{}{}
		mu.Lock()
		var seeds []string
		for _, j := range mrand.Perm(len(joined))[:min(3, len(joined))] {
			seeds = append(seeds, joined[j])
		}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := s.Join(seeds, false); err == nil {
				mu.Lock()
				joined = append(joined, s.Memberlist().LocalNode().Address())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return nodes
}

// waitAll polls until every node in nodes sees want members, or limit passes.
func waitAll(nodes []gossipNode, want int, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < limit {
		ok := true
		for _, nd := range nodes {
			if nd.alive() != want {
				ok = false
				break
			}
		}
		if ok {
			return time.Since(start), true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start), false
}

type benchResult struct {
	impl              string
	n                 int
	converge, failure time.Duration
	convOK, failOK    bool
}

// runMembership measures one cluster: time from the first node's start to
// every node seeing all n, then time from killing one node to every
// survivor seeing n-1.
func runMembership(tb testing.TB, impl string, n int) benchResult {
	start := time.Now()
	var nodes []gossipNode
	switch impl {
	case "raw":
		nodes = startRaw(tb, n)
	case "serf": // stock serf, paced joins: isolates the tuning
		nodes = startSerf(tb, n, false)
	default:
		nodes = startShoal(tb, n)
	}
	defer func() {
		for _, nd := range nodes {
			nd.kill()
		}
	}()
	r := benchResult{impl: impl, n: n}
	started := time.Since(start)
	_, r.convOK = waitAll(nodes, n, 120*time.Second)
	r.converge = time.Since(start)
	if testing.Verbose() {
		fmt.Printf("%s N=%d: nodes started and joins returned after %.2fs\n", impl, n, started.Seconds())
	}
	if !r.convOK {
		return r
	}
	victim := n / 2
	nodes[victim].kill()
	survivors := append(append([]gossipNode(nil), nodes[:victim]...), nodes[victim+1:]...)
	r.failure, r.failOK = waitAll(survivors, n-1, 120*time.Second)
	nodes = survivors
	return r
}

// BenchmarkMembership prints, for N simulated nodes in one process on
// loopback, the time to converged membership and the time for all to see
// a crash, for stock memberlist (DefaultLANConfig, all joining one seed)
// and for shoal's gossip (serf, tuned timers, encrypted, paced joins).
// Sizes: BENCH_MEMBERSHIP_N (comma-separated), default 3,32,128,256;
// BENCH_MEMBERSHIP_IMPL=raw,serf,shoal chooses (serf: stock serf config
// with shoal's paced joins, to isolate the tuning).
// Run: go test -run '^$' -bench Membership -benchtime 1x -timeout 30m ./peer/
func BenchmarkMembership(b *testing.B) {
	// Hundreds of nodes in one heap: GC dominates otherwise (same for both).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	sizes := []int{3, 32, 128, 256}
	if s := os.Getenv("BENCH_MEMBERSHIP_N"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("BENCH_MEMBERSHIP_N: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	impls := []string{"raw", "shoal"}
	if s := os.Getenv("BENCH_MEMBERSHIP_IMPL"); s != "" {
		impls = strings.Split(s, ",")
	}
	var results []benchResult
	for _, n := range sizes {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("%s/N=%d", impl, n), func(b *testing.B) {
				for range b.N {
					r := runMembership(b, impl, n)
					b.ReportMetric(r.converge.Seconds(), "converge-s")
					b.ReportMetric(r.failure.Seconds(), "fail-seen-s")
					results = append(results, r)
				}
			})
		}
	}
	fmt.Println("\nmembership in one process, loopback UDP/TCP, this machine:")
	fmt.Printf("%-6s %5s  %12s  %14s\n", "impl", "N", "converge", "failure seen")
	for _, r := range results {
		conv, fail := fmt.Sprintf("%.2fs", r.converge.Seconds()), fmt.Sprintf("%.2fs", r.failure.Seconds())
		if !r.convOK {
			conv, fail = "no ("+conv+")", "-"
		} else if !r.failOK {
			fail = "no (" + fail + ")"
		}
		fmt.Printf("%-6s %5d  %12s  %14s\n", r.impl, r.n, conv, fail)
	}
}
