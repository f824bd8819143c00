package fiobench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/loopcluster"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

// Config configures Run.
type Config struct {
	// Dir holds the disk files, the raw file and the sockets.
	// Zero value: a new directory in os.TempDir(), removed afterwards.
	Dir string
	// Replicas of the scribe VSD (and nodes in the loopback cluster).
	// Zero value: 2.
	Replicas int
	// Size of the VSD and of the raw file. Zero value: 1 GiB.
	Size int64
	// Span is the range the rows address, prefilled. Zero value: 256 MiB.
	Span int64
	// Runtime per row and server. Zero value: 3 s.
	Runtime time.Duration
	// Rows keeps only rows whose name contains it. Zero value: all.
	Rows string
	// Repeat runs every row this many rounds (Plan.Repeat). Zero value: 1.
	Repeat int
	// Buffered opens the chunk stores through the page cache.
	// Zero value: O_DIRECT, like qemu-nbd --cache=none.
	Buffered bool
	// Procs is GOMAXPROCS while the suite runs (restored afterwards):
	// scribe's I/O is blocking pread/pwrite, and each blocked call holds
	// a P until the runtime hands it off, so with few Ps few I/Os are in
	// flight. Zero value: leave GOMAXPROCS as it is.
	Procs int
	// Log receives scribe's logs. Zero value: discarded.
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Replicas == 0 {
		c.Replicas = 2
	}
	if c.Size == 0 {
		c.Size = 1 << 30
	}
	if c.Span == 0 {
		c.Span = 256 << 20
	}
	if c.Runtime == 0 {
		c.Runtime = 3 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Run measures a replicated scribe VSD (Config.Replicas in-process nodes;
// the owner reaches its own disk in-process and the others over the
// chunk service on loopback) against qemu-nbd --cache=none on a raw file
// in the same directory. The table's last column is qemu-nbd.
func Run(ctx context.Context, cfg Config) (*Table, error) {
	cfg = cfg.withDefaults()
	if err := CheckTools(); err != nil {
		return nil, err
	}
	if cfg.Procs > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cfg.Procs))
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "scribe-bench")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	scribe, stop, err := ServeReplicated(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer stop()
	q, err := StartQemuNBD(ctx, cfg.Dir, cfg.Size)
	if err != nil {
		return nil, err
	}
	defer q.Stop()
	tab, err := MeasureAll(ctx, []Target{scribe, {Name: "qemu-nbd", URI: q.URI, CPU: q.CPU}}, Plan{Span: cfg.Span, Runtime: cfg.Runtime, Rows: cfg.Rows, Repeat: cfg.Repeat})
	if tab != nil {
		tab.Note = fmt.Sprintf("GOMAXPROCS=%d, %d CPUs, chunk stores %s", runtime.GOMAXPROCS(0), runtime.NumCPU(), map[bool]string{false: "O_DIRECT", true: "buffered"}[cfg.Buffered])
	}
	return tab, err
}

// ServeReplicated starts a loopback cluster of cfg.Replicas nodes in
// cfg.Dir, opens a VSD with that many replicas owned by the first node
// and serves it over NBD on a UNIX socket. stop tears it all down.
func ServeReplicated(ctx context.Context, cfg Config) (t Target, stop func(), err error) {
	cfg = cfg.withDefaults()
	c, err := loopcluster.Start(loopcluster.Config{
		Dir: cfg.Dir, Nodes: cfg.Replicas, DiskSize: cfg.Size + cfg.Size/16 + 64<<20,
		Direct: !cfg.Buffered, Log: cfg.Log,
	})
	if err != nil {
		return Target{}, nil, fmt.Errorf("start the loopback cluster: %w", err)
	}
	v, err := replvol.Open(ctx, replvol.Config{
		VSD: chunkstore.ID{0xbe, 0x4c}, Size: cfg.Size, Replicas: cfg.Replicas, Epoch: 1,
		Pool: c.Pool("node1"), LocalNode: "node1", WriteBack: true, Log: cfg.Log,
	})
	if err != nil {
		c.Close()
		return Target{}, nil, err
	}
	uri, stopNBD, err := ServeNBD(ctx, cfg.Dir, "bench", v, cfg.Log)
	if err != nil {
		v.Close()
		c.Close()
		return Target{}, nil, err
	}
	stop = func() {
		stopNBD()
		v.Close()
		c.Close()
	}
	return Target{Name: fmt.Sprintf("scribe %d-replica", cfg.Replicas), URI: uri, CPU: SelfCPU}, stop, nil
}

// ServeNBD exports b as name on a UNIX socket in dir; stop ends it.
func ServeNBD(ctx context.Context, dir, name string, b nbd.Backend, log *slog.Logger) (uri string, stop func(), err error) {
	srv, err := nbd.New(nbd.Config{Logger: log})
	if err != nil {
		return "", nil, err
	}
	if err := srv.AddExport(name, b, nbd.ExportOptions{MultiConn: true}); err != nil {
		return "", nil, err
	}
	sock := filepath.Join(dir, name+".sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	return "nbd+unix:///" + name + "?socket=" + sock, func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("nbd serve", "err", err)
		}
	}, nil
}
