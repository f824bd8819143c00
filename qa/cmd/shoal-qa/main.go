// Command shoal-qa runs a process-level Shoal cluster on this machine (one
// network and mount namespace per node, real shoal daemons) and injects
// faults into it. It is a thin layer over qa/internal/proccluster; see
// docs/qa.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-hci/shoal/qa/internal/faultdisk"
	"github.com/shoal-hci/shoal/qa/internal/proccluster"
)

const usage = `shoal-qa: process-level Shoal clusters with fault injection (needs root).

Usage: shoal-qa [--dir D] VERB [ARGS]   (D defaults to $SHOAL_QA_DIR or /tmp/shoal-qa)

  up [-n N] [--disks K] [--disk-size SIZE] [--disk-mode fuse|file|loop] [--env KEY=VALUE]...
     [--shoal BIN] [--ready-timeout D]
                              build shoal, create N nodes, start their daemons
  status                      nodes, cables, partitions, daemons, disks, addresses
  logs NODE [UNIT]            print a node's logs (UNIT: a daemon or fusedisk)
  exec NODE -- CMD [ARGS]     run CMD inside the node (its network and mounts)
  down [--all]                remove everything the cluster (or every cluster) left
  kill NODE                   SIGKILL all the node's daemons
  restart NODE                stop and start the node's daemons, wait until ready
  freeze NODE | thaw NODE     SIGSTOP / SIGCONT the node's daemons
  cut NODE | heal NODE        pull / plug back the node's network cable
  partition A,B / C           no traffic between the two sides
  heal                        remove the partition
  disk-fail NODE DISK         DISK (disk1..) returns EIO on every I/O
  disk-full NODE DISK         writes that allocate on DISK return ENOSPC
  disk-heal NODE DISK         DISK works again
  add-node                    plug in a new node and start its daemons
  vm VERB ...                 image-level clusters in QEMU (shoal-qa vm help)
  bench scribe [FLAGS]        fio: a 2-replica VSD in a cluster vs qemu-nbd (shoal-qa bench help)
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defDir := os.Getenv("SHOAL_QA_DIR")
	if defDir == "" {
		defDir = proccluster.DefaultOptions().Dir
	}
	global := flag.NewFlagSet("shoal-qa", flag.ContinueOnError)
	global.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	dir := global.String("dir", defDir, "cluster directory")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	args = global.Args()
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	verb, args := args[0], args[1:]
	if verb == "help" {
		fmt.Print(usage)
		return 0
	}
	err := dispatch(ctx, verb, *dir, args)
	var uerr usageError
	var help helpRequested
	switch {
	case err == nil:
		return 0
	case errors.As(err, &help):
		fmt.Print(string(help))
		return 0
	case errors.As(err, &uerr):
		fmt.Fprintf(os.Stderr, "shoal-qa %s: %v\n", verb, err)
		return 2
	default:
		var ee *exec.ExitError
		if verb == "exec" && errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "shoal-qa %s: %v\n", verb, err)
		return 1
	}
}

type usageError string

func (e usageError) Error() string { return string(e) }

// helpRequested is returned for -h or --help: run prints the usage text it
// holds to stdout and exits 0.
type helpRequested string

func (h helpRequested) Error() string { return "help requested" }

// parseFlags parses args into fs; -h or --help yields helpRequested(text).
func parseFlags(fs *flag.FlagSet, args []string, text string) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return helpRequested(text)
	case err != nil:
		return usageError(err.Error())
	}
	return nil
}

func dispatch(ctx context.Context, verb, dir string, args []string) error {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.StringVar(&dir, "dir", dir, "cluster directory")
	fs.SetOutput(io.Discard)
	var (
		nodes    = fs.Int("n", 3, "number of nodes (up)")
		disks    = fs.Int("disks", 4, "data disks per node (up)")
		diskSize = fs.String("disk-size", "8G", "size of each sparse data disk, e.g. 512M, 8G (up)")
		diskMode = fs.String("disk-mode", "fuse", "fuse (fault injection), file (the image files) or loop (loop devices with direct I/O) (up)")
		shoalBin = fs.String("shoal", "", "shoal binary to run instead of building one (up)")
		readyTO  = fs.Duration("ready-timeout", 60*time.Second, "how long a daemon may take to report ready (up)")
		all      = fs.Bool("all", false, "remove every harness cluster on the machine (down)")
		mount    = fs.String("mount", "", "mount point (fusedisk)")
		socket   = fs.String("socket", "", "control socket (fusedisk)")
		diskList listFlag
		envList  listFlag
	)
	fs.Var(&diskList, "disk", "NAME=PATH, repeated (fusedisk)")
	fs.Var(&envList, "env", "KEY=VALUE added to every daemon's environment, repeated (up)")
	// Flags end at the first argument that is not one, so for exec the
	// command's own flags are left alone.
	if err := parseFlags(fs, args, usage); err != nil {
		return err
	}
	args = fs.Args()
	needArgs := func(n int, what string) error {
		if len(args) != n {
			return usageError(fmt.Sprintf("want %s", what))
		}
		return nil
	}
	open := func() (*proccluster.Cluster, error) {
		if err := proccluster.CheckPrereqs(); err != nil && errors.Is(err, proccluster.ErrNotRoot) {
			return nil, err
		}
		return proccluster.Open(dir, nil, os.Stdout)
	}
	oneNode := func(f func(*proccluster.Cluster, context.Context, string) error) error {
		if err := needArgs(1, "NODE"); err != nil {
			return err
		}
		c, err := open()
		if err != nil {
			return err
		}
		return f(c, ctx, args[0])
	}
	nodeDisk := func(f func(*proccluster.Cluster, context.Context, string, string) error) error {
		if err := needArgs(2, "NODE DISK"); err != nil {
			return err
		}
		c, err := open()
		if err != nil {
			return err
		}
		return f(c, ctx, args[0], args[1])
	}

	switch verb {
	case "up":
		if err := needArgs(0, "no arguments, only flags"); err != nil {
			return err
		}
		size, err := parseSize(*diskSize)
		if err != nil {
			return usageError(err.Error())
		}
		mode, err := proccluster.ParseDiskMode(*diskMode)
		if err != nil {
			return usageError(err.Error())
		}
		if *disks == 0 {
			*disks = -1 // none
		}
		opts := proccluster.Options{Nodes: *nodes, Dir: dir, ShoalBin: *shoalBin, Disks: *disks, DiskSize: size, DiskMode: mode, DaemonEnv: envList,
			ReadyTimeout: *readyTO, Out: os.Stdout,
			Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
		if opts.ShoalBin != "" {
			if opts.ShoalBin, err = filepath.Abs(opts.ShoalBin); err != nil {
				return err
			}
		}
		if _, err := proccluster.Up(ctx, opts); err != nil {
			if errors.Is(err, proccluster.ErrNotRoot) || errors.Is(err, proccluster.ErrMissingTool) || errors.Is(err, proccluster.ErrAlreadyUp) {
				return err
			}
			return fmt.Errorf("%w\n(what was built stays for inspection; shoal-qa down --dir %s removes it)", err, dir)
		}
		return nil
	case "down":
		if err := needArgs(0, "no arguments"); err != nil {
			return err
		}
		if *all {
			return proccluster.DownAll(ctx, os.Stdout)
		}
		if err := proccluster.Down(ctx, dir, os.Stdout); err != nil {
			return err
		}
		fmt.Printf("shoal-qa: down; logs stay in %s\n", filepath.Join(dir, "nodes"))
		return nil
	case "status":
		c, err := open()
		if err != nil {
			return err
		}
		return c.PrintStatus(ctx, os.Stdout)
	case "logs":
		if len(args) < 1 || len(args) > 2 {
			return usageError("want NODE [UNIT]")
		}
		c, err := proccluster.Open(dir, nil, os.Stdout)
		if err != nil {
			return err
		}
		if _, err := c.Node(args[0]); err != nil {
			return err
		}
		units := append(c.Daemons(), "fusedisk")
		if len(args) == 2 {
			units = args[1:]
		}
		for _, u := range units {
			b, err := os.ReadFile(c.LogPath(args[0], u))
			if err != nil {
				if len(args) == 2 {
					return err
				}
				continue
			}
			if len(units) > 1 {
				fmt.Printf("==> %s <==\n", c.LogPath(args[0], u))
			}
			os.Stdout.Write(b)
		}
		return nil
	case "exec":
		node, argv, err := execArgs(args)
		if err != nil {
			return err
		}
		c, err := open()
		if err != nil {
			return err
		}
		return c.Exec(ctx, node, os.Stdin, os.Stdout, os.Stderr, argv...)
	case "kill":
		return oneNode((*proccluster.Cluster).Kill)
	case "restart":
		return oneNode((*proccluster.Cluster).Restart)
	case "freeze":
		return oneNode((*proccluster.Cluster).Freeze)
	case "thaw":
		return oneNode((*proccluster.Cluster).Thaw)
	case "cut":
		return oneNode((*proccluster.Cluster).Cut)
	case "heal":
		if len(args) == 1 {
			return oneNode((*proccluster.Cluster).Heal)
		}
		if err := needArgs(0, "nothing (heal the partition) or NODE (plug its cable back)"); err != nil {
			return err
		}
		c, err := open()
		if err != nil {
			return err
		}
		return c.HealPartition(ctx)
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
	case "disk-fail":
		return nodeDisk((*proccluster.Cluster).DiskFail)
	case "disk-full":
		return nodeDisk((*proccluster.Cluster).DiskFull)
	case "disk-heal":
		return nodeDisk((*proccluster.Cluster).DiskHeal)
	case "add-node":
		if err := needArgs(0, "no arguments"); err != nil {
			return err
		}
		c, err := open()
		if err != nil {
			return err
		}
		_, err = c.AddNode(ctx)
		return err
	case "vm":
		return vmMain(ctx, dir, args) // image-level clusters (vm.go)
	case "bench":
		return benchMain(ctx, dir, args) // figures (bench.go)
	case "fusedisk":
		// Hidden: the per-node disk server that up starts.
		var backs []faultdisk.Backing
		for _, d := range diskList {
			name, path, ok := strings.Cut(d, "=")
			if !ok {
				return usageError("--disk wants NAME=PATH")
			}
			backs = append(backs, faultdisk.Backing{Name: name, Path: path})
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		return faultdisk.Serve(ctx, faultdisk.Config{Mountpoint: *mount, ControlSocket: *socket, Disks: backs, Log: log}, nil)
	}
	return usageError(fmt.Sprintf("unknown verb %q (shoal-qa help lists them)", verb))
}

// parseSides reads "A,B / C", "A,B/C" or "A,B" "/" "C".
func parseSides(args []string) ([]string, []string, error) {
	left, right, ok := strings.Cut(strings.Join(args, " "), "/")
	split := func(s string) []string {
		out := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
		sort.Strings(out)
		return out
	}
	a, b := split(left), split(right)
	if !ok || len(a) == 0 || len(b) == 0 {
		return nil, nil, usageError("want SIDE / SIDE, e.g. partition node1 / node2,node3")
	}
	return a, b, nil
}

// parseSize reads 512M, 8G, 1T or a byte count.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	case strings.HasSuffix(s, "T"):
		mult = 1 << 40
	}
	num := strings.TrimRight(s, "KMGT")
	var n int64
	if _, err := fmt.Sscan(num, &n); err != nil || n <= 0 || fmt.Sprint(n) != num {
		return 0, fmt.Errorf("bad size %q (want e.g. 512M, 8G)", s)
	}
	return n * mult, nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// execArgs splits the arguments of exec: NODE [--] CMD [ARGS].
func execArgs(args []string) (node string, argv []string, err error) {
	if len(args) < 2 {
		return "", nil, usageError("want NODE -- CMD [ARGS]")
	}
	node, argv = args[0], args[1:]
	if argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return "", nil, usageError("want NODE -- CMD [ARGS]")
	}
	return node, argv, nil
}
