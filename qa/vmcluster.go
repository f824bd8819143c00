package qa

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/qa/internal/vmcluster"
)

// VMOptions configures NewVMCluster. Zero values: 3 nodes, an image built
// once per test process through `make image`'s cached path, 2 data disks
// of 8 GiB, 1024 MiB each, a fresh directory, no API forward.
type VMOptions struct {
	Nodes     int
	Image     string // a built image; "" builds one (BuildImage)
	DataDisks int
	MemMB     int
	Dir       string
}

// ExecResult is what a command run in a VM returned.
type ExecResult = vmcluster.ExecResult

// VMCluster is an image-level cluster bound to a test: every method fails
// the test on error, except Exec.
type VMCluster struct {
	t testing.TB
	c *vmcluster.Cluster
}

var imageBuild struct {
	once  sync.Once
	dir   string
	built vmcluster.Built
	err   error
}

// BuildImage builds the appliance image once per test process (cold: ~4
// minutes the first time on a machine; warm: seconds) and returns it. It
// skips t when the image cannot be built here.
func BuildImage(t testing.TB) vmcluster.Built {
	t.Helper()
	skipUnlessImageCanRun(t)
	imageBuild.once.Do(func() {
		// $TMPDIR/shv-image-PID; those of finished processes are removed.
		old, _ := filepath.Glob(filepath.Join(os.TempDir(), "shv-image-*"))
		for _, d := range old {
			var pid int
			if _, err := fmt.Sscanf(filepath.Base(d), "shv-image-%d", &pid); err == nil && pid != os.Getpid() {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
					os.RemoveAll(d)
				}
			}
		}
		imageBuild.dir = filepath.Join(os.TempDir(), fmt.Sprintf("shv-image-%d", os.Getpid()))
		imageBuild.built, imageBuild.err = vmcluster.BuildImage(context.Background(), imageBuild.dir)
	})
	if imageBuild.err != nil {
		t.Fatalf("build the image: %v", imageBuild.err)
	}
	return imageBuild.built
}

func skipUnlessImageCanRun(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("image-level cluster needs root (image build, network namespace, tap)")
	}
	if os.Getenv("SHOAL_SKIP_IMAGE") != "" {
		t.Skip("SHOAL_SKIP_IMAGE is set")
	}
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok && time.Until(dl) < 10*time.Minute {
			t.Skipf("an image-level cluster needs minutes under TCG; the test deadline is in %v (run with -timeout 40m)", time.Until(dl).Round(time.Second))
		}
	}
	for _, f := range []string{"/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-img", "/usr/share/OVMF/OVMF_CODE_4M.fd",
		"/usr/sbin/debootstrap", "/usr/bin/mksquashfs", "/usr/sbin/dnsmasq", "/dev/net/tun"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("image-level cluster cannot run here: %s is missing (make deps)", f)
		}
	}
}

// NewVMCluster boots an image-level cluster for t and removes it in
// t.Cleanup (printing the end of every console when t failed).
func NewVMCluster(t testing.TB, opts VMOptions) *VMCluster {
	t.Helper()
	skipUnlessImageCanRun(t)
	if opts.Image == "" {
		opts.Image = BuildImage(t).Image
	}
	if opts.Dir == "" {
		// Short: QEMU's sockets live in it.
		d, err := os.MkdirTemp("", "shv")
		if err != nil {
			t.Fatal(err)
		}
		opts.Dir = d
	}
	_, helper, err := buildOnce()
	if err != nil {
		t.Fatalf("build shoal-qa: %v", err)
	}
	c, err := vmcluster.Up(context.Background(), vmcluster.Options{
		Dir: opts.Dir, Image: opts.Image, Nodes: opts.Nodes, DataDisks: opts.DataDisks, MemMB: opts.MemMB,
		APIPort: -1, QABin: helper, Out: logWriter{t}})
	dir := opts.Dir
	t.Cleanup(func() {
		if t.Failed() && c != nil {
			for _, n := range c.Nodes() {
				s, _ := c.Console(n, 40)
				t.Logf("--- %s console (last 40 lines of %s)\n%s", n, c.ConsolePath(n), s)
			}
		}
		if err := vmcluster.Down(context.Background(), dir, nil); err != nil {
			t.Errorf("vm cluster down: %v", err)
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	if err != nil {
		t.Fatalf("vm cluster up: %v", err)
	}
	t.Logf("vm cluster: %d nodes under %s in %s", len(c.Nodes()), c.Accel(), filepath.Clean(dir))
	return &VMCluster{t: t, c: c}
}

// Nodes are the nodes' names.
func (v *VMCluster) Nodes() []string { return v.c.Nodes() }

// WaitFormed waits until the named nodes (all with none) report one
// cluster with want alive members, logging progress.
func (v *VMCluster) WaitFormed(timeout time.Duration, want int, nodes ...string) vmcluster.Formed {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	f, err := v.c.WaitFormed(ctx, nodes, want, func(s string) { v.t.Logf("%5.0fs %s", time.Since(start).Seconds(), s) })
	if err != nil {
		v.t.Fatal(err)
	}
	return f
}

// Status is `shoal status --json` in node.
func (v *VMCluster) Status(node string) client.Status {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := v.c.PeerStatus(ctx, node)
	if err != nil {
		v.t.Fatal(err)
	}
	return st
}

// Exec runs argv in node (through the guest agent).
func (v *VMCluster) Exec(node string, argv ...string) (ExecResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return v.c.Exec(ctx, node, argv...)
}

func (v *VMCluster) must(err error) {
	v.t.Helper()
	if err != nil {
		v.t.Fatal(err)
	}
}

func bg() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

// AddNode plugs in and boots another node and returns its name.
func (v *VMCluster) AddNode() string {
	v.t.Helper()
	ctx, cancel := bg()
	defer cancel()
	n, err := v.c.AddNode(ctx)
	v.must(err)
	return n
}

// Cut pulls a node's cable nic (0 or 1; both with -1); Plug plugs it back.
func (v *VMCluster) Cut(node string, nic int) {
	v.t.Helper()
	ctx, cancel := bg()
	defer cancel()
	v.must(v.c.SetLink(ctx, node, nic, false))
}

// Plug plugs back a cable Cut pulled.
func (v *VMCluster) Plug(node string, nic int) {
	v.t.Helper()
	ctx, cancel := bg()
	defer cancel()
	v.must(v.c.SetLink(ctx, node, nic, true))
}

// Kill pulls a node's power; Start powers it on again.
func (v *VMCluster) Kill(node string) { v.t.Helper(); v.must(v.c.Kill(node)) }

// Start powers on a node that Kill stopped.
func (v *VMCluster) Start(node string) {
	v.t.Helper()
	ctx, cancel := bg()
	defer cancel()
	v.must(v.c.Start(ctx, node))
}

// Partition lets no frame pass between a and b; Heal removes it.
func (v *VMCluster) Partition(a, b []string) {
	v.t.Helper()
	ctx, cancel := bg()
	defer cancel()
	v.must(v.c.Partition(ctx, a, b))
}

// Heal removes partitions, drops and delays.
func (v *VMCluster) Heal() {
	v.t.Helper()
	ctx, cancel := bg()
	defer cancel()
	v.must(v.c.Heal(ctx))
}

// Console is the end of a node's serial console.
func (v *VMCluster) Console(node string, lines int) string {
	s, _ := v.c.Console(node, lines)
	return s
}
