package appliance

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/shoal-hci/shoal/appliance/internal/sysmon"
	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/scribe"
)

// Scribe runs the `shoal scribe` daemon: data disks, the chunk service
// on the backplane and NBD for local VMs.
func Scribe(ctx context.Context, env *verb.Env, args []string) error {
	cfg := scribe.DefaultConfig()
	fs := env.FlagSet("scribe")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "shoal peer's data dir (this node's identity and cluster credentials)")
	fs.StringVar(&cfg.PeerSocket, "peer-socket", cfg.PeerSocket, "shoal peer's local API socket")
	fs.StringVar(&cfg.NBDSocket, "socket", cfg.NBDSocket, "NBD socket: one export per VSD name")
	fs.StringVar(&cfg.ChunkListen, "listen", cfg.ChunkListen, "chunk service listen address (mutual TLS)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "chunk service address other nodes dial (default: this node's backplane address, the port of --listen)")
	disks := fs.String("disks", "", "comma-separated globs of data disks (default: "+scribe.DefaultDiskGlob+" if it matches anything, else every whole block device except the boot disk)")
	force := fs.String("force-format", "", "comma-separated disks to format even if they hold other data (THEIR DATA IS LOST)")
	fs.BoolVar(&cfg.Buffered, "buffered", false, "open disks without O_DIRECT (tests, tmpfs)")
	fs.BoolVar(&cfg.NoUring, "no-io-uring", false, "do disk I/O with blocking system calls instead of io_uring")
	fs.BoolVar(&cfg.WriteThrough, "write-through", false, "acknowledge a write only once every replica has it (default: writes without FUA are acknowledged at once and reach the replicas in the background; FLUSH waits for them)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return verb.Usagef("scribe takes no arguments")
	}
	if *disks != "" {
		cfg.DiskGlobs = strings.Split(*disks, ",")
	} else if m, _ := globAny(scribe.DefaultDiskGlob); m || os.Getenv("SHOAL_QA_CLUSTER") != "" {
		// The qa harness (and a test bench) put file disks there. A
		// harness node never looks at the host's block devices, even
		// when it was given no disks.
		cfg.DiskGlobs = []string{scribe.DefaultDiskGlob}
	}
	if *force != "" {
		cfg.ForceFormat = strings.Split(*force, ",")
	}
	// A blocking read or write (buffered disks, --no-io-uring, a kernel
	// without io_uring) holds an OS thread with its P until sysmon hands
	// the P off; more Ps keep more I/Os in flight (docs/scribe.md,
	// figures; with io_uring, 2 Ps measured no better). Respect an
	// explicit GOMAXPROCS.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(8, 4*runtime.NumCPU()))
	}
	// The runtime's sysmon thread ticks every ~70 µs while any I/O waits
	// in a system call: a quarter of scribe's CPU on a write+flush. A
	// longer timer slack on that one thread cuts it (package sysmon).
	if tid, err := sysmon.Relax(sysmon.DefaultSlack); err != nil {
		env.Log.Info("sysmon timer slack unchanged; the runtime costs more CPU per I/O", "err", err)
	} else {
		env.Log.Debug("sysmon timer slack set", "thread", tid, "slack", sysmon.DefaultSlack)
	}
	cfg.Log = env.Log

	return runDaemon(ctx, env, func(ready func()) (daemonRunner, error) {
		cfg.Ready = ready
		return scribe.New(cfg)
	})
}

// daemonRunner is what a daemon's New returns.
type daemonRunner interface{ Run(context.Context) error }

// runDaemon builds a daemon with mk, giving it the systemd Ready callback,
// runs it until ctx ends, and waits for the watchdog goroutine.
func runDaemon(ctx context.Context, env *verb.Env, mk func(ready func()) (daemonRunner, error)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d, err := mk(systemdReady(ctx, env, &wg))
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// systemdReady returns the Ready callback of a daemon: it tells systemd
// READY=1 and, when the unit has WatchdogSec, sends WATCHDOG=1 every half
// interval from a goroutine that wg tracks and ctx stops.
func systemdReady(ctx context.Context, env *verb.Env, wg *sync.WaitGroup) func() {
	return func() {
		if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
			env.Log.Warn("sd_notify READY", "err", err)
		} else if ok {
			env.Log.Debug("notified systemd: ready")
		}
		interval, err := daemon.SdWatchdogEnabled(false)
		if err != nil || interval == 0 {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(interval / 2)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					daemon.SdNotify(false, daemon.SdNotifyWatchdog)
				}
			}
		}()
	}
}

// globAny reports whether pattern matches at least one path.
func globAny(pattern string) (bool, error) {
	m, err := filepath.Glob(pattern)
	return len(m) > 0, err
}
