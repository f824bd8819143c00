package qa

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/shoal-hci/shoal/qa/internal/proccluster"
)

// Options configures NewCluster; it is the harness's Options. Zero fields
// take defaults; Dir defaults to a fresh t.TempDir(), Out to t.Log, and an
// empty ShoalBin or HelperBin to binaries built once per test process.
type Options = proccluster.Options

// NodeStatus is what Cluster.Status observes of a node.
type NodeStatus = proccluster.NodeStatus

// Cluster is a running process-level cluster bound to a test: every method
// fails the test (t.Fatal) on error, except Exec, whose command may fail on
// purpose.
type Cluster struct {
	t testing.TB
	h *proccluster.Cluster
}

var builds struct {
	once          sync.Once
	dir           string
	shoal, helper string
	err           error
}

// buildOnce builds shoal and shoal-qa once per test process.
func buildOnce() (shoal, helper string, err error) {
	builds.once.Do(func() {
		if builds.dir, builds.err = proccluster.BinDir(); builds.err != nil {
			return
		}
		builds.shoal = filepath.Join(builds.dir, "shoal")
		builds.helper = filepath.Join(builds.dir, "shoal-qa")
		ctx := context.Background()
		if builds.err = proccluster.BuildShoal(ctx, builds.shoal); builds.err != nil {
			return
		}
		builds.err = proccluster.BuildHelper(ctx, builds.helper)
	})
	return builds.shoal, builds.helper, builds.err
}

// NewCluster brings up a cluster for t and tears it down (leaving nothing)
// in t.Cleanup. It skips t when not root or a tool is missing.
func NewCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if err := proccluster.CheckPrereqs(); err != nil {
		t.Skipf("process-level cluster cannot run here: %v", err)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Out == nil {
		opts.Out = logWriter{t}
	}
	if opts.ShoalBin == "" || opts.HelperBin == "" {
		shoal, helper, err := buildOnce()
		if err != nil {
			t.Fatalf("build the cluster's binaries: %v", err)
		}
		if opts.ShoalBin == "" {
			opts.ShoalBin = shoal
		}
		if opts.HelperBin == "" {
			opts.HelperBin = helper
		}
	}
	h, err := proccluster.Up(context.Background(), opts)
	dir := opts.Dir
	t.Cleanup(func() {
		if t.Failed() && h != nil {
			dumpLogs(t, h)
		}
		if err := proccluster.Down(context.Background(), dir, logWriter{t}); err != nil {
			t.Errorf("cluster down: %v", err)
		}
		if h != nil {
			h.Close()
		}
	})
	if err != nil {
		t.Fatalf("cluster up: %v", err)
	}
	return &Cluster{t: t, h: h}
}

// dumpLogs logs the tail of every daemon log, for a failed test.
func dumpLogs(t testing.TB, h *proccluster.Cluster) {
	for _, n := range h.Nodes() {
		for _, d := range h.Daemons() {
			b, err := os.ReadFile(h.LogPath(n, d))
			if err != nil {
				continue
			}
			lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
			if len(lines) > 30 {
				lines = lines[len(lines)-30:]
			}
			t.Logf("--- %s %s (last %d lines of %s)\n%s", n, d, len(lines), h.LogPath(n, d), bytes.Join(lines, []byte("\n")))
		}
	}
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (c *Cluster) check(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) ctx() context.Context { return c.t.Context() }

// Nodes returns the node names, "node1" first.
func (c *Cluster) Nodes() []string { return c.h.Nodes() }

// Daemons returns the daemons each node runs, in start order.
func (c *Cluster) Daemons() []string { return c.h.Daemons() }

// Dir is the cluster directory.
func (c *Cluster) Dir() string { return c.h.Dir() }

// NodeDir is node's directory on the host; its run, lib and etc are the
// node's /run/shoal, /var/lib/shoal and /etc/shoal.
func (c *Cluster) NodeDir(node string) string { return c.h.NodeDir(node) }

// LogPath is the log file of node's daemon.
func (c *Cluster) LogPath(node, daemon string) string { return c.h.LogPath(node, daemon) }

// Addr returns node's static IPv4 and IPv6 backplane addresses (empty when
// netd assigns them).
func (c *Cluster) Addr(node string) (v4, v6 string) {
	c.t.Helper()
	n, err := c.h.Node(node)
	c.check(err)
	return n.IPv4, n.IPv6
}

// Status observes every node.
func (c *Cluster) Status() []NodeStatus {
	c.t.Helper()
	st, err := c.h.Status(c.ctx())
	c.check(err)
	return st
}

// Exec runs argv inside node (its network and mount namespaces) and
// returns the combined output.
func (c *Cluster) Exec(node string, argv ...string) (string, error) {
	return c.h.Output(c.ctx(), node, argv...)
}

// Kill SIGKILLs every daemon of node.
func (c *Cluster) Kill(node string) { c.t.Helper(); c.check(c.h.Kill(c.ctx(), node)) }

// Restart stops and starts node's daemons and waits until they are ready.
func (c *Cluster) Restart(node string) { c.t.Helper(); c.check(c.h.Restart(c.ctx(), node)) }

// Freeze SIGSTOPs every daemon of node.
func (c *Cluster) Freeze(node string) { c.t.Helper(); c.check(c.h.Freeze(c.ctx(), node)) }

// Thaw SIGCONTs every daemon of node.
func (c *Cluster) Thaw(node string) { c.t.Helper(); c.check(c.h.Thaw(c.ctx(), node)) }

// Cut pulls node's network cable.
func (c *Cluster) Cut(node string) { c.t.Helper(); c.check(c.h.Cut(c.ctx(), node)) }

// Heal plugs node's cable back in.
func (c *Cluster) Heal(node string) { c.t.Helper(); c.check(c.h.Heal(c.ctx(), node)) }

// Partition cuts every path between a node of sideA and one of sideB.
func (c *Cluster) Partition(sideA, sideB []string) {
	c.t.Helper()
	c.check(c.h.Partition(c.ctx(), sideA, sideB))
}

// HealPartition removes the partition.
func (c *Cluster) HealPartition() { c.t.Helper(); c.check(c.h.HealPartition(c.ctx())) }

// DiskFail makes node's disk ("disk1".."diskN") return EIO on every I/O.
func (c *Cluster) DiskFail(node, disk string) {
	c.t.Helper()
	c.check(c.h.DiskFail(c.ctx(), node, disk))
}

// DiskFull makes allocating writes on node's disk return ENOSPC.
func (c *Cluster) DiskFull(node, disk string) {
	c.t.Helper()
	c.check(c.h.DiskFull(c.ctx(), node, disk))
}

// DiskHeal makes node's disk work again.
func (c *Cluster) DiskHeal(node, disk string) {
	c.t.Helper()
	c.check(c.h.DiskHeal(c.ctx(), node, disk))
}

// DiskPath is where a node sees its disk: /var/lib/shoal/disks/DISK.
func DiskPath(disk string) string { return proccluster.DiskPath(disk) }

// AddNode plugs a new node into the running cluster and returns its name.
func (c *Cluster) AddNode() string {
	c.t.Helper()
	name, err := c.h.AddNode(c.ctx())
	c.check(err)
	return name
}

// String names the cluster for logs.
func (c *Cluster) String() string {
	return fmt.Sprintf("cluster %s (%d nodes) in %s", c.h.Tag(), len(c.h.Nodes()), c.h.Dir())
}
