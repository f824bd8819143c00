// Package peertest runs in-process clusters of shoal peer nodes for tests:
// every node on 127.0.0.1 with its own ports and data dir, discovery over
// an in-process hub, and tightened timers so that formation, failure
// detection and recovery take a fraction of a second.
//
// NewCluster(t, n) returns once the n nodes have formed one cluster by
// themselves (zero-config formation) and see each other alive. Nodes are
// stopped in t.Cleanup. Waits poll with a deadline; tests assert states,
// never timings.
package peertest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer"
	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/discovery"
)

// Timers are the tightened timings of test nodes.
func Timers() peer.Timers {
	return peer.Timers{
		Tick:              50 * time.Millisecond,
		Beacon:            50 * time.Millisecond,
		Settle:            300 * time.Millisecond,
		JoinPace:          100 * time.Millisecond,
		ProbeInterval:     100 * time.Millisecond,
		ProbeTimeout:      50 * time.Millisecond,
		GossipInterval:    20 * time.Millisecond,
		SuspicionMult:     2,
		PushPull:          500 * time.Millisecond,
		ReconnectInterval: 200 * time.Millisecond,
		ReapInterval:      500 * time.Millisecond,
		ReconnectTimeout:  time.Hour,
		TombstoneTimeout:  5 * time.Second,
		DeadReclaim:       100 * time.Millisecond,
		MetaSync:          300 * time.Millisecond,
	}
}

// WaitTimeout bounds every wait of this package. It is generous: under
// make test, QEMU guests of other packages' tests share the 2 cores, and
// a slow wait costs nothing when things work.
var WaitTimeout = 90 * time.Second

// Option changes the config of every node of a cluster.
type Option func(*peer.Config)

// WithPolicy sets the admission policy of the cluster formed.
func WithPolicy(policy string) Option { return func(c *peer.Config) { c.Policy = policy } }

// WithQuorum sets the formation quorum.
func WithQuorum(n int) Option { return func(c *peer.Config) { c.FormQuorum = n } }

// Cluster is a set of in-process nodes on one discovery hub.
type Cluster struct {
	t     testing.TB
	Hub   *discovery.Hub
	Nodes []*Node
	opts  []Option
	base  string

	mu     sync.Mutex
	side   map[string]int // node name -> side of the partition; nil when healed
	byAddr map[string]string
}

// Node is one in-process shoal peer.
type Node struct {
	Config peer.Config
	Peer   *peer.Peer
	Client *client.Client
	t      testing.TB
	name   string
	c      *Cluster
	cancel context.CancelFunc
	done   chan struct{}
}

// NewCluster starts n nodes and waits until they have formed one cluster
// with no input and all see n alive members.
func NewCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := NewUnformed(t, n, append([]Option{WithQuorum(min(n, 3))}, opts...)...)
	c.WaitConverged(n)
	return c
}

// NewUnformed starts n nodes without waiting for anything.
func NewUnformed(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	// Socket paths must stay short (108 bytes): use a short temp dir.
	base, err := os.MkdirTemp("", "peertest")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Hub: discovery.NewHub(), opts: opts, base: base, byAddr: map[string]string{}}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, nd := range c.Nodes {
			wg.Add(1)
			go func() { defer wg.Done(); nd.Stop() }()
		}
		wg.Wait()
		os.RemoveAll(base)
	})
	for range n {
		c.AddNode()
	}
	return c
}

// AddNode starts one more unclaimed node on the hub (like plugging a
// server into the backplane) and returns it without waiting.
func (c *Cluster) AddNode(opts ...Option) *Node {
	c.t.Helper()
	i := len(c.Nodes)
	dir := filepath.Join(c.base, fmt.Sprintf("n%d", i))
	cfg := peer.DefaultConfig()
	cfg.DataDir = dir
	cfg.Socket = filepath.Join(dir, "peer.sock")
	cfg.Bind = "127.0.0.1"
	cfg.GossipPort, cfg.APIPort = 0, 0
	cfg.Beacons = nil
	cfg.Timers = Timers()
	cfg.Version = "test"
	cfg.Hardware = fmt.Sprintf("test-hw-%d", i)
	cfg.Log = slog.New(slog.NewTextHandler(testWriter{c.t}, &slog.HandlerOptions{Level: logLevel()})).With("n", i)
	for _, o := range append(append([]Option(nil), c.opts...), opts...) {
		o(&cfg)
	}
	name := fmt.Sprintf("n%d", i)
	cfg.GossipBlocked = func(addr string) bool { return c.blocked(name, addr) }
	nd := &Node{Config: cfg, t: c.t, name: name, c: c}
	nd.start(c.Hub)
	c.Nodes = append(c.Nodes, nd)
	return nd
}

func logLevel() slog.Level {
	if os.Getenv("PEERTEST_LOG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelError + 4 // quiet unless asked
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (nd *Node) start(hub *discovery.Hub) {
	nd.t.Helper()
	cfg := nd.Config
	cfg.Beacons = hub.NamedConn(nd.name)
	p, err := peer.New(cfg)
	if err != nil {
		nd.t.Fatalf("start node: %v", err)
	}
	nd.c.mu.Lock()
	nd.c.byAddr[p.GossipAddr()] = nd.name
	nd.c.mu.Unlock()
	// Keep the ports across restarts, as a real node keeps its address.
	nd.Config.GossipPort = portOf(p.GossipAddr())
	nd.Config.APIPort = portOf(p.APIAddr())
	nd.Peer = p
	nd.Client = client.New(cfg.Socket)
	ctx, cancel := context.WithCancel(context.Background())
	nd.cancel, nd.done = cancel, make(chan struct{})
	go func() {
		defer close(nd.done)
		if err := p.Run(ctx); err != nil {
			nd.t.Errorf("node %s: Run: %v", p.NodeID(), err)
		}
	}()
}

func portOf(hostport string) int {
	i := strings.LastIndexByte(hostport, ':')
	var port int
	fmt.Sscanf(hostport[i+1:], "%d", &port)
	return port
}

// ID is the node's ID.
func (nd *Node) ID() string { return nd.Peer.NodeID() }

// Stop kills the node (no graceful leave), as a crash or power loss would.
func (nd *Node) Stop() {
	if nd.cancel == nil {
		return
	}
	nd.cancel()
	<-nd.done
	nd.cancel = nil
}

// Partition cuts the nodes into sides (indexes into Nodes): gossip and
// discovery between different sides are dropped. Nodes not listed are on
// side 0 with the first group.
func (c *Cluster) Partition(sides ...[]int) {
	c.mu.Lock()
	c.side = map[string]int{}
	for s, group := range sides {
		for _, i := range group {
			c.side[c.Nodes[i].name] = s
		}
	}
	c.mu.Unlock()
	c.Hub.Block(func(from, to string) bool { return c.apart(from, to) })
}

// Heal ends the partition.
func (c *Cluster) Heal() {
	c.mu.Lock()
	c.side = nil
	c.mu.Unlock()
	c.Hub.Block(nil)
}

func (c *Cluster) apart(a, b string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.side != nil && c.side[a] != c.side[b]
}

func (c *Cluster) blocked(from, addr string) bool {
	c.mu.Lock()
	to, ok := c.byAddr[addr]
	c.mu.Unlock()
	return ok && c.apart(from, to)
}

// Restart starts a stopped node again from its data dir.
func (c *Cluster) Restart(nd *Node) {
	c.t.Helper()
	nd.Stop()
	nd.start(c.Hub)
}

// Status returns the node's status through its local API.
func (nd *Node) Status() client.Status {
	st, err := nd.Client.Status(context.Background())
	if err != nil {
		nd.t.Fatalf("status: %v", err)
	}
	return st
}

// WaitFor polls cond until it holds or WaitTimeout passes, then fails the
// test with what.
func (c *Cluster) WaitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
}

// Count returns how many members nd sees in state.
func Count(st client.Status, state string) int {
	n := 0
	for _, m := range st.Members {
		if m.State == state {
			n++
		}
	}
	return n
}

// WaitConverged waits until every running node is a member of the same
// cluster and sees n alive members.
func (c *Cluster) WaitConverged(n int) {
	c.t.Helper()
	defer func() {
		if c.t.Failed() {
			c.logViews()
		}
	}()
	c.WaitFor(fmt.Sprintf("%d nodes in one cluster, all alive", n), func() bool {
		id := ""
		for _, nd := range c.Nodes {
			if nd.cancel == nil {
				continue
			}
			st := nd.Peer.Status()
			if st.ClusterID == "" || (id != "" && st.ClusterID != id) || Count(st, client.StateAlive) != n {
				return false
			}
			id = st.ClusterID
		}
		return true
	})
}

// logViews logs what every running node sees: for a failed wait.
func (c *Cluster) logViews() {
	for _, nd := range c.Nodes {
		if nd.cancel == nil {
			continue
		}
		st := nd.Peer.Status()
		var ms []string
		for _, m := range append(st.Members, st.Pending...) {
			ms = append(ms, m.Name+"="+m.State)
		}
		c.t.Logf("%s: phase %s cluster %q members %v", nd.name, st.Phase, st.ClusterID, ms)
	}
}

// StateOf returns the state of member id as seen by nd ("" if unknown).
func StateOf(st client.Status, id string) string {
	for _, m := range append(st.Members, st.Pending...) {
		if m.ID == id {
			return m.State
		}
	}
	return ""
}
