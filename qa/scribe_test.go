//go:build qa

package qa_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/qa"
)

// Issue 9's scenario on real shoal daemons: `shoal scribe` on every node,
// a VSD created with `shoal vsd`, written and read with qemu-img/qemu-io
// through node1's NBD socket while a replica node is killed and
// restarted, then taken over by node3 so that node1 is a stale owner.

const scribeURI = "nbd+unix:///v1?socket=/run/shoal/scribe.sock"

// qemuIO runs qemu-io with cmds against v1 inside node and fails the test
// on an error or a pattern mismatch.
func qemuIO(t *testing.T, c *qa.Cluster, node string, cmds ...string) string {
	t.Helper()
	out, err := qemuIOErr(c, node, cmds...)
	if err != nil {
		t.Fatalf("%s: qemu-io %q: %v\n%s", node, cmds, err, out)
	}
	return out
}

func qemuIOErr(c *qa.Cluster, node string, cmds ...string) (string, error) {
	return qemuIOAt(c, node, scribeURI, cmds...)
}

// qemuIOAt runs qemu-io with cmds against uri inside node.
func qemuIOAt(c *qa.Cluster, node, uri string, cmds ...string) (string, error) {
	args := []string{"qemu-io", "-f", "raw"}
	for _, cmd := range cmds {
		args = append(args, "-c", cmd)
	}
	out, err := c.Exec(node, append(args, uri)...)
	if err == nil && (strings.Contains(out, "verification failed") || strings.Contains(out, "failed:")) {
		err = fmt.Errorf("qemu-io reported a failure")
	}
	return out, err
}

// region i of the pattern: 4 MiB at i*4 MiB, byte 0xa0+i (or another).
func writeRegion(i int, pattern byte) string {
	return fmt.Sprintf("write -P 0x%x %d 4M", pattern, i*4<<20)
}

func readRegion(i int, pattern byte) string {
	return fmt.Sprintf("read -P 0x%x %d 4M", pattern, i*4<<20)
}

type vsdInfoJSON struct {
	Size      int64  `json:"size"`
	Allocated int64  `json:"allocated"`
	Degraded  int    `json:"degraded_extents"`
	Owner     string `json:"owner"`
	Epoch     uint64 `json:"epoch"`
}

func vsdInfo(c *qa.Cluster, node, name string) (vsdInfoJSON, error) {
	out, err := c.Shoal(node, "vsd", "info", name, "--json")
	if err != nil {
		return vsdInfoJSON{}, fmt.Errorf("%s: vsd info: %w: %s", node, err, out)
	}
	var v vsdInfoJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return v, fmt.Errorf("vsd info --json: %w: %q", err, out)
	}
	return v, nil
}

func TestFastScribeReplicaKilledAndStaleOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("qa scenarios need root (network namespaces)")
	}
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	c := qa.NewCluster(t, qa.Options{Nodes: 3, Disks: 2, DiskSize: 2 << 30})
	c.WaitFor("nodes form one cluster", 3*time.Minute, c.OneCluster(c.Nodes()...))
	stateWait(t, "every scribe published its disks", time.Minute, func() (bool, string) {
		out, err := c.Shoal("node1", "state", "ls", "scribe/")
		if err != nil {
			return false, out
		}
		n := strings.Count(out, `"id"`)
		return n == 6, fmt.Sprintf("%d disks published: %s", n, out)
	})

	if out, err := c.Shoal("node1", "vsd", "create", "v1", "--size", "4G"); err != nil {
		t.Fatalf("vsd create: %v: %s", err, out)
	}
	stateWait(t, "qemu-img info shows 4 GiB on node1", 30*time.Second, func() (bool, string) {
		out, err := c.Exec("node1", "qemu-img", "info", "--output=json", scribeURI)
		if err != nil {
			return false, out
		}
		var info struct {
			VirtualSize int64 `json:"virtual-size"`
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			return false, out
		}
		return info.VirtualSize == 4<<30, out
	})

	// A holder keeps v1 open on node1 (idle for up to 10 min) so every
	// qemu-io below shares one open volume, as a VM's disk would.
	holder, err := c.Exec("node1", "sh", "-c", "qemu-io -f raw -c 'sleep 600000' '"+scribeURI+"' >/dev/null 2>&1 & echo $!")
	if err != nil {
		t.Fatalf("start the holder: %v: %s", err, holder)
	}
	holder = strings.TrimSpace(holder)
	t.Cleanup(func() { c.Exec("node1", "kill", holder) })
	stateWait(t, "node2 sees node1 owning v1", 30*time.Second, func() (bool, string) {
		v, err := vsdInfo(c, "node2", "v1")
		return err == nil && v.Owner != "", fmt.Sprintf("%+v %v", v, err)
	})

	if out, err := c.Shoal("node2", "vsd", "rm", "v1"); err == nil || !strings.Contains(out, "in use") {
		t.Fatalf("vsd rm of an open VSD: %v: %s", err, out)
	}

	patterns := map[int]byte{}
	var cmds []string
	for i := range 8 {
		patterns[i] = byte(0xa0 + i)
		cmds = append(cmds, writeRegion(i, patterns[i]))
	}
	qemuIO(t, c, "node1", append(cmds, "flush")...)
	verify := func(node string) {
		t.Helper()
		var cmds []string
		for i := range 12 {
			p, ok := patterns[i]
			if !ok {
				p = 0
			}
			cmds = append(cmds, readRegion(i, p))
		}
		qemuIO(t, c, node, cmds...)
	}
	verify("node1")

	// Kill node2 (every daemon). Every extent has a replica on node1
	// (the owner) and one on node2 or node3, so node2 holds about half.
	// Writes go on, degraded: they rewrite all 32 extents written so far
	// (some are node2's, but for one VSD ID in 2^32) and add new ones.
	c.Kill("node2")
	cmds = nil
	for i := range 8 {
		patterns[i] = byte(0xb0 + i)
		cmds = append(cmds, writeRegion(i, patterns[i]))
	}
	patterns[8], patterns[9] = 0xa8, 0xa9
	qemuIO(t, c, "node1", append(cmds, writeRegion(8, 0xa8), writeRegion(9, 0xa9), "flush")...)
	verify("node1")
	stateWait(t, "vsd info shows degraded extents", time.Minute, func() (bool, string) {
		v, err := vsdInfo(c, "node1", "v1")
		return err == nil && v.Degraded > 0, fmt.Sprintf("%+v %v", v, err)
	})
	out, _ := c.Shoal("node1", "vsd", "info", "v1")
	t.Logf("vsd info with node2 down:\n%s", out)

	c.Restart("node2")
	stateWait(t, "node2 back in the cluster", 2*time.Minute, func() (bool, string) { return stateFormed(c, c.Nodes()...) })
	patterns[10] = 0xaa
	qemuIO(t, c, "node1", writeRegion(10, 0xaa), "flush")
	verify("node1")

	// Cut node1 off: it fences itself and refuses I/O on v1; after the
	// heal it still holds v1's claim, so v1 resumes there.
	c.Partition([]string{"node1"}, []string{"node2", "node3"})
	c.WaitFor("node1 fenced", time.Minute, fenceIs(c, "node1", true, 3))
	if out, err := qemuIOErr(c, "node1", writeRegion(11, 0xcc)); err == nil {
		t.Fatalf("node1 wrote while fenced:\n%s", out)
	} else {
		t.Logf("write while fenced refused: %s", strings.TrimSpace(out))
	}
	c.HealPartition()
	c.WaitFor("node1 unfenced", time.Minute, fenceIs(c, "node1", false, 3))
	stateWait(t, "every node sees every other alive again", 2*time.Minute, func() (bool, string) { return stateFormed(c, c.Nodes()...) })
	stateWait(t, "v1 writable on node1 again", time.Minute, func() (bool, string) {
		out, err := qemuIOErr(c, "node1", writeRegion(11, 0xab), "flush")
		return err == nil, out
	})
	patterns[11] = 0xab
	verify("node1")

	// node3 cannot open v1 by accident while node1 has it open; it takes
	// it over explicitly (claims the next epoch): everything reads back
	// there, and node1, still holding the old epoch, cannot write.
	if out, err := c.Exec("node3", "qemu-img", "info", scribeURI); err == nil || !strings.Contains(out, "is open on node") {
		t.Fatalf("qemu-img info on node3 while node1 has v1 open: %v: %s", err, out)
	}
	if out, err := c.Shoal("node3", "claim", "take", "vsd/v1"); err != nil {
		t.Fatalf("claim take vsd/v1 on node3: %v: %s", err, out)
	}
	verify("node3")
	v, err := vsdInfo(c, "node1", "v1")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after node3 opened v1: %+v", v)
	// Writes are write-back: node1 cannot know it is stale before a
	// replica refuses the write, so its first write is acknowledged, the
	// flush fails (qemu-io exits 1) and every write after that gets EPERM
	// at once. The data never lands (verify below).
	out, err = qemuIOErr(c, "node1", "write -P 0xee 0 64k", "flush")
	if err == nil {
		t.Fatalf("stale owner node1 wrote and flushed:\n%s", out)
	}
	out, err = qemuIOErr(c, "node1", "write -P 0xee 0 64k")
	if err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Fatalf("stale owner node1 wrote after its flush failed (or failed another way): %v\n%s", err, out)
	}
	t.Logf("stale owner refused: %s", strings.TrimSpace(out))
	verify("node3")

	// Failover: v2's owner, node1, holds a replica of every extent (data
	// locality) and dies; node2 opens v2 at once (a VM restarted there)
	// and reads the whole pattern: the surviving copies are current, as
	// no drop beyond them was registered on a majority.
	if out, err := c.Shoal("node1", "vsd", "create", "v2", "--size", "1G"); err != nil {
		t.Fatalf("vsd create v2: %v: %s", err, out)
	}
	uri2 := strings.Replace(scribeURI, "/v1?", "/v2?", 1)
	holder2, err := c.Exec("node1", "sh", "-c", "qemu-io -f raw -c 'sleep 600000' '"+uri2+"' >/dev/null 2>&1 & echo $!")
	if err != nil {
		t.Fatalf("start the v2 holder: %v: %s", err, holder2)
	}
	t.Cleanup(func() { c.Exec("node1", "kill", strings.TrimSpace(holder2)) })
	var writes, reads []string
	for i := range 8 {
		writes = append(writes, writeRegion(i, byte(0xc0+i)))
		reads = append(reads, readRegion(i, byte(0xc0+i)))
	}
	if out, err := qemuIOAt(c, "node1", uri2, append(writes, "flush")...); err != nil {
		t.Fatalf("write v2 on node1: %v\n%s", err, out)
	}
	stateWait(t, "node3 sees node1 owning v2", 30*time.Second, func() (bool, string) {
		v, err := vsdInfo(c, "node3", "v2")
		return err == nil && v.Owner != "", fmt.Sprintf("%+v %v", v, err)
	})
	c.Kill("node1")
	start := time.Now()
	stateWait(t, "node2 reads all of v2 after its owner node1 died", 2*time.Minute, func() (bool, string) {
		out, err := qemuIOAt(c, "node2", uri2, reads...)
		return err == nil, out
	})
	t.Logf("v2 read back whole on node2 %v after node1 was killed", time.Since(start).Round(100*time.Millisecond))
	if out, err := qemuIOAt(c, "node2", uri2, "write -P 0xdd 0 1M", "read -P 0xdd 0 1M", "flush"); err != nil {
		t.Fatalf("write v2 on node2 after failover: %v\n%s", err, out)
	}
	v2, err := vsdInfo(c, "node2", "v2")
	t.Logf("v2 after failover: %+v %v", v2, err)
}
