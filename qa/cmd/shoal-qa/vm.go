package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/qa/internal/vmcluster"
)

const vmUsage = `shoal-qa vm: image-level Shoal clusters in QEMU (needs root). State in D/vm.

Usage: shoal-qa [--dir D] vm VERB [ARGS]

  up [-n N] [--image IMG] [--disks K] [--disk-size SIZE] [--mem MB] [--accel tcg|kvm]
     [--api-port P] [--slots S] [--wait] [--timeout D]
                              boot N copies of the image (default: newest out/shoal-*.img)
  wait [-n MEMBERS] [--timeout D]
                              until every node reports one cluster with MEMBERS alive
  status [--json]             per node: QEMU, cables (switch ports), phase, cluster, members
  exec NODE -- CMD [ARGS]     run CMD in the node (QEMU guest agent); exits with its status
  console NODE [--lines N]    the end of the node's serial console (all with --lines 0)
  kill NODE | start NODE      pull the power (SIGKILL QEMU) / power on again, same disks
  reset NODE | poweroff NODE  reset button / ACPI power button
  cut NODE [NIC] | heal NODE [NIC]
                              pull / plug back a cable (NIC 0 or 1; both by default)
  partition A,B / C           the switch passes no frame between the two sides
  heal                        remove the partition, drops and delays
  drop NODE on|off            the switch drops the node's frames (carrier stays up)
  delay NODE DURATION         the switch delays frames to the node (0 removes it)
  add-node                    plug in and boot another node
  down [--all]                remove every process, namespace, disk and socket (logs stay)
`

func vmMain(ctx context.Context, dir string, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Print(vmUsage)
		return nil
	}
	verb, args := args[0], args[1:]
	fs := flag.NewFlagSet("vm "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&dir, "dir", dir, "harness directory (the cluster lives in DIR/vm)")
	var (
		nodes    = fs.Int("n", 3, "nodes (up), alive members (wait; default: every node)")
		image    = fs.String("image", "", "disk image (up; default the newest out/shoal-*.img)")
		disks    = fs.Int("disks", 2, "data disks per node, 0 to 2 (up)")
		diskSize = fs.String("disk-size", "8G", "size of each sparse data disk (up)")
		mem      = fs.Int("mem", 1024, "MiB of memory per node (up)")
		accel    = fs.String("accel", "", "tcg or kvm (up; default: probe whether KVM works)")
		apiPort  = fs.Int("api-port", 17443, "localhost port for node1's HTTPS API, 0 for none (up)")
		slots    = fs.Int("slots", 0, "nodes the switch has ports for, counting add-node (up; default N+3)")
		wait     = fs.Bool("wait", false, "wait until the nodes form a cluster (up)")
		timeout  = fs.Duration("timeout", 20*time.Minute, "how long to wait (up --wait, wait)")
		asJSON   = fs.Bool("json", false, "machine-readable output (status)")
		lines    = fs.Int("lines", 40, "console lines, 0 for all (console)")
		all      = fs.Bool("all", false, "every image-level cluster on the machine (down)")
	)
	if err := parseFlags(fs, args, vmUsage); err != nil {
		return err
	}
	args = fs.Args()
	vmDir := filepath.Join(dir, "vm")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	needArgs := func(lo, hi int, what string) error {
		if len(args) < lo || len(args) > hi {
			return usageError("want " + what)
		}
		return nil
	}
	open := func() (*vmcluster.Cluster, error) {
		return vmcluster.Open(vmDir, vmcluster.Options{Log: log, Out: os.Stdout})
	}
	nodeVerb := func(f func(*vmcluster.Cluster, string) error) error {
		if err := needArgs(1, 1, "NODE"); err != nil {
			return err
		}
		c, err := open()
		if err != nil {
			return err
		}
		return f(c, args[0])
	}
	nicVerb := func(up bool) error {
		if err := needArgs(1, 2, "NODE [NIC]"); err != nil {
			return err
		}
		nic := -1
		if len(args) == 2 {
			n, err := strconv.Atoi(args[1])
			if err != nil {
				return usageError("NIC is 0 or 1")
			}
			nic = n
		}
		c, err := open()
		if err != nil {
			return err
		}
		return c.SetLink(ctx, args[0], nic, up)
	}

	switch verb {
	case "switchd":
		// Hidden: the switch daemon that up starts.
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		return vmcluster.ServeSwitch(sctx, dir, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	case "up":
		if err := needArgs(0, 0, "no arguments, only flags"); err != nil {
			return err
		}
		size, err := parseSize(*diskSize)
		if err != nil {
			return usageError(err.Error())
		}
		img := *image
		if img == "" {
			if img, err = newestImage("out"); err != nil {
				return err
			}
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		d := *disks
		if d == 0 {
			d = -1
		}
		port := *apiPort
		if port == 0 {
			port = -1
		}
		start := time.Now()
		c, err := vmcluster.Up(ctx, vmcluster.Options{Dir: vmDir, Image: img, Nodes: *nodes, Slots: *slots, DataDisks: d,
			DataDiskSize: size, MemMB: *mem, Accel: *accel, APIPort: port, QABin: self, Log: log, Out: os.Stdout})
		if err != nil {
			return err
		}
		fmt.Printf("vm up: %d nodes booting under %s from %s; consoles in %s/nodes/*/console.log\n", *nodes, c.Accel(), img, vmDir)
		if !*wait {
			return nil
		}
		return vmWait(ctx, c, *nodes, *timeout, start)
	case "wait":
		c, err := open()
		if err != nil {
			return err
		}
		want := len(c.Nodes())
		if flagSet(fs, "n") {
			want = *nodes
		}
		return vmWait(ctx, c, want, *timeout, time.Now())
	case "status":
		c, err := open()
		if err != nil {
			return err
		}
		return vmStatus(ctx, c, *asJSON)
	case "exec":
		node, argv, err := execArgs(args)
		if err != nil {
			return err
		}
		c, err := open()
		if err != nil {
			return err
		}
		res, err := c.Exec(ctx, node, argv...)
		if err != nil {
			return err
		}
		os.Stdout.Write(res.Stdout)
		os.Stderr.Write(res.Stderr)
		if res.ExitCode != 0 {
			return fmt.Errorf("%s exited with status %d in %s", argv[0], res.ExitCode, node)
		}
		return nil
	case "console":
		return nodeVerb(func(c *vmcluster.Cluster, n string) error {
			s, err := c.Console(n, *lines)
			if err == nil {
				fmt.Println(s)
			}
			return err
		})
	case "kill":
		return nodeVerb(func(c *vmcluster.Cluster, n string) error { return c.Kill(n) })
	case "start":
		return nodeVerb(func(c *vmcluster.Cluster, n string) error { return c.Start(ctx, n) })
	case "reset":
		return nodeVerb(func(c *vmcluster.Cluster, n string) error { return c.Reset(ctx, n) })
	case "poweroff":
		return nodeVerb(func(c *vmcluster.Cluster, n string) error { return c.PowerOff(ctx, n) })
	case "cut":
		return nicVerb(false)
	case "heal":
		if len(args) == 0 {
			c, err := open()
			if err != nil {
				return err
			}
			return c.Heal(ctx)
		}
		return nicVerb(true)
	case "partition":
		a, b, err := parseSides(args)
		if err != nil {
			return err
		}
		c, err := open()
		if err != nil {
			return err
		}
		return c.Partition(ctx, a, b)
	case "drop":
		if err := needArgs(2, 2, "NODE on|off"); err != nil {
			return err
		}
		if args[1] != "on" && args[1] != "off" {
			return usageError("want NODE on|off")
		}
		c, err := open()
		if err != nil {
			return err
		}
		return c.Drop(ctx, args[0], args[1] == "on")
	case "delay":
		if err := needArgs(2, 2, "NODE DURATION"); err != nil {
			return err
		}
		d, err := time.ParseDuration(args[1])
		if err != nil || d < 0 {
			return usageError("DURATION like 50ms, 0 to remove")
		}
		c, err := open()
		if err != nil {
			return err
		}
		return c.Delay(ctx, args[0], d)
	case "add-node":
		c, err := open()
		if err != nil {
			return err
		}
		_, err = c.AddNode(ctx)
		return err
	case "down":
		if *all {
			return vmcluster.DownAll(ctx, log)
		}
		return vmcluster.Down(ctx, vmDir, log)
	}
	return usageError(fmt.Sprintf("unknown vm verb %q (shoal-qa vm help lists them)", verb))
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// newestImage is the most recent out/shoal-*.img.
func newestImage(dir string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(dir, "shoal-*.img"))
	if len(m) == 0 {
		return "", fmt.Errorf("no image in %s/ (build one with `make image`, or pass --image)", dir)
	}
	sort.Slice(m, func(i, j int) bool {
		a, _ := os.Stat(m[i])
		b, _ := os.Stat(m[j])
		return a.ModTime().After(b.ModTime())
	})
	return m[0], nil
}

func vmWait(ctx context.Context, c *vmcluster.Cluster, want int, timeout time.Duration, start time.Time) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fmt.Printf("vm: waiting until every node reports one cluster with %d alive members (no input is given to any node)...\n", want)
	f, err := c.WaitFormed(wctx, nil, want, func(s string) {
		fmt.Printf("  %5.0fs  %s\n", time.Since(start).Seconds(), s)
	})
	if err != nil {
		return err
	}
	fmt.Printf("vm: cluster %s formed with %d alive members, %.0f s after start\n", f.ClusterID, want, time.Since(start).Seconds())
	return nil
}

func vmStatus(ctx context.Context, c *vmcluster.Cluster, asJSON bool) error {
	rows, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	fmt.Printf("%-7s %-8s %-14s %-10s %-10s %-7s %s\n", "NODE", "QEMU", "CABLES", "PHASE", "CLUSTER", "ALIVE", "BACKPLANE")
	for _, r := range rows {
		phase, cluster, alive := "?", "-", "-"
		if r.Peer != nil {
			phase, alive = r.Peer.Phase, strconv.Itoa(len(vmcluster.AliveNames(*r.Peer)))
			if r.Peer.ClusterID != "" {
				cluster = r.Peer.ClusterID[:min(8, len(r.Peer.ClusterID))]
			}
		}
		if r.PeerErr != "" {
			phase = "(" + vmcluster.BriefError(r.PeerErr) + ")"
		}
		run := "off"
		if !r.Running {
			phase = "-"
		}
		if r.Running {
			run = strconv.Itoa(r.Pid)
		}
		fmt.Printf("%-7s %-8s %-14s %-10s %-10s %-7s %s\n", r.Name, run, strings.Join(r.Ports, ","), phase, cluster, alive, r.API)
	}
	if p := c.APIPort(); p > 0 {
		fmt.Printf("node1's HTTPS API (mutual TLS): https://127.0.0.1:%d\n", p)
	}
	return nil
}
