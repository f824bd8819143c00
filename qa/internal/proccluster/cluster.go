package proccluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/qa/internal/faultdisk"
	"github.com/shoal-hci/shoal/qa/internal/netns"
	"golang.org/x/sys/unix"
)

// Cluster is a running cluster, as described by the state in its directory.
type Cluster struct {
	st      *State
	log     *slog.Logger
	out     io.Writer
	readyTO time.Duration
	reapers sync.WaitGroup
}

// Network facts of every cluster.
const (
	SwitchIPv4 = "10.88.0.1"
	SwitchIPv6 = "fd53:686f:616c::1"
	DHCPRange  = "10.88.0.100,10.88.0.250,255.255.255.0,1h"
)

// Up builds a cluster as opts say and waits until every daemon reported
// ready. On error it leaves what it built for Down to remove.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := CheckPrereqs(); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("losetup"); err != nil && opts.DiskMode == DiskModeLoop && opts.Disks > 0 {
		return nil, fmt.Errorf("losetup (util-linux), for loop disks: %w", ErrMissingTool)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	tag, err := TagFor(dir)
	if err != nil {
		return nil, err
	}
	if left, err := netns.List(ctx, netns.Prefix+tag+"-"); err != nil {
		return nil, err
	} else if len(left) > 0 {
		return nil, fmt.Errorf("%s has namespaces %v: %w", dir, left, ErrAlreadyUp)
	}
	for _, sub := range []string{"nodes", "switch", "shq-" + tag + "-ns"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return nil, fmt.Errorf("clear %s (a mount left there? run shoal-qa down): %w", sub, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "switch"), 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{
		st: &State{
			Dir: dir, Tag: tag, Disks: opts.Disks, DiskSize: opts.DiskSize, DiskMode: opts.DiskMode, DaemonEnv: opts.DaemonEnv,
			ShoalBin: opts.ShoalBin, HelperBin: opts.HelperBin, ReadyTO: opts.ReadyTimeout.String(),
		},
		log: opts.Log, out: opts.Out, readyTO: opts.ReadyTimeout,
	}
	if c.st.HelperBin == "" {
		// Copy this executable: under `go run` it is deleted on exit, and
		// add-node in a later invocation still needs it.
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		c.st.HelperBin = filepath.Join(dir, "bin", "shoal-qa")
		if err := copyFile(self, c.st.HelperBin); err != nil {
			return nil, err
		}
	}
	if c.st.ShoalBin == "" {
		c.st.ShoalBin = filepath.Join(dir, "bin", "shoal")
		c.printf("building shoal into %s", c.st.ShoalBin)
		if err := BuildShoal(ctx, c.st.ShoalBin); err != nil {
			return nil, err
		}
	}
	if c.st.Daemons, err = Daemons(ctx, c.st.ShoalBin); err != nil {
		return nil, err
	}
	c.st.StaticIP = !contains(c.st.Daemons, "netd")
	if err := c.st.save(); err != nil {
		return nil, err
	}
	c.printf("cluster %s in %s: %d nodes, daemons %v", tag, dir, opts.Nodes, c.st.Daemons)

	if err := netns.CreateSwitch(ctx, tag, SwitchIPv4+"/24", SwitchIPv6+"/64"); err != nil {
		return nil, err
	}
	if err := c.startDHCP(ctx); err != nil {
		return nil, err
	}
	nsDir := c.nsDir()
	if err := os.MkdirAll(nsDir, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount(nsDir, nsDir, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind mount %s: %w", nsDir, err)
	}
	if err := unix.Mount("", nsDir, "", unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make %s private: %w", nsDir, err)
	}
	var names []string
	for i := 1; i <= opts.Nodes; i++ {
		name := fmt.Sprintf("node%d", i)
		if err := c.buildNode(ctx, name, i); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	for _, d := range c.st.Daemons {
		if err := c.startDaemons(ctx, names, d); err != nil {
			return nil, err
		}
	}
	c.printf("cluster up")
	return c, nil
}

// Open returns the cluster that Up built in dir (possibly in another process).
func Open(dir string, log *slog.Logger, out io.Writer) (*Cluster, error) {
	st, err := loadState(dir)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if out == nil {
		out = io.Discard
	}
	to, err := time.ParseDuration(st.ReadyTO)
	if err != nil {
		to = DefaultOptions().ReadyTimeout
	}
	return &Cluster{st: st, log: log, out: out, readyTO: to}, nil
}

// Close waits for the goroutines that reap processes this value started;
// call it only after Down (or after those processes were stopped).
func (c *Cluster) Close() { c.reapers.Wait() }

// Dir is the cluster directory.
func (c *Cluster) Dir() string { return c.st.Dir }

// Tag is the cluster's tag.
func (c *Cluster) Tag() string { return c.st.Tag }

// Nodes returns the nodes' names in order.
func (c *Cluster) Nodes() []string {
	var ns []string
	for _, n := range c.st.Nodes {
		ns = append(ns, n.Name)
	}
	return ns
}

// Node returns what the harness knows of one node.
func (c *Cluster) Node(name string) (NodeState, error) {
	n, err := c.st.node(name)
	if err != nil {
		return NodeState{}, err
	}
	return *n, nil
}

// Daemons returns the daemons each node runs, in start order.
func (c *Cluster) Daemons() []string { return append([]string(nil), c.st.Daemons...) }

// NodeDir is the harness's directory of node: its run, lib and etc (the
// node's /run/shoal, /var/lib/shoal, /etc/shoal) and logs.
func (c *Cluster) NodeDir(node string) string { return filepath.Join(c.st.Dir, "nodes", node) }

// LogPath is the log of node's unit (a daemon, or "fusedisk").
func (c *Cluster) LogPath(node, unit string) string {
	return filepath.Join(c.NodeDir(node), "logs", unit+".log")
}

func (c *Cluster) nsDir() string            { return filepath.Join(c.st.Dir, "shq-"+c.st.Tag+"-ns") }
func (c *Cluster) mntNS(node string) string { return filepath.Join(c.nsDir(), node) }
func (c *Cluster) netNS(node string) string { return "/run/netns/" + netns.NodeName(c.st.Tag, node) }
func (c *Cluster) diskSock(node string) string {
	return filepath.Join(c.NodeDir(node), "fusedisk.sock")
}
func (c *Cluster) pidPath(node, unit string) string {
	return filepath.Join(c.NodeDir(node), "pids", unit+".json")
}

func (c *Cluster) printf(format string, a ...any) {
	fmt.Fprintf(c.out, "shoal-qa: "+format+"\n", a...)
}

// AddNode plugs a new node into the running cluster, starts its daemons
// and returns its name.
func (c *Cluster) AddNode(ctx context.Context) (string, error) {
	i := 1
	for _, n := range c.st.Nodes {
		i = max(i, n.Index+1)
	}
	if i > MaxNodes {
		return "", fmt.Errorf("cluster has %d nodes already, the most it can hold", MaxNodes)
	}
	name := fmt.Sprintf("node%d", i)
	if err := c.buildNode(ctx, name, i); err != nil {
		return "", err
	}
	for _, d := range c.st.Daemons {
		if err := c.startDaemons(ctx, []string{name}, d); err != nil {
			return "", err
		}
	}
	c.printf("%s added", name)
	return name, nil
}

// buildNode creates node's network namespace, directories, disks, FUSE
// server and mount namespace, and records it in the state.
func (c *Cluster) buildNode(ctx context.Context, name string, index int) error {
	ns := NodeState{Name: name, Index: index}
	var addrs []string
	if c.st.StaticIP {
		ns.IPv4, ns.IPv6 = nodeAddrs(index)
		addrs = []string{ns.IPv4 + "/24", ns.IPv6 + "/64"}
	}
	c.st.Nodes = append(c.st.Nodes, ns)
	if err := c.st.save(); err != nil {
		return err
	}
	if err := netns.AddNode(ctx, c.st.Tag, name, addrs...); err != nil {
		return err
	}
	dir := c.NodeDir(name)
	for _, sub := range []string{"run", "lib/disks", "etc", "logs", "pids", "disks"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	if c.st.Disks > 0 {
		var err error
		switch c.diskMode() {
		case DiskModeFUSE:
			err = c.startFusedisk(ctx, name)
		default:
			err = c.linkDisks(ctx, name)
		}
		if err != nil {
			return err
		}
	}
	if err := c.makeMountNS(ctx, name); err != nil {
		return err
	}
	if c.st.StaticIP {
		c.printf("%s: %s, %s, %d %s disks", name, ns.IPv4, ns.IPv6, c.st.Disks, c.diskMode())
	} else {
		c.printf("%s: addresses from netd, %d %s disks", name, c.st.Disks, c.diskMode())
	}
	return nil
}

// DiskMode is how the cluster's disks reach scribe.
func (c *Cluster) DiskMode() DiskMode { return c.diskMode() }

func (c *Cluster) diskMode() DiskMode {
	if c.st.DiskMode == "" {
		return DiskModeFUSE
	}
	return c.st.DiskMode
}

// makeImages creates node's sparse disk images, D/nodes/NODE/disks/diskK.img.
func (c *Cluster) makeImages(node string) ([]string, error) {
	var imgs []string
	for k := 1; k <= c.st.Disks; k++ {
		img := filepath.Join(c.NodeDir(node), "disks", fmt.Sprintf("disk%d.img", k))
		f, err := os.OpenFile(img, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
		err = f.Truncate(c.st.DiskSize)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("make sparse disk %s: %w", img, err)
		}
		imgs = append(imgs, img)
	}
	return imgs, nil
}

// linkDisks makes D/nodes/NODE/lib/disks/diskK (the node's
// /var/lib/shoal/disks/diskK) a symlink to its image file (DiskModeFile)
// or to a loop device with direct I/O backed by it (DiskModeLoop).
func (c *Cluster) linkDisks(ctx context.Context, node string) error {
	imgs, err := c.makeImages(node)
	if err != nil {
		return err
	}
	for k, img := range imgs {
		target := img
		if c.diskMode() == DiskModeLoop {
			out, err := exec.CommandContext(ctx, "losetup", "--direct-io=on", "--find", "--show", img).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: attach %s to a loop device: %w: %s", node, img, err, strings.TrimSpace(string(out)))
			}
			target = strings.TrimSpace(string(out))
		}
		link := filepath.Join(c.NodeDir(node), "lib", "disks", fmt.Sprintf("disk%d", k+1))
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startFusedisk(ctx context.Context, node string) error {
	dir := c.NodeDir(node)
	sock := c.diskSock(node)
	if len(sock) > 100 {
		return fmt.Errorf("control socket path %s is too long for a UNIX socket: use a shorter --dir", sock)
	}
	args := []string{"fusedisk", "--mount", filepath.Join(dir, "lib", "disks"), "--socket", sock}
	imgs, err := c.makeImages(node)
	if err != nil {
		return err
	}
	for k, img := range imgs {
		args = append(args, "--disk", fmt.Sprintf("disk%d=%s", k+1, img))
	}
	logf, err := os.OpenFile(c.LogPath(node, "fusedisk"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(c.st.HelperBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = c.env(node)
	rec, exited, err := c.start(cmd)
	if err != nil {
		return err
	}
	if err := writeRecord(c.pidPath(node, "fusedisk"), rec); err != nil {
		return err
	}
	err = poll(ctx, 10*time.Second, exited, func() bool { return faultdisk.Ping(ctx, sock) == nil })
	if err != nil {
		return fmt.Errorf("%s: disk server did not come up (log %s): %w", node, c.LogPath(node, "fusedisk"), err)
	}
	return nil
}

// makeMountNS creates node's persisted mount namespace in which /run/shoal,
// /var/lib/shoal and /etc/shoal are the node's own directories.
func (c *Cluster) makeMountNS(ctx context.Context, node string) error {
	nsFile := c.mntNS(node)
	if err := os.WriteFile(nsFile, nil, 0o644); err != nil {
		return err
	}
	dir := c.NodeDir(node)
	script := strings.Join([]string{
		"set -e",
		"mkdir -p /run/shoal /var/lib/shoal /etc/shoal",
		fmt.Sprintf("mount --rbind %q /run/shoal", filepath.Join(dir, "run")),
		fmt.Sprintf("mount --rbind %q /var/lib/shoal", filepath.Join(dir, "lib")),
		fmt.Sprintf("mount --rbind %q /etc/shoal", filepath.Join(dir, "etc")),
		// Hide the other nodes' namespace files and names, so a node's
		// namespace holds no reference to another's.
		fmt.Sprintf("umount -l %q", c.nsDir()),
		"if umount -l /run/netns 2>/dev/null; then mount -t tmpfs -o size=64k,mode=755 shq-netns /run/netns; fi",
	}, "\n")
	_, err := netns.Run(ctx, "unshare", "--mount="+nsFile, "--propagation=slave", "--", "sh", "-c", script)
	if err != nil {
		return fmt.Errorf("%s: mount namespace: %w", node, err)
	}
	return nil
}

// env is the environment of processes started for node; PATH starts with
// the shoal binary's directory so `shoal` inside a node is the one under test.
func (c *Cluster) env(node string) []string {
	return []string{
		"PATH=" + filepath.Dir(c.st.ShoalBin) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"SHOAL_NODE_NAME=" + node,
		EnvTag + "=" + c.st.Tag,
	}
}

// nodeCmd is argv run inside node's network and mount namespaces.
func (c *Cluster) nodeCmd(ctx context.Context, node string, argv ...string) *exec.Cmd {
	args := append([]string{"--net=" + c.netNS(node), "--mount=" + c.mntNS(node), "--wd=/", "--"}, argv...)
	return exec.CommandContext(ctx, "nsenter", args...)
}

func (c *Cluster) startDHCP(ctx context.Context) error {
	sw := filepath.Join(c.st.Dir, "switch")
	logf, err := os.OpenFile(filepath.Join(sw, "dnsmasq.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", "--net=/run/netns/"+netns.SwitchName(c.st.Tag), "--",
		"dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface="+netns.Bridge, "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range="+DHCPRange, "--dhcp-authoritative",
		"--dhcp-leasefile="+filepath.Join(sw, "dnsmasq.leases"),
		"--pid-file="+filepath.Join(sw, "dnsmasq.pid"),
		"--log-facility="+filepath.Join(sw, "dnsmasq.log"), "--log-dhcp",
		"--user=root", "--group=root")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = c.env("switch")
	rec, exited, err := c.start(cmd)
	if err != nil {
		return err
	}
	if err := writeRecord(filepath.Join(sw, "dnsmasq.json"), rec); err != nil {
		return err
	}
	err = poll(ctx, 10*time.Second, exited, func() bool {
		out, err := netns.Run(ctx, "ip", "netns", "exec", netns.SwitchName(c.st.Tag), "ss", "-Hlun", "sport", "=", "67")
		return err == nil && strings.TrimSpace(out) != ""
	})
	if err != nil {
		return fmt.Errorf("dnsmasq did not start (see %s): %w", filepath.Join(sw, "dnsmasq.out"), err)
	}
	c.printf("dnsmasq serving DHCP on %s in %s", DHCPRange, netns.SwitchName(c.st.Tag))
	return nil
}

// poll calls ok until it returns true, the process exits or timeout passes.
func poll(ctx context.Context, timeout time.Duration, exited <-chan struct{}, ok func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("process exited")
		case <-deadline.C:
			return fmt.Errorf("not ready after %v", timeout)
		case <-tick.C:
		}
	}
}

// startDaemons starts daemon on each of nodes and waits until all sent
// READY=1.
func (c *Cluster) startDaemons(ctx context.Context, nodes []string, daemon string) error {
	type started struct {
		node  string
		ready <-chan error
	}
	var all []started
	for _, n := range nodes {
		ready, err := c.startDaemon(ctx, n, daemon)
		if err != nil {
			return err
		}
		all = append(all, started{n, ready})
	}
	var errs []error
	for _, s := range all {
		if err := <-s.ready; err != nil {
			errs = append(errs, err)
		} else {
			c.printf("%s: %s ready", s.node, daemon)
		}
	}
	return errors.Join(errs...)
}

// startDaemon starts `shoal DAEMON` in node's namespaces with a
// NOTIFY_SOCKET of its own; the channel yields nil once it sent READY=1.
func (c *Cluster) startDaemon(ctx context.Context, node, daemon string) (<-chan error, error) {
	logPath := c.LogPath(node, daemon)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- shoal-qa: starting %s on %s\n", daemon, node)
	nd, err := os.MkdirTemp("", "shq-"+c.st.Tag+"-notify-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(nd, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		os.RemoveAll(nd)
		return nil, err
	}
	cmd := c.nodeCmd(context.Background(), node, c.st.ShoalBin, daemon)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(append(c.env(node), c.st.DaemonEnv...), "NOTIFY_SOCKET="+sock)
	rec, exited, err := c.start(cmd)
	if err != nil {
		conn.Close()
		os.RemoveAll(nd)
		return nil, err
	}
	if err := writeRecord(c.pidPath(node, daemon), rec); err != nil {
		return nil, err
	}
	ready := make(chan error, 1)
	c.reapers.Add(1)
	go func() {
		defer c.reapers.Done()
		defer os.RemoveAll(nd)
		defer conn.Close()
		ready <- c.awaitReady(ctx, conn, exited, node, daemon, logPath)
	}()
	return ready, nil
}

func (c *Cluster) awaitReady(ctx context.Context, conn *net.UnixConn, exited <-chan struct{}, node, daemon, logPath string) error {
	got := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:k]), "\n") {
				if line == "READY=1" {
					close(got)
					return
				}
			}
		}
	}()
	defer wg.Wait()
	defer conn.Close()
	timer := time.NewTimer(c.readyTO)
	defer timer.Stop()
	select {
	case <-got:
		return nil
	case <-exited:
		return fmt.Errorf("%s: %s exited before it reported ready (log %s): %w", node, daemon, logPath, ErrNotReady)
	case <-timer.C:
		return fmt.Errorf("%s: %s sent no READY=1 within %v (log %s): %w", node, daemon, c.readyTO, logPath, ErrNotReady)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// copyFile copies the executable src to dst (replacing it atomically).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
