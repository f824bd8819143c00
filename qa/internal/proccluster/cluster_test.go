package proccluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/qa/internal/netns"
)

// Binaries built once by TestMain: the STAND-IN shoal (testdata/standin,
// daemons peer and scribe that only notify READY and echo over TCP) and
// shoal-qa, which serves the FUSE disks.
var standinBin, helperBin, skipReason string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if err := CheckPrereqs(); err != nil {
			skipReason = err.Error()
			return m.Run()
		}
		dir, err := BinDir()
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		standinBin = filepath.Join(dir, "shoal-standin")
		helperBin = filepath.Join(dir, "shoal-qa")
		ctx := context.Background()
		if err := buildPkg(ctx, "./qa/internal/proccluster/testdata/standin", standinBin); err != nil {
			panic(err)
		}
		if err := BuildHelper(ctx, helperBin); err != nil {
			panic(err)
		}
		return m.Run()
	}())
}

func needCluster(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skipf("cannot run a cluster here: %s", skipReason)
	}
}

// up brings up a stand-in cluster in a fresh directory; cleanup runs Down
// and checks that nothing is left.
func up(t *testing.T, nodes int) *Cluster { return upDisks(t, nodes, DiskModeFUSE) }

// upDisks is up with disks in mode and env added to the daemons'.
func upDisks(t *testing.T, nodes int, mode DiskMode, env ...string) *Cluster {
	t.Helper()
	needCluster(t)
	dir := t.TempDir()
	ctx := context.Background()
	c, err := Up(ctx, Options{
		Nodes: nodes, Dir: dir, ShoalBin: standinBin, HelperBin: helperBin,
		Disks: 2, DiskSize: 64 << 20, DiskMode: mode, DaemonEnv: env, ReadyTimeout: 20 * time.Second, Out: tlogWriter{t},
	})
	t.Cleanup(func() {
		tag, _ := TagFor(dir)
		if err := Down(ctx, dir, tlogWriter{t}); err != nil {
			t.Errorf("Down: %v", err)
		}
		if c != nil {
			c.Close()
		}
		checkNothingLeft(t, dir, tag)
	})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return c
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// checkNothingLeft fails t if a namespace, mount, process or notify socket
// of the cluster in dir remains.
func checkNothingLeft(t *testing.T, dir, tag string) {
	t.Helper()
	ctx := context.Background()
	if names, err := netns.List(ctx, netns.Prefix+tag+"-"); err != nil || len(names) > 0 {
		t.Errorf("namespaces left: %v (%v)", names, err)
	}
	for _, fuse := range []bool{false, true} {
		if mps := ourMounts(dir, fuse); len(mps) > 0 {
			t.Errorf("mounts left: %v", mps)
		}
	}
	if procs := taggedProcs(tag); len(procs) > 0 {
		t.Errorf("processes left: %v", procs)
	}
	if socks, _ := filepath.Glob(filepath.Join(os.TempDir(), "shq-"+tag+"-notify-*")); len(socks) > 0 {
		t.Errorf("notify sockets left: %v", socks)
	}
	backs, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range backs {
		if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(b), dir+"/") {
			t.Errorf("loop device left: %s backed by %s", f, strings.TrimSpace(string(b)))
		}
	}
}

// TestFastDiskModes brings up one node with file and loop disks: inside the
// node the disks are the image files or block devices, faults are refused,
// and Down detaches the loop devices (checked by up's cleanup). The
// daemons also get Options.DaemonEnv.
func TestFastDiskModes(t *testing.T) {
	for _, tt := range []struct {
		mode DiskMode
		kind string // stat -L -c %F inside the node
	}{
		{DiskModeFile, "regular file"},
		{DiskModeLoop, "block special file"},
	} {
		t.Run(string(tt.mode), func(t *testing.T) {
			if tt.mode == DiskModeLoop {
				if _, err := exec.LookPath("losetup"); err != nil {
					t.Skipf("no losetup for loop disks: %v", err)
				}
				if _, err := os.Stat("/dev/loop-control"); err != nil {
					t.Skipf("no loop devices here: %v", err)
				}
			}
			c := upDisks(t, 1, tt.mode, "SHOAL_QA_TEST_ENV=disks-"+string(tt.mode))
			ctx := context.Background()
			n := c.Nodes()[0]
			rec, err := readRecord(c.pidPath(n, "scribe"))
			if err != nil {
				t.Fatal(err)
			}
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", rec.Pid))
			if want := "SHOAL_QA_TEST_ENV=disks-" + string(tt.mode); err != nil || !strings.Contains(string(env), want) {
				t.Errorf("scribe's environment lacks %s (%v): %q", want, err, env)
			}
			for _, d := range []string{"disk1", "disk2"} {
				out, err := c.Output(ctx, n, "stat", "-L", "-c", "%F %s", DiskPath(d))
				if want := fmt.Sprintf("%s %d", tt.kind, 64<<20); err != nil || (tt.mode == DiskModeFile && strings.TrimSpace(out) != want) || !strings.HasPrefix(out, tt.kind) {
					t.Errorf("%s inside the node: %q, %v; want %q", DiskPath(d), out, err, want)
				}
			}
			if err := c.DiskFail(ctx, n, "disk1"); !errors.Is(err, ErrNoFaults) {
				t.Errorf("DiskFail on %s disks: %v, want ErrNoFaults", tt.mode, err)
			}
			st, err := c.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := "2 " + string(tt.mode) + " disks"; st[0].Disks != want {
				t.Errorf("status disks %q, want %q", st[0].Disks, want)
			}
			if c.DiskMode() != tt.mode {
				t.Errorf("DiskMode() = %q, want %q", c.DiskMode(), tt.mode)
			}
		})
	}
}

func TestFastUpDownLeavesNothing(t *testing.T) {
	c := up(t, 2)
	ctx := context.Background()
	if got, want := c.Daemons(), []string{"peer", "scribe"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("daemons %v, want %v", got, want)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		t.Logf("%+v", s)
		for d, state := range s.Daemons {
			if state != "running" {
				t.Errorf("%s: %s is %s", s.Name, d, state)
			}
		}
		if s.Disks != "disk1=ok disk2=ok" {
			t.Errorf("%s: disks %q", s.Name, s.Disks)
		}
	}
	// Inside a node, /run/shoal is the node's own directory.
	for _, n := range c.Nodes() {
		if _, err := os.Stat(filepath.Join(c.NodeDir(n), "run", "standin-peer.pid")); err != nil {
			t.Errorf("%s: the stand-in's /run/shoal file is not in the node's dir: %v", n, err)
		}
		out, err := c.Output(ctx, n, standinBin, "status")
		if err != nil || !strings.Contains(out, "standin-scribe.pid") {
			t.Errorf("%s: status inside the node: %q, %v", n, out, err)
		}
		out, err = c.Output(ctx, n, "ip", "-4", "addr", "show", "dev", "eth0")
		node, _ := c.Node(n)
		if err != nil || !strings.Contains(out, node.IPv4+"/24") {
			t.Errorf("%s: ip addr inside the node: %q, %v; want %s", n, out, err, node.IPv4)
		}
	}
	if _, err := Up(ctx, Options{Dir: c.Dir(), ShoalBin: standinBin, HelperBin: helperBin}); !errors.Is(err, ErrAlreadyUp) {
		t.Errorf("second Up in the same dir: %v, want ErrAlreadyUp", err)
	}
	// A crash loses the state file: Down must still find everything.
	if err := os.WriteFile(statePath(c.Dir()), []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(c.Dir(), nil, nil); err == nil {
		t.Error("Open with a corrupt state file succeeded")
	}
}

// fixture is one stand-in cluster of three nodes shared by the fault tests.
type fixture struct {
	t   *testing.T
	c   *Cluster
	ctx context.Context
}

// dial reports whether from reaches node to's stand-in peer over TCP.
func (f fixture) dial(from, to string) bool {
	f.t.Helper()
	n, err := f.c.Node(to)
	if err != nil {
		f.t.Fatal(err)
	}
	out, err := f.c.Output(f.ctx, from, standinBin, "dial", n.IPv4+":7946")
	if err == nil && !strings.HasPrefix(out, to+" peer hello") {
		f.t.Errorf("dial %s from %s: reply %q", to, from, out)
	}
	return err == nil
}

// ping reports whether from reaches addr.
func (f fixture) ping(from, addr string) bool {
	_, err := f.c.Output(f.ctx, from, "ping", "-c1", "-W1", addr)
	return err == nil
}

func (f fixture) addr(node string, v6 bool) string {
	n, err := f.c.Node(node)
	if err != nil {
		f.t.Fatal(err)
	}
	if v6 {
		return n.IPv6
	}
	return n.IPv4
}

func (f fixture) daemonState(node, daemon string) string {
	st, err := f.c.Status(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, s := range st {
		if s.Name == node {
			return s.Daemons[daemon]
		}
	}
	f.t.Fatalf("no node %s in status", node)
	return ""
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestFastFaults(t *testing.T) {
	c := up(t, 3)
	f := fixture{t: t, c: c, ctx: context.Background()}
	ctx := f.ctx
	for _, a := range []string{"node1", "node2", "node3"} {
		for _, b := range []string{"node1", "node2", "node3"} {
			if !f.dial(a, b) {
				t.Fatalf("before any fault, %s cannot reach %s", a, b)
			}
		}
	}

	t.Run("kill restart", func(t *testing.T) {
		f.t = t
		must(t, c.Kill(ctx, "node2"))
		if s := f.daemonState("node2", "peer"); s != "dead" {
			t.Errorf("after kill, peer is %s", s)
		}
		if f.dial("node1", "node2") {
			t.Error("node1 reaches node2's peer after kill")
		}
		if !f.ping("node1", f.addr("node2", false)) {
			t.Error("kill took node2's network down too")
		}
		must(t, c.Restart(ctx, "node2"))
		if !f.dial("node1", "node2") {
			t.Error("node1 cannot reach node2's peer after restart")
		}
		t.Log("killed and restarted node2; peer unreachable in between, reachable after")
	})

	t.Run("freeze thaw", func(t *testing.T) {
		f.t = t
		must(t, c.Freeze(ctx, "node3"))
		if s := f.daemonState("node3", "scribe"); s != "frozen" {
			t.Errorf("after freeze, scribe is %s", s)
		}
		if f.dial("node1", "node3") {
			t.Error("a frozen peer answered")
		}
		must(t, c.Thaw(ctx, "node3"))
		if !f.dial("node1", "node3") {
			t.Error("node3's peer does not answer after thaw")
		}
	})

	t.Run("cut heal", func(t *testing.T) {
		f.t = t
		must(t, c.Cut(ctx, "node2"))
		if f.ping("node1", f.addr("node2", false)) || f.ping("node2", SwitchIPv4) {
			t.Error("node2 reachable with its cable cut")
		}
		must(t, c.Heal(ctx, "node2"))
		if !f.ping("node1", f.addr("node2", false)) || !f.dial("node1", "node2") {
			t.Error("node2 unreachable after heal")
		}
	})

	t.Run("partition heal", func(t *testing.T) {
		f.t = t
		must(t, c.Partition(ctx, []string{"node1"}, []string{"node2", "node3"}))
		for _, other := range []string{"node2", "node3"} {
			for _, v6 := range []bool{false, true} {
				if f.ping("node1", f.addr(other, v6)) {
					t.Errorf("node1 pings %s across the partition", f.addr(other, v6))
				}
				if f.ping(other, f.addr("node1", v6)) {
					t.Errorf("%s pings node1 across the partition", other)
				}
			}
			if f.dial(other, "node1") {
				t.Errorf("%s reaches node1 over TCP across the partition", other)
			}
		}
		if !f.dial("node2", "node3") || !f.ping("node3", f.addr("node2", true)) {
			t.Error("node2 and node3, on the same side, cannot talk")
		}
		if !f.ping("node1", SwitchIPv4) {
			t.Error("the partition cut node1 from the switch too")
		}
		must(t, c.HealPartition(ctx))
		if !f.dial("node2", "node1") || !f.dial("node1", "node3") {
			t.Error("no connectivity after heal")
		}
	})

	t.Run("disk fail full heal", func(t *testing.T) {
		f.t = t
		disk := DiskPath("disk2")
		io := func(op string) string {
			out, err := c.Output(ctx, "node1", standinBin, "disk", disk, op)
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(out)
		}
		if got := io("overwrite"); got != "ok" {
			t.Fatalf("write to a healthy disk: %s", got)
		}
		must(t, c.DiskFail(ctx, "node1", "disk2"))
		for _, op := range []string{"read", "overwrite", "allocate"} {
			if got := io(op); !strings.Contains(got, "input/output error") {
				t.Errorf("%s on a failed disk: %q, want EIO", op, got)
			}
		}
		must(t, c.DiskFull(ctx, "node1", "disk2"))
		if got := io("allocate"); !strings.Contains(got, "no space left") {
			t.Errorf("allocating write on a full disk: %q, want ENOSPC", got)
		}
		if got := io("overwrite"); got != "ok" {
			t.Errorf("overwrite on a full disk: %q, want ok", got)
		}
		must(t, c.DiskHeal(ctx, "node1", "disk2"))
		for _, op := range []string{"read", "allocate"} {
			if got := io(op); got != "ok" {
				t.Errorf("%s after heal: %q", op, got)
			}
		}
		out, err := c.Output(ctx, "node2", standinBin, "disk", disk, "read")
		if err != nil || strings.TrimSpace(out) != "ok" {
			t.Errorf("node2's disk2 affected by node1's fault: %q, %v", out, err)
		}
	})

	t.Run("add node", func(t *testing.T) {
		f.t = t
		name, err := c.AddNode(ctx)
		must(t, err)
		if name != "node4" {
			t.Errorf("new node is %s, want node4", name)
		}
		if !f.dial("node1", name) || !f.dial(name, "node3") || !f.ping(name, f.addr("node2", true)) {
			t.Errorf("%s has no connectivity", name)
		}
		// A second process (the CLI) sees the new node.
		c2, err := Open(c.Dir(), nil, nil)
		must(t, err)
		if got := fmt.Sprint(c2.Nodes()); got != "[node1 node2 node3 node4]" {
			t.Errorf("Open sees nodes %s", got)
		}
	})

	t.Run("not ready", func(t *testing.T) {
		f.t = t
		c.readyTO = 2 * time.Second
		marker := filepath.Join(c.NodeDir("node3"), "etc", "standin-never-ready")
		must(t, os.WriteFile(marker, nil, 0o644))
		err := c.Restart(ctx, "node3")
		if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), c.LogPath("node3", "peer")) {
			t.Errorf("restart of a daemon that never gets ready: %v, want ErrNotReady naming its log", err)
		}
		must(t, os.Remove(marker))
		c.readyTO = 20 * time.Second
		must(t, c.Restart(ctx, "node3"))
	})

	t.Run("dhcp", func(t *testing.T) {
		f.t = t
		out, err := c.Output(ctx, "node2", standinBin, "dhcp")
		if err != nil || !strings.HasPrefix(out, "10.88.0.") {
			t.Fatalf("DHCPDISCOVER from node2: %q, %v; want an offer in 10.88.0.0/24", out, err)
		}
		t.Logf("dnsmasq offered node2 %s", strings.TrimSpace(out))
	})

	t.Run("bad input", func(t *testing.T) {
		f.t = t
		if err := c.Kill(ctx, "node9"); !errors.Is(err, ErrNoSuchNode) {
			t.Errorf("kill node9: %v, want ErrNoSuchNode", err)
		}
		if err := c.Partition(ctx, []string{"node1"}, []string{"node1"}); err == nil {
			t.Error("partition with a node on both sides succeeded")
		}
		if err := c.DiskFail(ctx, "node1", "disk7"); err == nil {
			t.Error("disk-fail of a missing disk succeeded")
		}
	})
}

func TestPrereqsNamePackages(t *testing.T) {
	err := CheckPrereqs()
	if err != nil && !errors.Is(err, ErrNotRoot) && !strings.Contains(err.Error(), "apt-get install") {
		t.Errorf("prerequisite error names no package: %v", err)
	}
}
