//go:build qa

package qa_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/testguest"
	"github.com/shoal-hci/shoal/qa"
)

// Issue 10's first scenarios on real shoal daemons: a VM created with the
// CLI runs on exactly one node and its agent heartbeats; its node is
// killed and it runs again elsewhere, never on two nodes at once.

// vmView is the part of `shoal vm info --json` the scenarios read.
type vmView struct {
	ID        string `json:"id"`
	Node      string `json:"node"`
	Epoch     uint64 `json:"epoch"`
	Status    string `json:"status"`
	AgentSeen string `json:"agent_seen"`
}

func vmInfo(c *qa.Cluster, node, name string) (vmView, error) {
	out, err := c.Shoal(node, "vm", "info", name, "--json")
	if err != nil {
		return vmView{}, err
	}
	var v vmView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return vmView{}, fmt.Errorf("%s: vm info --json: %w: %q", node, err, out)
	}
	return v, nil
}

// qemuPIDs lists the QEMU processes whose command line names the VM ID.
// The harness's nodes share the host's PID namespace, so this counts the
// VM's processes on every node at once.
func qemuPIDs(id string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && strings.Contains(filepath.Base(args[0]), "qemu-system") && strings.Contains(string(b), id) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// qemuCounter samples qemuPIDs every 100 ms and keeps the highest count.
type qemuCounter struct {
	mu   sync.Mutex
	max  int
	when time.Time
	stop context.CancelFunc
	done chan struct{}
}

func countQEMU(id string) *qemuCounter {
	ctx, cancel := context.WithCancel(context.Background())
	q := &qemuCounter{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(q.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if n := len(qemuPIDs(id)); n > 0 {
				q.mu.Lock()
				if n > q.max {
					q.max, q.when = n, time.Now()
				}
				q.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return q
}

func (q *qemuCounter) Max() (int, time.Time) {
	q.stop()
	<-q.done
	return q.max, q.when
}

// nodeByID maps node IDs to harness node names.
func nodeByID(t *testing.T, c *qa.Cluster) map[string]string {
	m := map[string]string{}
	for _, n := range c.Nodes() {
		st, err := c.PeerStatus(n)
		if err != nil {
			t.Fatal(err)
		}
		m[st.Self.ID] = n
	}
	return m
}

func vmScenarioPrereqs(t *testing.T) testguest.Guest {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("qa scenarios need root (network namespaces)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (make deps installs qemu-system-x86)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	// Not under t.TempDir: the nodes see the host's /tmp, but keep the
	// path short and plain.
	g, err := testguest.Build(ctx, testguest.Options{Dir: t.TempDir()})
	if errors.Is(err, testguest.ErrNoPackage) {
		t.Skipf("no test guest: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// runVM brings up a 3-node cluster, creates vm web1 with the test guest
// and waits until it runs with agent heartbeats. It returns the cluster,
// the node IDs by harness name, the VM and a counter of its QEMU
// processes started right after create.
func runVM(t *testing.T) (*qa.Cluster, map[string]string, vmView, *qemuCounter) {
	g := vmScenarioPrereqs(t)
	c := qa.NewCluster(t, qa.Options{Nodes: 3, Disks: -1})
	nodes := c.Nodes()
	c.WaitFor("one cluster", 60*time.Second, c.OneCluster(nodes...))
	byID := nodeByID(t, c)

	out, err := c.Shoal(nodes[0], "vm", "create", "web1", "--cpus", "1", "--memory", "128M", "--net", "default",
		"--kernel", g.Kernel, "--initrd", g.Initrd, "--append", g.Append)
	if err != nil {
		t.Fatalf("vm create: %v: %s", err, out)
	}
	v, err := vmInfo(c, nodes[0], "web1")
	if err != nil {
		t.Fatal(err)
	}
	id := v.ID
	t.Cleanup(func() { // before the cluster goes: no QEMU survives the test
		for _, pid := range qemuPIDs(id) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	count := countQEMU(id)
	c.WaitFor("vm web1 running with agent heartbeats", 150*time.Second, func() (bool, string) {
		if v, err = vmInfo(c, nodes[1], "web1"); err != nil {
			return false, err.Error()
		}
		return v.Status == "running" && v.AgentSeen != "" && byID[v.Node] != "", fmt.Sprintf("%+v", v)
	})
	if n := len(qemuPIDs(id)); n != 1 {
		t.Fatalf("%d QEMU processes for vm web1, want 1", n)
	}
	t.Logf("vm web1 runs on %s at epoch %d", byID[v.Node], v.Epoch)
	return c, byID, v, count
}

// runsElsewhere is a WaitFor condition: asked on node, web1 runs with
// fresh agent heartbeats on a node other than first's, at a higher epoch.
func runsElsewhere(c *qa.Cluster, byID map[string]string, node string, first vmView, since time.Time) func() (bool, string) {
	return func() (bool, string) {
		v, err := vmInfo(c, node, "web1")
		if err != nil {
			return false, err.Error()
		}
		seen, _ := time.Parse(time.RFC3339Nano, v.AgentSeen)
		ok := v.Status == "running" && v.Node != first.Node && byID[v.Node] != "" && v.Epoch > first.Epoch && seen.After(since)
		return ok, fmt.Sprintf("%+v", v)
	}
}

func otherNode(nodes []string, not string) string {
	for _, n := range nodes {
		if n != not {
			return n
		}
	}
	return ""
}

// TestFastVMFailover: `shoal vm create` with the test guest; the VM runs
// on one node and its agent heartbeats; that node is killed (daemons and
// the VM's QEMU, as a power cut would); the VM runs again on another
// node with a higher epoch and heartbeats there. Throughout, at most one
// QEMU process for the VM exists across the cluster.
func TestFastVMFailover(t *testing.T) {
	c, byID, first, count := runVM(t)
	victim := byID[first.Node]

	// A power cut: the node's daemons and its QEMU die together.
	pidFile := filepath.Join(c.NodeDir(victim), "run", "vm", first.ID, "pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("read the VM's pid on %s: %v", victim, err)
	}
	qpid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %q", pidFile, b)
	}
	killed := time.Now()
	c.Kill(victim)
	if err := syscall.Kill(qpid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill QEMU pid %d on %s: %v", qpid, victim, err)
	}
	c.WaitFor("vm web1 running on another node with agent heartbeats", 150*time.Second,
		runsElsewhere(c, byID, otherNode(c.Nodes(), victim), first, killed))
	if max, when := count.Max(); max > 1 {
		t.Errorf("%d QEMU processes for vm web1 at once (at %v): it ran on two nodes", max, when.Format(time.RFC3339Nano))
	}
	if n := len(qemuPIDs(first.ID)); n != 1 {
		t.Errorf("%d QEMU processes for vm web1 after failover, want 1", n)
	}
	t.Logf("failover: node kill to agent heartbeat on the new node: %v", time.Since(killed).Round(10*time.Millisecond))
}

// TestVMPartition: the VM's node is cut off from the other two. It fences
// itself and pauses the VM; the majority runs it on another node at a
// higher epoch. After the heal the old node sees the claim moved on and
// kills its paused copy: one QEMU again. (Not TestFast: ~2 min.)
func TestVMPartition(t *testing.T) {
	c, byID, first, count := runVM(t)
	count.Max()
	victim := byID[first.Node]
	var rest []string
	for _, n := range c.Nodes() {
		if n != victim {
			rest = append(rest, n)
		}
	}
	cut := time.Now()
	c.Partition([]string{victim}, rest)
	c.WaitFor("the minority pauses web1", 60*time.Second, func() (bool, string) {
		v, err := vmInfo(c, victim, "web1")
		if err != nil {
			return false, err.Error()
		}
		return v.Status == "paused" && v.Node == first.Node, fmt.Sprintf("%+v", v)
	})
	c.WaitFor("the majority runs web1", 150*time.Second, runsElsewhere(c, byID, rest[0], first, cut))
	if n := len(qemuPIDs(first.ID)); n != 2 {
		log, _ := os.ReadFile(c.LogPath(victim, "hypervisor"))
		t.Errorf("%d QEMU processes for web1 during the partition, want 2 (paused on %s, running on the majority); %s's hypervisor log:\n%s", n, victim, victim, log)
	}
	c.HealPartition()
	c.WaitFor("one QEMU for web1 after the heal", 60*time.Second, func() (bool, string) {
		n := len(qemuPIDs(first.ID))
		return n == 1, fmt.Sprintf("%d QEMU processes", n)
	})
	c.WaitFor("every node sees web1 running on the majority's node", 60*time.Second,
		runsElsewhere(c, byID, victim, first, cut))
}
