package localvsd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/scribe/fiobench"
	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// BenchmarkFioVersusQemuNBD runs the fio suite (package fiobench) against
// this package's NBD path (one replica on a file-backed chunk store opened
// with O_DIRECT through io_uring, again with blocking system calls, and
// opened buffered) and against
// `qemu-nbd --cache=none -f raw` serving a raw file in the same directory,
// and prints all four with the ratios to qemu-nbd and the server CPU per
// I/O. Run:
//
//	go test -run=^$ -bench=FioVersusQemuNBD -benchtime=1x ./scribe/internal/localvsd/
//
// SHOAL_BENCH_RUNTIME sets the seconds per row (default 3);
// SHOAL_BENCH_ROWS keeps only rows whose name contains it;
// SHOAL_BENCH_DIR the directory for both files (default: a temp dir).
func BenchmarkFioVersusQemuNBD(b *testing.B) {
	if err := fiobench.CheckTools(); err != nil {
		b.Skip(err)
	}
	runtime := 3
	if s := os.Getenv("SHOAL_BENCH_RUNTIME"); s != "" {
		runtime, _ = strconv.Atoi(s)
	}
	dir := b.TempDir()
	if d := os.Getenv("SHOAL_BENCH_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "bench"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	const size = 1 << 30
	ctx := context.Background()
	var targets []fiobench.Target
	for i, opts := range []chunkstore.FileOptions{{Direct: true}, {Direct: true, IO: chunkstore.IOSyscalls}, {}} {
		store := newStore(b, dir, 2*size, opts)
		v, err := New(Config{Store: store, VSD: chunkstore.ID{0xbe}, Size: size, Epoch: 1})
		if err != nil {
			b.Fatal(err)
		}
		name := []string{"scribe", "scribe syscalls", "scribe buffered"}[i]
		uri, stop, err := fiobench.ServeNBD(ctx, dir, fmt.Sprintf("bench%d", i), v, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(stop)
		targets = append(targets, fiobench.Target{Name: name, URI: uri, CPU: fiobench.SelfCPU})
	}
	q, err := fiobench.StartQemuNBD(ctx, dir, size)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Stop() })
	targets = append(targets, fiobench.Target{Name: "qemu-nbd", URI: q.URI, CPU: q.CPU})

	tab, err := fiobench.MeasureAll(ctx, targets, fiobench.Plan{Runtime: time.Duration(runtime) * time.Second, Rows: os.Getenv("SHOAL_BENCH_ROWS")})
	if errors.Is(err, fiobench.ErrMissingTool) {
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	for r, row := range tab.Rows {
		b.ReportMetric(tab.Ratio(r, 0), strings.ReplaceAll(row.Name, " ", "_")+"_ratio")
	}
	b.Log("\n" + tab.String())
	fmt.Print(tab)
}
