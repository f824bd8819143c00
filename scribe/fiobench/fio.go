package fiobench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrMissingTool: fio (with its nbd engine), qemu-img or qemu-nbd is not
// installed (Debian packages fio, qemu-utils).
var ErrMissingTool = errors.New("benchmark tool missing")

// Row is one fio job of the suite.
type Row struct {
	Name string
	Args []string
	// Unit is "IOPS" or "MB/s".
	Unit string
}

// Rows is the suite: 4k random write and read at QD1 and QD32, 1 MiB
// sequential write and read at QD8, 4k write with a flush after each.
func Rows() []Row {
	return []Row{
		{"4k randwrite QD1", []string{"--rw=randwrite", "--bs=4k", "--iodepth=1"}, "IOPS"},
		{"4k randwrite QD32", []string{"--rw=randwrite", "--bs=4k", "--iodepth=32"}, "IOPS"},
		{"4k randread QD1", []string{"--rw=randread", "--bs=4k", "--iodepth=1"}, "IOPS"},
		{"4k randread QD32", []string{"--rw=randread", "--bs=4k", "--iodepth=32"}, "IOPS"},
		{"1M seq write QD8", []string{"--rw=write", "--bs=1M", "--iodepth=8"}, "MB/s"},
		{"1M seq read QD8", []string{"--rw=read", "--bs=1M", "--iodepth=8"}, "MB/s"},
		{"4k write+flush QD1", []string{"--rw=randwrite", "--bs=4k", "--iodepth=1", "--fsync=1"}, "IOPS"},
	}
}

// CheckTools reports ErrMissingTool unless fio (with nbd), qemu-img and
// qemu-nbd are installed.
func CheckTools() error {
	for _, n := range []string{"fio", "qemu-img", "qemu-nbd"} {
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("%s: %w: %w", n, ErrMissingTool, err)
		}
	}
	if out, _ := exec.Command("fio", "--enghelp").CombinedOutput(); !bytes.Contains(out, []byte("nbd")) {
		return fmt.Errorf("fio was built without the nbd engine: %w", ErrMissingTool)
	}
	return nil
}

// Result is what fio measured for one job.
type Result struct {
	IOPS, BW float64 // BW in bytes/s
	IOs      int64
}

// Value is the result in row's unit.
func (r Result) Value(row Row) float64 {
	if row.Unit == "MB/s" {
		return r.BW / 1e6
	}
	return r.IOPS
}

// Fio runs one fio job against the NBD URI.
func Fio(ctx context.Context, uri string, args ...string) (Result, error) {
	args = append([]string{"--name=bench", "--ioengine=nbd", "--uri=" + uri, "--output-format=json"}, args...)
	cmd := exec.CommandContext(ctx, "fio", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Result{}, fmt.Errorf("fio %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	var res struct {
		Jobs []struct {
			Read, Write struct {
				IOPS     float64 `json:"iops"`
				BW       float64 `json:"bw_bytes"`
				TotalIOs int64   `json:"total_ios"`
			}
		} `json:"jobs"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) == 0 {
		return Result{}, fmt.Errorf("fio json output: %v: %s", err, out)
	}
	j := res.Jobs[0]
	return Result{IOPS: j.Read.IOPS + j.Write.IOPS, BW: j.Read.BW + j.Write.BW, IOs: j.Read.TotalIOs + j.Write.TotalIOs}, nil
}

// SelfCPU is this process's user+system CPU time in seconds.
func SelfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// ProcCPU is another process's user+system CPU time in seconds.
func ProcCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return 0
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// QemuNBD is a running `qemu-nbd --cache=none` on a raw file.
type QemuNBD struct {
	URI string
	pid int
}

// StartQemuNBD creates a raw file of size bytes in dir and serves it with
// qemu-nbd (export "bench") on a UNIX socket in dir.
func StartQemuNBD(ctx context.Context, dir string, size int64) (*QemuNBD, error) {
	return startQemuNBD(ctx, dir, "qemu-nbd", size, 1)
}

// StartQemuNBDMirror is StartQemuNBD with every write going to two raw
// files in dir (QEMU's quorum driver, vote threshold 1, reads from the
// first file): two synchronous copies on one machine with no network, a
// baseline for what a second replica costs here.
func StartQemuNBDMirror(ctx context.Context, dir string, size int64) (*QemuNBD, error) {
	return startQemuNBD(ctx, dir, "qemu-nbd-mirror", size, 2)
}

func startQemuNBD(ctx context.Context, dir, name string, size int64, copies int) (*QemuNBD, error) {
	var raws []string
	for i := range copies {
		raw := filepath.Join(dir, name+".img")
		if copies > 1 {
			raw = filepath.Join(dir, fmt.Sprintf("%s-%d.img", name, i))
		}
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-f", "raw", raw, strconv.FormatInt(size, 10)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("qemu-img create: %w: %s", err, out)
		}
		raws = append(raws, raw)
	}
	sock := filepath.Join(dir, name+".sock")
	pidFile := filepath.Join(dir, name+".pid")
	args := []string{"--fork", "--persistent", "--shared=8", "--cache=none", "-x", "bench", "-k", sock, "--pid-file=" + pidFile}
	if copies == 1 {
		args = append(args, "-f", "raw", raws[0])
	} else {
		opts := "driver=quorum,vote-threshold=1,read-pattern=fifo"
		for i, raw := range raws {
			opts += fmt.Sprintf(",children.%d.driver=raw,children.%d.file.driver=file,children.%d.file.filename=%s", i, i, i, raw)
		}
		args = append(args, "--image-opts", opts)
	}
	if out, err := exec.CommandContext(ctx, "qemu-nbd", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("qemu-nbd: %w: %s", err, out)
	}
	text, err := os.ReadFile(pidFile)
	if err != nil {
		return nil, fmt.Errorf("qemu-nbd pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, fmt.Errorf("qemu-nbd pid file: %w", err)
	}
	return &QemuNBD{URI: "nbd+unix:///bench?socket=" + sock, pid: pid}, nil
}

// CPU is qemu-nbd's CPU time in seconds.
func (q *QemuNBD) CPU() float64 { return ProcCPU(q.pid) }

// Stop terminates qemu-nbd.
func (q *QemuNBD) Stop() error { return syscall.Kill(q.pid, syscall.SIGTERM) }

// Target is one server the suite measures.
type Target struct {
	Name string
	URI  string
	// CPU returns the server's cumulative CPU seconds.
	CPU func() float64
}

// Measure is one target's figure for one row.
type Measure struct {
	Value    float64
	CPUPerIO time.Duration
}

// Table holds the suite's figures: Values[row][target], the median over
// the rounds when a row ran more than once.
type Table struct {
	// Note describes the run (printed first).
	Note    string
	Targets []string
	Rows    []Row
	Values  [][]Measure
	// Rounds[row][round][target] are the single runs behind Values;
	// empty when the table was built by hand.
	Rounds [][][]Measure
}

// Plan says what MeasureAll runs.
type Plan struct {
	// Span is the range the rows address, prefilled. Zero value: 256 MiB.
	Span int64
	// Runtime per run. Zero value: 3 s.
	Runtime time.Duration
	// Rows keeps only rows whose name contains it. Zero value: all.
	Rows string
	// Repeat runs every row this many rounds, each round every target
	// once, the order reversed every other round so a drift in the
	// machine's load does not favour one target. Zero value: 1.
	Repeat int
}

// MeasureAll prefills every target (span bytes written sequentially, so
// reads hit data) and runs the plan's rows against each.
func MeasureAll(ctx context.Context, targets []Target, p Plan) (*Table, error) {
	if p.Span == 0 {
		p.Span = 256 << 20
	}
	if p.Runtime == 0 {
		p.Runtime = 3 * time.Second
	}
	p.Repeat = max(p.Repeat, 1)
	spanArg := fmt.Sprintf("--size=%d", p.Span)
	for _, t := range targets {
		if _, err := Fio(ctx, t.URI, "--rw=write", "--bs=1M", "--iodepth=8", spanArg); err != nil {
			return nil, fmt.Errorf("prefill %s: %w", t.Name, err)
		}
	}
	tab := &Table{}
	for _, t := range targets {
		tab.Targets = append(tab.Targets, t.Name)
	}
	for _, row := range Rows() {
		if p.Rows != "" && !strings.Contains(row.Name, p.Rows) {
			continue
		}
		args := append([]string{spanArg, "--time_based", fmt.Sprintf("--runtime=%d", max(1, int(p.Runtime.Seconds())))}, row.Args...)
		var rounds [][]Measure
		for round := range p.Repeat {
			ms := make([]Measure, len(targets))
			for k := range targets {
				i := k
				if round%2 == 1 {
					i = len(targets) - 1 - k
				}
				t := targets[i]
				cpu0 := t.CPU()
				r, err := Fio(ctx, t.URI, args...)
				if err != nil {
					return nil, fmt.Errorf("%s on %s: %w", row.Name, t.Name, err)
				}
				cpu := t.CPU() - cpu0
				ms[i] = Measure{Value: r.Value(row), CPUPerIO: time.Duration(1e9 * cpu / float64(max(r.IOs, 1)))}
			}
			rounds = append(rounds, ms)
		}
		med := make([]Measure, len(targets))
		for i := range targets {
			med[i] = Measure{
				Value:    median(rounds, func(m []Measure) float64 { return m[i].Value }),
				CPUPerIO: time.Duration(median(rounds, func(m []Measure) float64 { return float64(m[i].CPUPerIO) })),
			}
		}
		tab.Rows = append(tab.Rows, row)
		tab.Values = append(tab.Values, med)
		tab.Rounds = append(tab.Rounds, rounds)
	}
	return tab, nil
}

// median is the median of f over the rounds (the mean of the middle two
// for an even count).
func median(rounds [][]Measure, f func([]Measure) float64) float64 {
	if len(rounds) == 0 {
		return 0
	}
	v := make([]float64, len(rounds))
	for k, m := range rounds {
		v[k] = f(m)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// ratio is target i's value over the last target's (the reference), 0
// when the reference measured nothing.
func ratio(m []Measure, i int) float64 {
	ref := m[len(m)-1].Value
	if ref == 0 {
		return 0
	}
	return m[i].Value / ref
}

// Ratio is target i's value over the last target's (the reference) for
// row r: with several rounds, the median of each round's ratio, so a
// target is compared with the reference measured next to it.
func (t *Table) Ratio(r, i int) float64 {
	if r < len(t.Rounds) && len(t.Rounds[r]) > 0 {
		return median(t.Rounds[r], func(m []Measure) float64 { return ratio(m, i) })
	}
	return ratio(t.Values[r], i)
}

// RatioRange is the lowest and highest of row r's per-round ratios for
// target i (both Ratio with one round).
func (t *Table) RatioRange(r, i int) (lo, hi float64) {
	if r >= len(t.Rounds) || len(t.Rounds[r]) == 0 {
		x := t.Ratio(r, i)
		return x, x
	}
	for k, m := range t.Rounds[r] {
		x := ratio(m, i)
		if k == 0 || x < lo {
			lo = x
		}
		if k == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

// String formats the table: for every target its value, its ratio to the
// last target (the reference) and its CPU per I/O.
func (t *Table) String() string {
	var b strings.Builder
	if t.Note != "" {
		fmt.Fprintf(&b, "%s\n", t.Note)
	}
	rounds := 0
	for _, rs := range t.Rounds {
		rounds = max(rounds, len(rs))
	}
	if rounds > 1 {
		fmt.Fprintf(&b, "%d rounds per row: medians, ratios the median of each round's, their range in brackets\n", rounds)
	}
	fmt.Fprintf(&b, "%-20s", "row")
	for i, n := range t.Targets {
		fmt.Fprintf(&b, " %16s", n)
		if i < len(t.Targets)-1 {
			fmt.Fprintf(&b, " %7s", "ratio")
			if rounds > 1 {
				fmt.Fprintf(&b, " %11s", "range")
			}
		}
		fmt.Fprintf(&b, " %11s", "CPU/IO")
	}
	b.WriteByte('\n')
	for r, row := range t.Rows {
		fmt.Fprintf(&b, "%-20s", row.Name)
		for i, m := range t.Values[r] {
			fmt.Fprintf(&b, " %11.0f %4s", m.Value, row.Unit)
			if i < len(t.Targets)-1 {
				fmt.Fprintf(&b, " %6.2fx", t.Ratio(r, i))
				if rounds > 1 {
					lo, hi := t.RatioRange(r, i)
					fmt.Fprintf(&b, " %11s", fmt.Sprintf("[%.2f-%.2f]", lo, hi))
				}
			}
			fmt.Fprintf(&b, " %8.1f µs", float64(m.CPUPerIO)/1e3)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
