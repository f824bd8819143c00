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

func TestTableRounds(t *testing.T) {
	row := func(s, q float64) []Measure {
		return []Measure{{Value: s, CPUPerIO: time.Duration(s) * time.Microsecond}, {Value: q}}
	}
	tab := &Table{
		Targets: []string{"scribe", "qemu-nbd"},
		Rows:    Rows()[:1],
		Values:  [][]Measure{{{Value: 150}, {Value: 200}}},
		// Rounds 0.5x, 1.0x and 2.0x: the median ratio is 1.0x although
		// the median values (150 and 200) give 0.75x.
		Rounds: [][][]Measure{{row(100, 200), row(150, 150), row(400, 200)}},
	}
	if got := tab.Ratio(0, 0); got != 1 {
		t.Errorf("ratio %v, want the median round's 1", got)
	}
	if lo, hi := tab.RatioRange(0, 0); lo != 0.5 || hi != 2 {
		t.Errorf("range %v-%v, want 0.5-2", lo, hi)
	}
	s := tab.String()
	for _, want := range []string{"3 rounds per row", "1.00x", "[0.50-2.00]"} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
}

func TestMedian(t *testing.T) {
	val := func(m []Measure) float64 { return m[0].Value }
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		var rounds [][]Measure
		for _, v := range tt.in {
			rounds = append(rounds, []Measure{{Value: v}})
		}
		if got := median(rounds, val); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
