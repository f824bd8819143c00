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
	"syscall"
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

// startShoal starts serf as startMembership does (GossipConfig for n
// expected members, encrypted, the node's gossip transport) and joins the way a node does: each node is
// given three random nodes already in the cluster (what an admission reply
// lists) and joins through the first that answers (joinOne), with at most
// 4 joins in flight (paced), re-syncs once (resyncAfter) and, until stop is
// closed, heals every tick as heal does.
func startShoal(tb testing.TB, n int, stop <-chan struct{}) []gossipNode {
	return startSerf(tb, n, true, stop)
}

// background tracks the benchmark's re-sync and heal goroutines, which
// outlive startSerf.
var background sync.WaitGroup

// startSerf starts serf with shoal's configuration (tuned) or serf's and
// memberlist's stock LAN configuration, joined the same paced way.
func startSerf(tb testing.TB, n int, tuned bool, stop <-chan struct{}) []gossipNode {
	key := make([]byte, 32)
	rand.Read(key)
	clusterID := fmt.Sprintf("%x", key[:16])
	nodes := make([]gossipNode, n)
	sem := make(chan struct{}, 4)
	begin := time.Now()
	var mu sync.Mutex
	joined := []string{}         // nodes already in: what an admission reply lists
	heard := map[string]string{} // node name to gossip address: what discovery hears
	var wg sync.WaitGroup
	for i := range n {
		// Every node hears the other n-1 on the backplane before its
		// gossip starts (a rack powering on), as expectedMembers counts.
		c := peer.GossipConfig(peer.DefaultTimers(), n)
		if !tuned {
			c = serf.DefaultConfig()
			c.MemberlistConfig = memberlist.DefaultLANConfig()
			c.MemberlistConfig.EnableCompression = false
		}
		// A node's name and tags: 32-hex node ID, the tags of
		// startMembership (cluster, version, hardware fingerprint; the
		// API port is the default on a node).
		name := fmt.Sprintf("%032x", i)
		c.NodeName = name
		c.Tags = peer.GossipTags(clusterID, "v0.1.0-dev", "", "1a2b-3c4d-5e6f", peer.DefaultAPIPort)
		c.MemberlistConfig.BindAddr, c.MemberlistConfig.BindPort, c.MemberlistConfig.AdvertisePort = "127.0.0.1", 0, 0
		if tuned {
			// As startMembership: encrypted, on the node's transport.
			kr, _ := memberlist.NewKeyring(nil, key)
			c.MemberlistConfig.Keyring = kr
			c.MemberlistConfig.GossipVerifyIncoming, c.MemberlistConfig.GossipVerifyOutgoing = true, true
			tr, err := peer.NewGossipTransport("127.0.0.1", 0)
			if err != nil {
				tb.Fatalf("gossip transport %d: %v", i, err)
			}
			c.MemberlistConfig.Transport = tr
		}
		c.Logger = log.New(io.Discard, "", 0)
		c.MemberlistConfig.Logger = c.Logger
		s, err := serf.Create(c)
		if err != nil {
			tb.Fatalf("serf %d: %v", i, err)
		}
		nodes[i] = serfNode{s}
		mu.Lock()
		heard[name] = nodes[i].addr()
		mu.Unlock()
		background.Add(1)
		go func() { defer background.Done(); benchHeal(s, heard, &mu, stop) }()
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
			err := peer.JoinOne(s, seeds)
			<-sem
			if err != nil {
				return
			}
			mu.Lock()
			joined = append(joined, s.Memberlist().LocalNode().Address())
			if len(joined)%64 == 0 && os.Getenv("BENCH_MEMBERSHIP_TRACE") != "" {
				fmt.Printf("  %d nodes joined after %.1fs\n", len(joined), time.Since(begin).Seconds())
			}
			mu.Unlock()
			// Once more a little later, as the timer in the node's Run
			// loop does. Measured while the benchmark already waits.
			resync := peer.ResyncAfter(peer.DefaultTimers(), s.NumNodes())
			background.Add(1)
			go func() {
				defer background.Done()
				time.Sleep(resync)
				peer.JoinOne(s, peer.ResyncTargets(s, name))
			}()
		}()
	}
	wg.Wait()
	return nodes
}

// benchHeal does what a node's heal does every tick, until stop is closed:
// it joins the nodes heard on the backplane that are not alive in its
// gossip. Here every node started is heard (beacons reach every node within
// one 2 s period; the benchmark hears it at once), and heal stops once the
// cluster converged, before the crash is measured (on a node, a crashed
// member's beacons stop, so heal leaves it alone). Nodes' ticks are not
// in phase.
func benchHeal(s *serf.Serf, heard map[string]string, mu *sync.Mutex, stop <-chan struct{}) {
	tick := peer.DefaultTimers().Tick
	t := time.NewTimer(time.Duration(mrand.Int64N(int64(tick))))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			t.Reset(tick)
		}
		alive := map[string]bool{}
		for _, m := range s.Members() {
			if m.Status == serf.StatusAlive {
				alive[m.Name] = true
			}
		}
		var missing []string
		mu.Lock()
		for name, addr := range heard {
			if !alive[name] {
				missing = append(missing, addr)
			}
		}
		mu.Unlock()
		if len(missing) > 0 {
			peer.JoinOne(s, missing)
		}
	}
}

// waitAll polls until every node in nodes sees want members, or limit passes.
func waitAll(nodes []gossipNode, want int, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	trace := os.Getenv("BENCH_MEMBERSHIP_TRACE") != ""
	next := time.Second
	for time.Since(start) < limit {
		if trace && time.Since(start) > next {
			next = time.Since(start) + time.Second
			lo, sum := want, 0
			for _, nd := range nodes {
				a := nd.alive()
				lo = min(lo, a)
				sum += a
			}
			fmt.Printf("  t=%.1fs: fewest members seen %d, mean %.1f, want %d\n", time.Since(start).Seconds(), lo, float64(sum)/float64(len(nodes)), want)
		}
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
	cpu               time.Duration // process CPU time from start to converged
	started           time.Duration // nodes created and joins returned
	convOK, failOK    bool
}

// runMembership measures one cluster: time from the first node's start to
// every node seeing all n, then time from killing one node to every
// survivor seeing n-1.
func runMembership(tb testing.TB, impl string, n int) benchResult {
	start, cpu0 := time.Now(), cpuTime()
	stop := make(chan struct{})
	stopHeal := sync.OnceFunc(func() { close(stop) })
	var nodes []gossipNode
	switch impl {
	case "raw":
		nodes = startRaw(tb, n)
	case "serf": // stock serf, paced joins: isolates the tuning
		nodes = startSerf(tb, n, false, stop)
	default:
		nodes = startShoal(tb, n, stop)
	}
	defer func() {
		stopHeal()
		background.Wait()
		for _, nd := range nodes {
			nd.kill()
		}
	}()
	r := benchResult{impl: impl, n: n}
	r.started = time.Since(start)
	_, r.convOK = waitAll(nodes, n, convergeLimit)
	r.converge = time.Since(start)
	r.cpu = cpuTime() - cpu0
	stopHeal()
	if testing.Verbose() {
		fmt.Printf("%s N=%d: nodes started and joins returned after %.2fs\n", impl, n, r.started.Seconds())
	}
	if !r.convOK {
		return r
	}
	victim := n / 2
	nodes[victim].kill()
	survivors := append(append([]gossipNode(nil), nodes[:victim]...), nodes[victim+1:]...)
	r.failure, r.failOK = waitAll(survivors, n-1, convergeLimit)
	nodes = survivors
	return r
}

// convergeLimit bounds each wait of the benchmark.
const convergeLimit = 120 * time.Second

// BenchmarkMembership prints, for N simulated nodes in one process on
// loopback, the time to converged membership, the process CPU time spent
// until then, and the time for all to see a crash, for stock memberlist
// (DefaultLANConfig, all joining one seed at once, unencrypted) and for
// shoal's gossip exactly as startMembership runs it (serf with
// GossipConfig's timers, encrypted, on the node's gossip transport,
// joining the way joinGossip does with at most 4 joins in flight, then
// re-syncing and healing every tick as a node does until converged).
//
// Sizes: BENCH_MEMBERSHIP_N (comma-separated), default 3,32,128,256, and
// doubling on up to SHOAL_BENCH_MAX_N when set (SHOAL_BENCH_MAX_N=512
// adds 512: about 5 more minutes). BENCH_MEMBERSHIP_IMPL=raw,serf,shoal
// chooses (serf: stock serf config with shoal's joins, to isolate the
// tuning). BENCH_MEMBERSHIP_TRACE=1 prints progress every second.
// Run: go test -run '^$' -bench Membership -benchtime 1x -timeout 30m ./peer/
func BenchmarkMembership(b *testing.B) {
	// Hundreds of nodes in one heap: GC dominates otherwise (same for both).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	sizes := []int{3, 32, 128, 256}
	if s := os.Getenv("SHOAL_BENCH_MAX_N"); s != "" {
		max, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("SHOAL_BENCH_MAX_N: %v", err)
		}
		for n := 512; n <= max; n *= 2 {
			sizes = append(sizes, n)
		}
	}
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
					b.ReportMetric(r.cpu.Seconds(), "converge-cpu-s")
					results = append(results, r)
				}
			})
		}
	}
	fmt.Println("\nmembership in one process, loopback UDP/TCP, this machine:")
	fmt.Printf("%-6s %5s  %-28s  %-13s  %s\n", "impl", "N", "converge", "CPU to conv.", "crash seen by all")
	for _, r := range results {
		conv, cpu, fail := fmt.Sprintf("%.2fs", r.converge.Seconds()), fmt.Sprintf("%.1fs", r.cpu.Seconds()), fmt.Sprintf("%.2fs", r.failure.Seconds())
		if !r.convOK {
			conv, fail = fmt.Sprintf("did not converge in %.0fs", (convergeLimit+r.started).Seconds()), "-"
		} else if !r.failOK {
			fail = fmt.Sprintf("not seen in %.0fs", convergeLimit.Seconds())
		}
		fmt.Printf("%-6s %5d  %-28s  %-13s  %s\n", r.impl, r.n, conv, cpu, fail)
	}
}

// cpuTime is the CPU time (user + system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
