package fiobench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkScribeVersusQemuNBD prints the suite's table for a 2-replica
// VSD (two in-process nodes over the chunk service on loopback) against
// qemu-nbd --cache=none. Run:
//
//	go test -run='^$' -bench=ScribeVersusQemuNBD -benchtime=1x ./scribe/fiobench/
//
// SHOAL_BENCH_RUNTIME sets seconds per row (default 3), SHOAL_BENCH_ROWS
// keeps rows whose name contains it, SHOAL_BENCH_DIR the directory,
// SHOAL_BENCH_BUFFERED=1 opens the chunk stores buffered,
// SHOAL_BENCH_PROCS sets GOMAXPROCS for the run.
func BenchmarkScribeVersusQemuNBD(b *testing.B) {
	cfg := Config{Rows: os.Getenv("SHOAL_BENCH_ROWS"), Dir: os.Getenv("SHOAL_BENCH_DIR"), Buffered: os.Getenv("SHOAL_BENCH_BUFFERED") == "1"}
	if s := os.Getenv("SHOAL_BENCH_RUNTIME"); s != "" {
		n, _ := strconv.Atoi(s)
		cfg.Runtime = time.Duration(n) * time.Second
	}
	cfg.Procs, _ = strconv.Atoi(os.Getenv("SHOAL_BENCH_PROCS"))
	if cfg.Dir != "" {
		dir, err := os.MkdirTemp(cfg.Dir, "bench")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	for range b.N {
		tab, err := Run(context.Background(), cfg)
		if errors.Is(err, ErrMissingTool) {
			b.Skip(err)
		}
		if err != nil {
			b.Fatal(err)
		}
		fmt.Print(tab)
		for r, row := range tab.Rows {
			b.ReportMetric(tab.Ratio(r, 0), strings.ReplaceAll(row.Name, " ", "_")+"_ratio")
		}
	}
}

func TestTableFormat(t *testing.T) {
	tab := &Table{
		Targets: []string{"scribe", "qemu-nbd"},
		Rows:    Rows()[:1],
		Values:  [][]Measure{{{Value: 200, CPUPerIO: 30 * time.Microsecond}, {Value: 100, CPUPerIO: 40 * time.Microsecond}}},
	}
	if got := tab.Ratio(0, 0); got != 2 {
		t.Fatalf("ratio %v, want 2", got)
	}
	s := tab.String()
	for _, want := range []string{"4k randwrite QD1", "2.00x", "30.0 µs", "qemu-nbd"} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
}

func TestProcCPUMalformed(t *testing.T) {
	if got := ProcCPU(-1); got != 0 {
		t.Fatalf("CPU of a missing process: %v", got)
	}
	if got := ProcCPU(os.Getpid()); got < 0 {
		t.Fatalf("CPU of this process: %v", got)
	}
}
