package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/qa/internal/proccluster"
	"github.com/shoal-hci/shoal/scribe/fiobench"
)

const benchUsage = `shoal-qa bench: figures on this machine (needs root, fio with the nbd engine, qemu-nbd, qemu-io).

Usage: shoal-qa [--dir D] bench scribe [--runtime 3s] [--rows FILTER] [--repeat N] [--size 1G] [--span 256M]
                                        [--disk-size 4G] [--disk-mode file|loop|fuse]
                                        [--env KEY=VALUE]... [--shoal BIN] [--keep] [--in-process]

  scribe    fio (nbd engine) against a 2-replica VSD served by a real 3-node cluster
            (shoal scribe on every node; fio on node1's NBD socket), and in the same
            run against qemu-nbd --cache=none on a raw file in node1's directory (the
            same host file system as the disk images), and against qemu-nbd writing
            every write to two raw files there (QEMU's quorum driver: two synchronous
            copies with no network, what a second copy costs on this machine).
            Prints all three, the ratios to qemu-nbd and the server CPU per I/O
            (scribe: the scribe processes of all three nodes). Disks (--disk-mode): file (default)
            gives scribe the image files themselves, opened with O_DIRECT as
            qemu-nbd opens its raw file; loop puts each image behind a loop device
            with direct I/O (a block device, as on an appliance); fuse serves them
            through the harness's fault-injecting FUSE file system (two more kernel
            crossings per I/O and a userspace server, whose CPU is printed apart).
            --env adds to every daemon's environment (e.g. GOMAXPROCS=2).
            --in-process measures instead two in-process nodes over loopback
            (scribe/fiobench). The cluster is brought up in D and removed
            afterwards unless --keep.
            --repeat N runs every row N rounds, each target once per round and
            the order reversed every other round; it prints medians, each ratio
            the median of the rounds' ratios, and their range: use it when the
            machine is busy or a ratio sits near 1.
            Rows (--rows picks those whose name contains FILTER, e.g. "QD32",
            "flush"): 4k randwrite QD1, 4k randwrite QD32, 4k randread QD1,
            4k randread QD32, 1M seq write QD8, 1M seq read QD8, 4k write+flush QD1.
`

// benchMain runs `shoal-qa bench ...`.
func benchMain(ctx context.Context, dir string, args []string) error {
	if len(args) == 0 || args[0] != "scribe" {
		fmt.Print(benchUsage)
		if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			return nil
		}
		return usageError(fmt.Sprintf("unknown benchmark %q", args[0]))
	}
	fs := flag.NewFlagSet("bench scribe", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runtimeF := fs.Duration("runtime", 3*time.Second, "seconds per row and server")
	rows := fs.String("rows", "", "only rows whose name contains this")
	repeat := fs.Int("repeat", 1, "rounds per row; ratios are then medians of each round's")
	size := fs.String("size", "1G", "VSD and raw file size")
	span := fs.String("span", "256M", "range the rows address (prefilled)")
	diskSize := fs.String("disk-size", "4G", "size of each data disk (2 per node)")
	diskMode := fs.String("disk-mode", "file", "how scribe sees its disks: file, loop or fuse")
	var env listFlag
	fs.Var(&env, "env", "KEY=VALUE added to every daemon's environment, repeated")
	shoalBin := fs.String("shoal", "", "shoal binary (default: build it)")
	keep := fs.Bool("keep", false, "leave the cluster up afterwards")
	inProcess := fs.Bool("in-process", false, "measure two in-process nodes over loopback instead of a cluster")
	if err := parseFlags(fs, args[1:], benchUsage); err != nil {
		return err
	}
	sz, err1 := parseSize(*size)
	sp, err2 := parseSize(*span)
	ds, err3 := parseSize(*diskSize)
	mode, err4 := proccluster.ParseDiskMode(*diskMode)
	var err5 error
	if *repeat < 1 || *repeat > 100 {
		err5 = fmt.Errorf("--repeat %d: want 1 to 100 rounds", *repeat)
	}
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return usageError(err.Error())
	}
	if *inProcess {
		tab, err := fiobench.Run(ctx, fiobench.Config{Replicas: 2, Size: sz, Span: sp, Runtime: *runtimeF, Rows: *rows, Repeat: *repeat, Procs: 8})
		if err != nil {
			return err
		}
		fmt.Printf("in-process: two scribe nodes over loopback (mutual TLS), not a cluster\n%s", tab)
		return nil
	}
	return benchCluster(ctx, dir, benchOpts{size: sz, span: sp, diskSize: ds, diskMode: mode, env: env, runtime: *runtimeF, repeat: *repeat, rows: *rows, shoal: *shoalBin, keep: *keep})
}

type benchOpts struct {
	size, span, diskSize int64
	diskMode             proccluster.DiskMode
	env                  []string
	runtime              time.Duration
	repeat               int
	rows, shoal          string
	keep                 bool
}

func benchCluster(ctx context.Context, dir string, o benchOpts) error {
	if err := fiobench.CheckTools(); err != nil {
		return err
	}
	if _, err := exec.LookPath("qemu-io"); err != nil {
		return fmt.Errorf("qemu-io: %w", err)
	}
	c, err := proccluster.Up(ctx, proccluster.Options{Dir: dir, Nodes: 3, Disks: 2, DiskSize: o.diskSize, DiskMode: o.diskMode, DaemonEnv: o.env, ShoalBin: o.shoal, Out: os.Stdout})
	if !o.keep {
		defer func() {
			if err := proccluster.Down(context.Background(), dir, os.Stdout); err != nil {
				fmt.Fprintf(os.Stderr, "shoal-qa bench: cluster down: %v\n", err)
			}
			if c != nil {
				c.Close()
			}
		}()
	}
	if err != nil {
		return err
	}
	nodes := c.Nodes()
	if err := benchWait(ctx, "one cluster of 3 alive members", 3*time.Minute, func() (bool, string) {
		out, err := c.Output(ctx, nodes[0], "shoal", "status", "--json")
		if err != nil {
			return false, out
		}
		var st client.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return false, err.Error()
		}
		alive := 0
		for _, m := range st.Members {
			if m.State == client.StateAlive {
				alive++
			}
		}
		return alive == len(nodes), fmt.Sprintf("%d of %d alive", alive, len(nodes))
	}); err != nil {
		return err
	}
	if err := benchWait(ctx, "every scribe published its disks", time.Minute, func() (bool, string) {
		out, err := c.Output(ctx, nodes[0], "shoal", "state", "ls", "scribe/")
		n := strings.Count(out, `"id"`)
		return err == nil && n == 2*len(nodes), fmt.Sprintf("%d disks: %s", n, out)
	}); err != nil {
		return err
	}
	if out, err := c.Output(ctx, nodes[0], "shoal", "vsd", "create", "bench", "--size", fmt.Sprint(o.size), "--replicas", "2"); err != nil {
		return fmt.Errorf("vsd create: %w: %s", err, out)
	}
	sock := filepath.Join(c.NodeDir(nodes[0]), "run", "scribe.sock")
	uri := "nbd+unix:///bench?socket=" + sock
	// The VSD opens once its claim can be taken (the cluster has voters).
	if err := benchWait(ctx, "the VSD opens on node1", time.Minute, func() (bool, string) {
		out, err := exec.CommandContext(ctx, "qemu-img", "info", "-f", "raw", uri).CombinedOutput()
		return err == nil, string(out)
	}); err != nil {
		return err
	}
	// Keep the VSD open between fio runs, as a VM would.
	holder := exec.CommandContext(ctx, "qemu-io", "-f", "raw", "-c", "sleep 86400000", uri)
	if err := holder.Start(); err != nil {
		return fmt.Errorf("hold the VSD open: %w", err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()

	// unitCPU sums the CPU seconds of unit's processes on every node.
	unitCPU := func(unit string) float64 {
		var sum float64
		for _, n := range nodes {
			var rec struct {
				Pid int `json:"pid"`
			}
			b, err := os.ReadFile(filepath.Join(c.NodeDir(n), "pids", unit+".json"))
			if err == nil && json.Unmarshal(b, &rec) == nil && rec.Pid > 0 {
				sum += fiobench.ProcCPU(rec.Pid)
			}
		}
		return sum
	}
	scribeCPU := func() float64 { return unitCPU("scribe") }
	q, err := fiobench.StartQemuNBD(ctx, c.NodeDir(nodes[0]), o.size)
	if err != nil {
		return err
	}
	defer q.Stop()
	m, err := fiobench.StartQemuNBDMirror(ctx, c.NodeDir(nodes[0]), o.size)
	if err != nil {
		return err
	}
	defer m.Stop()
	targets := []fiobench.Target{
		{Name: "scribe 2-replica", URI: uri, CPU: scribeCPU},
		{Name: "qemu-nbd 2 copies", URI: m.URI, CPU: m.CPU},
		{Name: "qemu-nbd", URI: q.URI, CPU: q.CPU},
	}
	diskCPU := unitCPU("fusedisk")
	tab, err := fiobench.MeasureAll(ctx, targets, fiobench.Plan{Span: o.span, Runtime: o.runtime, Rows: o.rows, Repeat: o.repeat})
	if err != nil {
		return err
	}
	disks := map[proccluster.DiskMode]string{
		proccluster.DiskModeFile: "the image files themselves (O_DIRECT)",
		proccluster.DiskModeLoop: "loop devices with direct I/O over the image files",
		proccluster.DiskModeFUSE: fmt.Sprintf("FUSE files (qa faultdisk; its servers used %.1f CPU-seconds during the rows, not in scribe's CPU/IO)", unitCPU("fusedisk")-diskCPU),
	}[o.diskMode]
	tab.Note = fmt.Sprintf("3-node process cluster in %s: VSD of %d bytes, 2 replicas; disks (--disk-mode %s) are %s, image files on the same file system as qemu-nbd's raw file; scribe CPU = all three scribe processes", dir, o.size, o.diskMode, disks)
	if len(o.env) > 0 {
		tab.Note += "; daemon environment " + strings.Join(o.env, " ")
	}
	fmt.Print(tab)
	return nil
}

// benchWait polls cond every 250 ms until it holds or timeout passes.
func benchWait(ctx context.Context, what string, timeout time.Duration, cond func() (bool, string)) error {
	start := time.Now()
	for {
		ok, why := cond()
		if ok {
			fmt.Printf("%s: after %v\n", what, time.Since(start).Round(10*time.Millisecond))
			return nil
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("%s: not after %v: %s", what, timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
