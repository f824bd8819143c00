package proccluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-hci/shoal/qa/internal/faultdisk"
	"github.com/shoal-hci/shoal/qa/internal/netns"
)

// daemonRecords returns the records of node's daemons that have one.
func (c *Cluster) daemonRecords(node string) ([]procRecord, []string) {
	var recs []procRecord
	var names []string
	for _, d := range c.st.Daemons {
		r, err := readRecord(c.pidPath(node, d))
		if err == nil {
			recs = append(recs, r)
			names = append(names, d)
		}
	}
	return recs, names
}

func (c *Cluster) signalNode(node string, sig syscall.Signal) (int, error) {
	if _, err := c.st.node(node); err != nil {
		return 0, err
	}
	recs, _ := c.daemonRecords(node)
	n := 0
	var errs []error
	for _, r := range recs {
		if r.alive() {
			n++
			errs = append(errs, r.signal(sig))
		}
	}
	return n, errors.Join(errs...)
}

// Kill SIGKILLs every daemon of node and waits until they are gone.
func (c *Cluster) Kill(ctx context.Context, node string) error {
	n, err := c.signalNode(node, syscall.SIGKILL)
	if err != nil {
		return err
	}
	recs, _ := c.daemonRecords(node)
	if left := waitGone(ctx, recs, 10*time.Second); len(left) > 0 {
		return fmt.Errorf("%s: daemons survive SIGKILL: %v", node, left)
	}
	c.printf("%s: killed %d daemons", node, n)
	return nil
}

// Restart stops node's daemons (SIGTERM, then SIGKILL after 10 s), starts
// them again in order and waits until each reported ready.
func (c *Cluster) Restart(ctx context.Context, node string) error {
	if _, err := c.st.node(node); err != nil {
		return err
	}
	recs, _ := c.daemonRecords(node)
	if err := stopAll(ctx, recs, 10*time.Second); err != nil {
		return fmt.Errorf("%s: %w", node, err)
	}
	for _, d := range c.st.Daemons {
		if err := c.startDaemons(ctx, []string{node}, d); err != nil {
			return err
		}
	}
	c.printf("%s: restarted %v", node, c.st.Daemons)
	return nil
}

// Freeze SIGSTOPs every daemon of node: a node that is slow, not dead.
func (c *Cluster) Freeze(ctx context.Context, node string) error {
	n, err := c.signalNode(node, syscall.SIGSTOP)
	if err == nil {
		recs, _ := c.daemonRecords(node)
		err = waitState(ctx, recs, "frozen")
	}
	if err != nil {
		return fmt.Errorf("%s: freeze: %w", node, err)
	}
	c.printf("%s: froze %d daemons", node, n)
	return nil
}

// Thaw SIGCONTs every daemon of node.
func (c *Cluster) Thaw(ctx context.Context, node string) error {
	n, err := c.signalNode(node, syscall.SIGCONT)
	if err == nil {
		recs, _ := c.daemonRecords(node)
		err = waitState(ctx, recs, "running")
	}
	if err != nil {
		return fmt.Errorf("%s: thaw: %w", node, err)
	}
	c.printf("%s: thawed %d daemons", node, n)
	return nil
}

// waitState waits until every live record is in state (signals are
// delivered asynchronously).
func waitState(ctx context.Context, recs []procRecord, state string) error {
	return poll(ctx, 5*time.Second, nil, func() bool {
		for _, r := range recs {
			if s := r.state(); s != "dead" && s != state {
				return false
			}
		}
		return true
	})
}

// Cut pulls node's cable (its switch port goes down).
func (c *Cluster) Cut(ctx context.Context, node string) error {
	if _, err := c.st.node(node); err != nil {
		return err
	}
	if err := netns.SetCable(ctx, c.st.Tag, node, false); err != nil {
		return err
	}
	c.printf("%s: cable cut", node)
	return nil
}

// Heal plugs node's cable back in.
func (c *Cluster) Heal(ctx context.Context, node string) error {
	if _, err := c.st.node(node); err != nil {
		return err
	}
	if err := netns.SetCable(ctx, c.st.Tag, node, true); err != nil {
		return err
	}
	c.printf("%s: cable back", node)
	return nil
}

// Partition splits sideA from sideB: no packet passes between a node of
// one side and a node of the other, in either direction. Nodes on neither
// side keep talking to both. It replaces an earlier partition.
func (c *Cluster) Partition(ctx context.Context, sideA, sideB []string) error {
	if len(sideA) == 0 || len(sideB) == 0 {
		return errors.New("partition needs a node on each side")
	}
	seen := map[string]bool{}
	info := map[string]netns.Iface{}
	for _, n := range append(append([]string(nil), sideA...), sideB...) {
		if _, err := c.st.node(n); err != nil {
			return err
		}
		if seen[n] {
			return fmt.Errorf("node %s is on both sides or named twice", n)
		}
		seen[n] = true
		ifc, err := netns.NodeIfaceInfo(ctx, c.st.Tag, n)
		if err != nil {
			return err
		}
		info[n] = ifc
	}
	if err := c.HealPartition(ctx); err != nil {
		return err
	}
	apply := func(side, other []string) error {
		var peers []netns.Iface
		for _, o := range other {
			peers = append(peers, info[o])
		}
		for _, n := range side {
			if err := netns.Isolate(ctx, c.st.Tag, n, peers); err != nil {
				return err
			}
		}
		return nil
	}
	c.st.Partition = [][]string{sideA, sideB}
	if err := c.st.save(); err != nil {
		return err
	}
	if err := apply(sideA, sideB); err != nil {
		return err
	}
	if err := apply(sideB, sideA); err != nil {
		return err
	}
	c.printf("partitioned %s / %s", strings.Join(sideA, ","), strings.Join(sideB, ","))
	return nil
}

// HealPartition removes every partition rule.
func (c *Cluster) HealPartition(ctx context.Context) error {
	var errs []error
	for _, n := range c.st.Nodes {
		errs = append(errs, netns.Unisolate(ctx, c.st.Tag, n.Name))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if c.st.Partition != nil {
		c.st.Partition = nil
		c.printf("partition healed")
		return c.st.save()
	}
	return nil
}

// DiskFail makes node's disk (e.g. "disk2") return EIO on every I/O.
func (c *Cluster) DiskFail(ctx context.Context, node, disk string) error {
	return c.setDisk(ctx, node, disk, faultdisk.ModeEIO)
}

// DiskFull makes writes that allocate on node's disk return ENOSPC.
func (c *Cluster) DiskFull(ctx context.Context, node, disk string) error {
	return c.setDisk(ctx, node, disk, faultdisk.ModeENOSPC)
}

// DiskHeal makes node's disk work again.
func (c *Cluster) DiskHeal(ctx context.Context, node, disk string) error {
	return c.setDisk(ctx, node, disk, faultdisk.ModeOK)
}

func (c *Cluster) setDisk(ctx context.Context, node, disk string, m faultdisk.Mode) error {
	if _, err := c.st.node(node); err != nil {
		return err
	}
	if c.diskMode() != DiskModeFUSE {
		return fmt.Errorf("%s: %s disks: %w", node, c.diskMode(), ErrNoFaults)
	}
	if err := faultdisk.SetMode(ctx, c.diskSock(node), disk, m); err != nil {
		return fmt.Errorf("%s: %w", node, err)
	}
	c.printf("%s: %s now %s", node, disk, m)
	return nil
}

// DiskPath is where node sees disk (inside its mount namespace).
func DiskPath(disk string) string { return "/var/lib/shoal/disks/" + disk }

// Exec runs argv in node's network and mount namespaces, with this
// process's environment and the shoal binary's directory first in PATH,
// and returns its exit error, if any.
func (c *Cluster) Exec(ctx context.Context, node string, stdin io.Reader, stdout, stderr io.Writer, argv ...string) error {
	if _, err := c.st.node(node); err != nil {
		return err
	}
	if len(argv) == 0 {
		return errors.New("exec needs a command")
	}
	cmd := c.nodeCmd(ctx, node, argv...)
	cmd.Env = []string{"SHOAL_NODE_NAME=" + node, EnvTag + "=" + c.st.Tag}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") {
			kv = "PATH=" + filepath.Dir(c.st.ShoalBin) + ":" + kv[len("PATH="):]
		}
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	return cmd.Run()
}

// Output runs argv in node's namespaces and returns its combined output.
func (c *Cluster) Output(ctx context.Context, node string, argv ...string) (string, error) {
	var b strings.Builder
	err := c.Exec(ctx, node, nil, &b, &b, argv...)
	if err != nil {
		return b.String(), fmt.Errorf("%s: %s: %w: %s", node, strings.Join(argv, " "), err, strings.TrimSpace(b.String()))
	}
	return b.String(), nil
}
