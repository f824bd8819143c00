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
// expected members, encrypted, the node's gossip transport) and joins the
// way a rack powering on does: node 0 forms the cluster, and every other
// node waits the random delay formOrJoin draws (joinDelay, hearing the n-1
// unclaimed nodes) before it is admitted by node 0, starts its gossip and
// joins through the first of three of the addresses the admission reply
// lists (admitJoinAddrs, joinOne); then it re-syncs once (resyncAfter) and,
// until stop is closed, heals every tick as heal does.
func startShoal(tb testing.TB, n int, stop <-chan struct{}) *serfCluster {
	return startSerf(tb, n, true, stop)
}

// background tracks the benchmark's re-sync and heal goroutines, which
// outlive startSerf.
var background sync.WaitGroup

// serfCluster is a benchmark cluster started by startSerf.
type serfCluster struct {
	nodes []gossipNode
	// window is the join pacing window (joinPace); lastStart is when the
	// last node started its gossip, after the first node's start.
	window, lastStart time.Duration

	mu    sync.Mutex
	heard map[string]string // node name to gossip address: what discovery hears
}

// crash kills node i and stops its beacons: the others' heal forgets it
// (on a node, heal joins only members heard in the last two beacon
// periods, 4 s, and a crash is declared later than that).
func (c *serfCluster) crash(i int) {
	c.mu.Lock()
	delete(c.heard, fmt.Sprintf("%032x", i))
	c.mu.Unlock()
	c.nodes[i].kill()
}

// startSerf starts serf with shoal's configuration (tuned) or serf's and
// memberlist's stock LAN configuration, joined the same paced way. It
// returns once every node started and its join returned.
func startSerf(tb testing.TB, n int, tuned bool, stop <-chan struct{}) *serfCluster {
	key := make([]byte, 32)
	rand.Read(key)
	clusterID := fmt.Sprintf("%x", key[:16])
	timers := peer.DefaultTimers()
	sc := &serfCluster{nodes: make([]gossipNode, n), window: peer.JoinPace(timers, n-1), heard: map[string]string{}}
	begin := time.Now()
	mu, heard := &sc.mu, sc.heard
	joined := 0
	create := func(i int) *serf.Serf {
		// Every node hears the other n-1 on the backplane before its
		// gossip starts (a rack powering on), as expectedMembers counts.
		c := peer.GossipConfig(timers, n)
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
				tb.Errorf("gossip transport %d: %v", i, err)
				return nil
			}
			c.MemberlistConfig.Transport = tr
		}
		c.Logger = log.New(io.Discard, "", 0)
		c.MemberlistConfig.Logger = c.Logger
		s, err := serf.Create(c)
		if err != nil {
			tb.Errorf("serf %d: %v", i, err)
			return nil
		}
		mu.Lock()
		sc.nodes[i] = serfNode{s}
		heard[name] = sc.nodes[i].addr()
		sc.lastStart = max(sc.lastStart, time.Since(begin))
		mu.Unlock()
		background.Add(1)
		go func() { defer background.Done(); benchHeal(s, heard, mu, stop) }()
		return s
	}
	first := create(0) // node 0 forms the cluster and admits the others
	if first == nil {
		tb.FailNow()
	}
	firstAddr, firstName := first.Memberlist().LocalNode().Address(), first.LocalMember().Name
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// formOrJoin: a random delay, then admission, then gossip.
			time.Sleep(peer.JoinDelay(timers, n-1))
			s := create(i)
			if s == nil {
				return
			}
			err := peer.JoinOne(s, peer.AdmitJoinAddrs(firstAddr, firstName, peer.SerfMembers(first)))
			if err != nil {
				return
			}
			mu.Lock()
			joined++
			if joined%64 == 0 && os.Getenv("BENCH_MEMBERSHIP_TRACE") != "" {
				fmt.Printf("  %d nodes joined after %.1fs\n", joined, time.Since(begin).Seconds())
			}
			mu.Unlock()
			// Once more a little later, as the timer in the node's Run
			// loop does. Measured while the benchmark already waits.
			resync := peer.ResyncAfter(timers, s.NumNodes())
			background.Add(1)
			go func() {
				defer background.Done()
				time.Sleep(resync)
				peer.JoinOne(s, peer.ResyncTargets(s, s.LocalMember().Name))
			}()
		}()
	}
	wg.Wait()
	if tb.Failed() {
		tb.FailNow()
	}
	return sc
}

// benchHeal does what a node's heal does every tick, until stop is closed:
// it joins the nodes heard on the backplane that have been missing from
// its gossip for the heal grace (the same MissingMembers heal uses). Here
// every node started is heard (beacons reach every node within one 2 s
// period; the benchmark hears it at once); a crashed node is no longer
// heard (serfCluster.crash). Nodes' ticks are not in phase.
func benchHeal(s *serf.Serf, heard map[string]string, mu *sync.Mutex, stop <-chan struct{}) {
	timers := peer.DefaultTimers()
	t := time.NewTimer(time.Duration(mrand.Int64N(int64(timers.Tick))))
	defer t.Stop()
	var missing peer.MissingMembers
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			t.Reset(timers.Tick)
		}
		// serf's alive members are memberlist's alive and suspect ones;
		// memberlist's list is the cheaper to copy (no tags), which counts
		// with hundreds of nodes in one process.
		alive := map[string]bool{}
		for _, m := range s.Memberlist().Members() {
			alive[m.Name] = true
		}
		var addrs []string
		mu.Lock()
		for _, id := range missing.Due(time.Now(), timers.HealGrace, heard, alive) {
			addrs = append(addrs, heard[id])
		}
		mu.Unlock()
		if len(addrs) > 0 {
			peer.JoinOne(s, addrs)
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
	window, lastStart time.Duration // join pacing window; when the last node started
	convOK, failOK    bool
}

// runMembership measures one cluster: time from the first node's start to
// every node seeing all n, then time from killing one node to every
// survivor seeing n-1. Shoal's nodes heal every tick throughout, as nodes
// do.
func runMembership(tb testing.TB, impl string, n int) benchResult {
	start, cpu0 := time.Now(), cpuTime()
	stop := make(chan struct{})
	stopHeal := sync.OnceFunc(func() { close(stop) })
	var nodes []gossipNode
	r := benchResult{impl: impl, n: n}
	var c *serfCluster
	switch impl {
	case "raw":
		nodes = startRaw(tb, n)
	case "serf": // stock serf, paced joins: isolates the tuning
		c = startSerf(tb, n, false, stop)
	default:
		c = startShoal(tb, n, stop)
	}
	if c != nil {
		nodes, r.window, r.lastStart = c.nodes, c.window, c.lastStart
	}
	defer func() {
		stopHeal()
		background.Wait()
		for _, nd := range nodes {
			nd.kill()
		}
	}()
	r.started = time.Since(start)
	_, r.convOK = waitAll(nodes, n, convergeLimit)
	r.converge = time.Since(start)
	r.cpu = cpuTime() - cpu0
	if testing.Verbose() {
		fmt.Printf("%s N=%d: nodes started and joins returned after %.2fs\n", impl, n, r.started.Seconds())
	}
	if !r.convOK {
		return r
	}
	victim := n / 2
	if c != nil {
		c.crash(victim) // the others go on healing, as nodes do
	} else {
		nodes[victim].kill()
	}
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
// joining as a rack powering on does: paced over joinPace's window,
// admitted by node 0, joining the way joinGossip does, then re-syncing and
// healing every tick as a node does). For shoal it also prints the pacing
// window and the time to converge after the last node started its gossip,
// the figure to compare with stock, whose nodes all start at once.
//
// Sizes: BENCH_MEMBERSHIP_N (comma-separated), default 3,32,128,256, and
// doubling on up to SHOAL_BENCH_MAX_N when set (SHOAL_BENCH_MAX_N=512
// adds 512: about 1 more minute). BENCH_MEMBERSHIP_IMPL=raw,serf,shoal
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
					b.ReportMetric((r.converge - r.lastStart).Seconds(), "after-last-start-s")
					b.ReportMetric(r.failure.Seconds(), "fail-seen-s")
					b.ReportMetric(r.cpu.Seconds(), "converge-cpu-s")
					results = append(results, r)
				}
			})
		}
	}
	fmt.Println("\nmembership in one process, loopback UDP/TCP, this machine (joins paced over the window, as a rack powering on;")
	fmt.Println("\"after last\": converge after the last node started its gossip; core/node: CPU to converge per node per second):")
	fmt.Printf("%-6s %5s  %-7s  %-28s  %-10s  %-8s  %-9s  %s\n", "impl", "N", "window", "converge", "after last", "CPU", "core/node", "crash seen by all")
	for _, r := range results {
		conv, cpu, fail := fmt.Sprintf("%.2fs", r.converge.Seconds()), fmt.Sprintf("%.1fs", r.cpu.Seconds()), fmt.Sprintf("%.2fs", r.failure.Seconds())
		after := fmt.Sprintf("%.2fs", (r.converge - r.lastStart).Seconds())
		perNode := fmt.Sprintf("%.2f%%", 100*r.cpu.Seconds()/r.converge.Seconds()/float64(r.n))
		if !r.convOK {
			conv, after, fail = fmt.Sprintf("did not converge in %.0fs", (convergeLimit+r.started).Seconds()), "-", "-"
		} else if !r.failOK {
			fail = fmt.Sprintf("not seen in %.0fs", convergeLimit.Seconds())
		}
		window := "none"
		if r.impl != "raw" {
			window = fmt.Sprintf("%.2fs", r.window.Seconds())
		}
		fmt.Printf("%-6s %5d  %-7s  %-28s  %-10s  %-8s  %-9s  %s\n", r.impl, r.n, window, conv, after, cpu, perNode, fail)
	}
}

// cpuTime is the CPU time (user + system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
