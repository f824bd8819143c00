//go:build qa

package qa_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-hci/shoal/qa"
)

// standinShoal builds the harness's STAND-IN shoal binary (daemons peer
// and scribe that only report READY and echo over TCP).
func standinShoal(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "shoal-standin")
	out, err := exec.Command("go", "build", "-o", bin, "./internal/proccluster/testdata/standin").CombinedOutput()
	if err != nil {
		t.Fatalf("build the stand-in: %v\n%s", err, out)
	}
	return bin
}

// TestFastClusterAPI drives the scenario API against stand-in daemons.
func TestFastClusterAPI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bin := standinShoal(t)
	c := qa.NewCluster(t, qa.Options{Nodes: 2, ShoalBin: bin, Disks: 1, DiskSize: 16 << 20})
	t.Log(c)
	v4, _ := c.Addr("node2")
	dial := func(from string) error {
		_, err := c.Exec(from, bin, "dial", v4+":7946")
		return err
	}
	if err := dial("node1"); err != nil {
		t.Fatalf("node1 cannot reach node2's peer: %v", err)
	}
	c.Kill("node2")
	if dial("node1") == nil {
		t.Error("node2's peer answers after Kill")
	}
	c.Restart("node2")
	if err := dial("node1"); err != nil {
		t.Errorf("node2's peer does not answer after Restart: %v", err)
	}
	c.Partition([]string{"node1"}, []string{"node2"})
	if dial("node1") == nil {
		t.Error("node2 reachable across the partition")
	}
	c.HealPartition()
	if err := dial("node1"); err != nil {
		t.Errorf("node2 unreachable after heal: %v", err)
	}
	c.DiskFail("node1", "disk1")
	out, err := c.Exec("node1", bin, "disk", qa.DiskPath("disk1"), "read")
	if err != nil || !strings.Contains(out, "input/output error") {
		t.Errorf("read from a failed disk: %q, %v; want EIO", out, err)
	}
	t.Logf("node1 read from failed disk1: %s", strings.TrimSpace(out))
}

// TestFastRealShoalNetwork brings up three nodes with the real shoal
// binary (built from this tree; it starts whichever daemons exist) and
// checks the network a scenario stands on.
func TestFastRealShoalNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	c := qa.NewCluster(t, qa.Options{Nodes: 3, Disks: 1, DiskSize: 16 << 20})
	t.Logf("%s running daemons %v", c, c.Daemons())
	ping := func(from, addr string) bool {
		_, err := c.Exec(from, "ping", "-c1", "-W1", addr)
		return err == nil
	}
	v4, v6 := c.Addr("node1")
	if v4 == "" {
		t.Skip("netd assigns addresses: this check is for static ones")
	}
	out, err := c.Exec("node1", "ip", "addr", "show", "dev", "eth0")
	if err != nil || !strings.Contains(out, v4+"/24") || !strings.Contains(out, v6+"/64") {
		t.Errorf("node1's eth0: %q, %v; want %s and %s", out, err, v4, v6)
	}
	for _, n := range []string{"node2", "node3"} {
		a4, a6 := c.Addr(n)
		if !ping("node1", a4) || !ping("node1", a6) {
			t.Errorf("node1 cannot ping %s", n)
		}
	}
	c.Partition([]string{"node1"}, []string{"node2", "node3"})
	n2, _ := c.Addr("node2")
	n3, _ := c.Addr("node3")
	if ping("node1", n2) || !ping("node2", n3) {
		t.Error("partition node1 / node2,node3 does not hold")
	}
	c.HealPartition()
	if !ping("node1", n2) {
		t.Error("no path after heal")
	}
}
