package vmcluster

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
	"syscall"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/qmp"
	"github.com/shoal-hci/shoal/peer/client"
)

// Cluster is an image-level cluster that is up in a directory.
type Cluster struct {
	st   *State
	opts Options // Log and Out only, for clusters from Open
}

// Up boots a new cluster as opts say and returns once every QEMU runs
// (not once the nodes are booted: WaitFormed waits for that).
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	if os.Geteuid() != 0 && !o.NoDHCP {
		return nil, ErrNotRoot
	}
	for _, tool := range []string{o.QEMU, o.QEMUImg} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found (make deps installs qemu-system-x86 and qemu-utils): %w", tool, err)
		}
	}
	for _, f := range []string{o.OVMFCode, o.OVMFVars, o.Image} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("need %s (OVMF: Debian ovmf; the image: make image): %w", f, err)
		}
	}
	if !o.NoDHCP {
		if _, err := exec.LookPath("dnsmasq"); err != nil {
			return nil, fmt.Errorf("dnsmasq not found (Debian dnsmasq-base): %w", err)
		}
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if _, err := loadState(dir); err == nil {
		return nil, ErrExists
	}
	tag, err := TagFor(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	st := &State{Dir: dir, Tag: tag, Slots: o.Slots, DHCP: !o.NoDHCP, Subnet: dhcpSubnet, Backhost: backHost,
		Image: filepath.Join(dir, "image.img"),
		Opts: StateOpts{DataDisks: o.DataDisks, DataDiskSize: o.DataDiskSize, BootDiskSize: o.BootDiskSize, MemMB: o.MemMB,
			QEMU: o.QEMU, QEMUImg: o.QEMUImg, OVMFCode: o.OVMFCode, OVMFVars: o.OVMFVars}}
	if o.APIPort > 0 && !o.NoDHCP {
		st.APIPort = o.APIPort
	}
	st.Accel = o.Accel
	if env := os.Getenv("SHOAL_QA_ACCEL"); st.Accel == "" && env != "" {
		st.Accel = env
	}
	if st.Accel == "" {
		var why string
		st.Accel, why = ProbeAccel(ctx, o.QEMU, probeKernel())
		o.Log.Info("accelerator", "accel", st.Accel, "why", why)
	}
	c := &Cluster{st: st, opts: o}
	if err := c.up(ctx, o); err != nil {
		Down(context.WithoutCancel(ctx), dir, o.Log)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) up(ctx context.Context, o Options) error {
	st := c.st
	// A private copy of the image: a rebuild must not change a running
	// node's disk under it. Sparse, so it costs what the image allocates.
	if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", o.Image, st.Image).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the image: %w: %s", err, out)
	}
	if err := st.save(); err != nil {
		return err
	}
	if err := c.startSwitchd(ctx, o); err != nil {
		return err
	}
	for i := 1; i <= o.Nodes; i++ {
		if _, err := c.addNode(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startSwitchd(ctx context.Context, o Options) error {
	logf, err := os.OpenFile(filepath.Join(c.st.Dir, "switchd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(o.QABin, "vm", "switchd", "--dir", c.st.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), EnvTag+"="+c.st.Tag)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the switch daemon %s: %w", o.QABin, err)
	}
	c.st.Switchd = cmd.Process.Pid
	// The daemon outlives this process (setsid). While this process lives,
	// this goroutine reaps it once Down stops it.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := c.st.save(); err != nil {
		return err
	}
	deadline := time.Now().Add(o.ReadyTimeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := control(pctx, c.st.Dir, ctlRequest{Op: "ping"})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case e := <-exited:
			return fmt.Errorf("the switch daemon exited (%v); its log %s says:\n%s", e, logf.Name(), tailFile(logf.Name(), 20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the switch daemon did not answer within %v: see %s", o.ReadyTimeout, logf.Name())
		}
	}
}

// Open returns the cluster up in dir.
func Open(dir string, opts Options) (*Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	st, err := loadState(dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	return &Cluster{st: st, opts: opts.withDefaults()}, nil
}

// Dir is the cluster's directory.
func (c *Cluster) Dir() string { return c.st.Dir }

// Accel is the accelerator the nodes run with.
func (c *Cluster) Accel() string { return c.st.Accel }

// APIPort is the localhost port node1's API is forwarded to (0: none).
func (c *Cluster) APIPort() int { return c.st.APIPort }

// Nodes are the nodes' names.
func (c *Cluster) Nodes() []string { return c.st.names() }

// AddNode plugs a new node (the next free number) into the switch and
// boots it; it returns its name.
func (c *Cluster) AddNode(ctx context.Context) (string, error) { return c.addNode(ctx) }

func (c *Cluster) addNode(ctx context.Context) (string, error) {
	st := c.st
	slot := len(st.Nodes) + 1
	if slot > st.Slots {
		return "", fmt.Errorf("the switch has ports for %d nodes only (vm up --slots)", st.Slots)
	}
	n := NodeState{Name: fmt.Sprintf("node%d", slot), Slot: slot}
	for k := range nicCount {
		n.MACs = append(n.MACs, macFor(slot, k))
	}
	dir := nodeDir(st.Dir, n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	o := st.Opts
	img := func(args ...string) error {
		out, err := exec.CommandContext(ctx, o.QEMUImg, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("qemu-img %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := img("create", "-q", "-f", "qcow2", "-b", st.Image, "-F", "raw", filepath.Join(dir, fBoot), strconv.FormatInt(o.BootDiskSize, 10)); err != nil {
		return "", err
	}
	for k := range o.DataDisks {
		if err := img("create", "-q", "-f", "qcow2", filepath.Join(dir, dataDisk(k)), strconv.FormatInt(o.DataDiskSize, 10)); err != nil {
			return "", err
		}
	}
	vars, err := os.ReadFile(o.OVMFVars)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, fVars), vars, 0o644); err != nil {
		return "", err
	}
	st.Nodes = append(st.Nodes, n)
	if err := st.save(); err != nil {
		return "", err
	}
	if err := c.Start(ctx, n.Name); err != nil {
		return "", err
	}
	fmt.Fprintf(c.opts.Out, "%s: booting (%s, console %s)\n", n.Name, st.Accel, filepath.Join(dir, fConsole))
	return n.Name, nil
}

func (c *Cluster) spec(n *NodeState) qemuSpec {
	s := qemuSpec{Name: n.Name, Dir: nodeDir(c.st.Dir, n.Name), Accel: c.st.Accel, MemMB: c.st.Opts.MemMB,
		OVMFCode: c.st.Opts.OVMFCode, DataDisks: c.st.Opts.DataDisks, MACs: n.MACs}
	for k := range nicCount {
		local := filepath.Join(c.st.Dir, "sw", "sw-"+portName(n.Slot, k)+".sock")
		peer := filepath.Join(c.st.Dir, "sw", portName(n.Slot, k)+".sock")
		s.Netdevs = append(s.Netdevs, fmt.Sprintf("dgram,id=n%d,local.type=unix,local.path=%s,remote.type=unix,remote.path=%s", k, peer, local))
	}
	return s
}

// Start powers a node on (again) with its disks as they are: after Kill,
// or after the guest powered off.
func (c *Cluster) Start(ctx context.Context, node string) error {
	n, err := c.st.node(node)
	if err != nil {
		return err
	}
	if _, running := qemuPid(nodeDir(c.st.Dir, node)); running {
		return fmt.Errorf("%s is already running", node)
	}
	n.Cut = nil // a new QEMU starts with its cables in
	if err := c.st.save(); err != nil {
		return err
	}
	return startQEMU(ctx, c.st.Opts.QEMU, c.st.Tag, c.spec(n))
}

// Kill pulls a node's power: SIGKILL to its QEMU. Its disks stay; Start
// boots it again.
func (c *Cluster) Kill(node string) error {
	if _, err := c.st.node(node); err != nil {
		return err
	}
	pid, ok := qemuPid(nodeDir(c.st.Dir, node))
	if !ok {
		return fmt.Errorf("%s is not running", node)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s (QEMU pid %d) did not die", node, pid)
}

// qmpRun runs one QMP command on a node: the only use of the QMP client.
func (c *Cluster) qmpRun(ctx context.Context, node, cmd string, args any) error {
	if _, err := c.st.node(node); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q, err := qmp.Dial(qctx, filepath.Join(nodeDir(c.st.Dir, node), fQMP))
	if err != nil {
		return fmt.Errorf("%s: %w", node, err)
	}
	defer q.Close()
	if _, err := q.Execute(qctx, cmd, args); err != nil {
		return fmt.Errorf("%s: %w", node, err)
	}
	return nil
}

// Reset presses a node's reset button.
func (c *Cluster) Reset(ctx context.Context, node string) error {
	return c.qmpRun(ctx, node, "system_reset", nil)
}

// PowerOff presses a node's power button (ACPI): the guest shuts down.
func (c *Cluster) PowerOff(ctx context.Context, node string) error {
	return c.qmpRun(ctx, node, "system_powerdown", nil)
}

// SetLink pulls (up=false) or plugs back a node's cable: NIC k (0 or 1),
// or both with k < 0. The guest sees carrier go away (QMP set_link).
func (c *Cluster) SetLink(ctx context.Context, node string, k int, up bool) error {
	if k >= nicCount {
		return fmt.Errorf("%s has NICs 0 and 1, not %d", node, k)
	}
	for i := range nicCount {
		if k >= 0 && i != k {
			continue
		}
		if err := c.qmpRun(ctx, node, "set_link", map[string]any{"name": fmt.Sprintf("nic%d", i), "up": up}); err != nil {
			return err
		}
		n, _ := c.st.node(node)
		for len(n.Cut) < nicCount {
			n.Cut = append(n.Cut, false)
		}
		n.Cut[i] = !up
	}
	return c.st.save()
}

func (c *Cluster) ports(nodes []string) ([]string, error) {
	var out []string
	for _, name := range nodes {
		n, err := c.st.node(name)
		if err != nil {
			return nil, err
		}
		for k := range nicCount {
			out = append(out, portName(n.Slot, k))
		}
	}
	return out, nil
}

// Partition lets no frame pass between the nodes of a and those of b (the
// switch drops them; carriers stay up). Nodes in neither keep talking to
// a's side. A new partition replaces the previous one.
func (c *Cluster) Partition(ctx context.Context, a, b []string) error {
	if err := c.Heal(ctx); err != nil {
		return err
	}
	pb, err := c.ports(b)
	if err != nil {
		return err
	}
	if _, err := c.ports(a); err != nil {
		return err
	}
	_, err = control(ctx, c.st.Dir, ctlRequest{Op: "group", Ports: pb, Group: 1})
	return err
}

// Heal removes the partition and every drop and delay.
func (c *Cluster) Heal(ctx context.Context) error {
	all, err := c.ports(c.st.names())
	if err != nil {
		return err
	}
	for _, req := range []ctlRequest{{Op: "group", Ports: all}, {Op: "up", Ports: all}, {Op: "delay", Ports: all}} {
		if _, err := control(ctx, c.st.Dir, req); err != nil {
			return err
		}
	}
	return nil
}

// Drop makes the switch drop every frame to and from a node's NICs while
// their carrier stays up (a dead link the bond cannot see), or stops that.
func (c *Cluster) Drop(ctx context.Context, node string, drop bool) error {
	p, err := c.ports([]string{node})
	if err != nil {
		return err
	}
	op := "up"
	if drop {
		op = "down"
	}
	_, err = control(ctx, c.st.Dir, ctlRequest{Op: op, Ports: p})
	return err
}

// Delay delays frames the switch sends to a node by d (0 removes it).
func (c *Cluster) Delay(ctx context.Context, node string, d time.Duration) error {
	p, err := c.ports([]string{node})
	if err != nil {
		return err
	}
	_, err = control(ctx, c.st.Dir, ctlRequest{Op: "delay", Ports: p, Delay: d})
	return err
}

// Exec runs argv in a node through the QEMU guest agent: argv[0] is a
// path in the guest (a bare name means /usr/bin/NAME). It returns what
// the command returned; err is only about running it.
func (c *Cluster) Exec(ctx context.Context, node string, argv ...string) (ExecResult, error) {
	if len(argv) == 0 {
		return ExecResult{}, errors.New("exec: no command")
	}
	if _, err := c.st.node(node); err != nil {
		return ExecResult{}, err
	}
	if !strings.HasPrefix(argv[0], "/") {
		argv = append([]string{"/usr/bin/" + argv[0]}, argv[1:]...)
	}
	a, err := dialAgent(ctx, filepath.Join(nodeDir(c.st.Dir, node), fAgent))
	if err != nil {
		return ExecResult{}, fmt.Errorf("%s: %w", node, err)
	}
	defer a.Close()
	res, err := a.exec(ctx, argv)
	if err != nil {
		return res, fmt.Errorf("%s: %w", node, err)
	}
	return res, nil
}

// PeerStatus is `shoal status --json` run in the node.
func (c *Cluster) PeerStatus(ctx context.Context, node string) (client.Status, error) {
	res, err := c.Exec(ctx, node, "shoal", "status", "--json")
	if err != nil {
		return client.Status{}, err
	}
	if res.ExitCode != 0 {
		return client.Status{}, fmt.Errorf("%s: shoal status exited %d: %s", node, res.ExitCode, strings.TrimSpace(string(res.Stderr)))
	}
	var s client.Status
	if err := json.Unmarshal(res.Stdout, &s); err != nil {
		return client.Status{}, fmt.Errorf("%s: decode shoal status: %w", node, err)
	}
	if node == "node1" && s.Self.API != "" && c.st.APIPort > 0 {
		os.WriteFile(apiTargetPath(c.st.Dir), []byte(s.Self.API+"\n"), 0o644)
	}
	return s, nil
}

// Console returns the last n lines of a node's serial console (all with
// n <= 0).
func (c *Cluster) Console(node string, n int) (string, error) {
	if _, err := c.st.node(node); err != nil {
		return "", err
	}
	return tailFile(filepath.Join(nodeDir(c.st.Dir, node), fConsole), n), nil
}

// ConsolePath is the file a node's serial console is logged to.
func (c *Cluster) ConsolePath(node string) string {
	return filepath.Join(nodeDir(c.st.Dir, node), fConsole)
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// probeKernel is a kernel for ProbeAccel: the image builder's cached one.
func probeKernel() string {
	cache := os.Getenv("SHOAL_IMAGE_CACHE")
	if cache == "" {
		cache = "/var/cache/shoal-image"
	}
	for _, pat := range []string{filepath.Join(cache, "base-*/vmlinuz"), "/boot/vmlinuz-*"} {
		if m, _ := filepath.Glob(pat); len(m) > 0 {
			return m[len(m)-1]
		}
	}
	return ""
}
