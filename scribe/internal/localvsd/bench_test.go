package localvsd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// BenchmarkFioVersusQemuNBD runs the fio suite against this package's
// NBD path (one replica on a file-backed chunk store opened with O_DIRECT,
// and again opened buffered) and against
// `qemu-nbd --cache=none -f raw` serving a raw file in the same directory,
// and prints both with their ratio and the server CPU per I/O. Run:
//
//	go test -run=^$ -bench=FioVersusQemuNBD -benchtime=1x ./scribe/internal/localvsd/
//
// SHOAL_BENCH_RUNTIME sets the seconds per row (default 3);
// SHOAL_BENCH_ROWS keeps only rows whose name contains it;
// SHOAL_BENCH_DIR the directory for both files (default: a temp dir).
func BenchmarkFioVersusQemuNBD(b *testing.B) {
	needTool(b, "fio", "qemu-nbd")
	if out, _ := exec.Command("fio", "--enghelp").CombinedOutput(); !bytes.Contains(out, []byte("nbd")) {
		b.Skip("fio was built without the nbd engine")
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
	const span = "256M" // rows address the first 256 MiB, prefilled

	var scribeURIs []string // O_DIRECT, then buffered
	for _, opts := range []chunkstore.FileOptions{{Direct: true}, {}} {
		store := newStore(b, dir, 2*size, opts)
		v, err := New(Config{Store: store, VSD: chunkstore.ID{0xbe}, Size: size, Epoch: 1})
		if err != nil {
			b.Fatal(err)
		}
		scribeURIs = append(scribeURIs, "nbd+unix:///bench?socket="+serveVolume(b, "bench", v))
	}

	raw := filepath.Join(dir, "raw.img")
	run(b, "qemu-img", "create", "-f", "raw", raw, "1G")
	qsock := filepath.Join(dir, "qemu-nbd.sock")
	pidFile := filepath.Join(dir, "qemu-nbd.pid")
	run(b, "qemu-nbd", "--fork", "--persistent", "--shared=8", "--cache=none", "-f", "raw",
		"-x", "bench", "-k", qsock, "--pid-file="+pidFile, raw)
	pidText, err := os.ReadFile(pidFile)
	if err != nil {
		b.Fatal(err)
	}
	qpid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	b.Cleanup(func() { syscall.Kill(qpid, syscall.SIGTERM) })
	qemuURI := "nbd+unix:///bench?socket=" + qsock

	// Prefill both so reads hit data, not holes.
	for _, u := range append(scribeURIs, qemuURI) {
		fio(b, u, "--rw=write", "--bs=1M", "--iodepth=8", "--size="+span)
	}

	rows := []struct {
		name string
		args []string
	}{
		{"4k randwrite QD1", []string{"--rw=randwrite", "--bs=4k", "--iodepth=1"}},
		{"4k randwrite QD32", []string{"--rw=randwrite", "--bs=4k", "--iodepth=32"}},
		{"4k randread QD1", []string{"--rw=randread", "--bs=4k", "--iodepth=1"}},
		{"4k randread QD32", []string{"--rw=randread", "--bs=4k", "--iodepth=32"}},
		{"1M seq write QD8", []string{"--rw=write", "--bs=1M", "--iodepth=8"}},
		{"1M seq read QD8", []string{"--rw=read", "--bs=1M", "--iodepth=8"}},
		{"4k write+flush QD1", []string{"--rw=randwrite", "--bs=4k", "--iodepth=1", "--fsync=1"}},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-20s %12s %12s %7s %14s %14s %14s %7s\n", "row (1 replica)", "scribe", "qemu-nbd", "ratio",
		"scribe CPU/IO", "qemu CPU/IO", "scribe buffered", "ratio")
	for _, row := range rows {
		if f := os.Getenv("SHOAL_BENCH_ROWS"); f != "" && !strings.Contains(row.name, f) {
			continue
		}
		args := append([]string{"--size=" + span, "--time_based", fmt.Sprintf("--runtime=%d", runtime)}, row.args...)
		cpu0 := selfCPU()
		s := fio(b, scribeURIs[0], args...)
		sCPU := selfCPU() - cpu0
		buffered := fio(b, scribeURIs[1], args...)
		q0 := procCPU(qpid)
		q := fio(b, qemuURI, args...)
		qCPU := procCPU(qpid) - q0
		unit, sv, qv, bv := "IOPS", s.iops, q.iops, buffered.iops
		if strings.HasPrefix(row.name, "1M") {
			unit, sv, qv, bv = "MB/s", s.bw/1e6, q.bw/1e6, buffered.bw/1e6
		}
		ratio, bratio := 0.0, 0.0
		if qv > 0 {
			ratio, bratio = sv/qv, bv/qv
		}
		fmt.Fprintf(&table, "%-20s %7.0f %4s %7.0f %4s %6.2fx %11.1f µs %11.1f µs %9.0f %4s %6.2fx\n", row.name, sv, unit, qv, unit, ratio,
			1e6*sCPU/float64(max(s.ios, 1)), 1e6*qCPU/float64(max(q.ios, 1)), bv, unit, bratio)
		b.ReportMetric(ratio, strings.ReplaceAll(row.name, " ", "_")+"_ratio")
	}
	b.Log(table.String())
	fmt.Print(table.String())
}

type fioResult struct {
	iops, bw float64
	ios      int64
}

func fio(b testing.TB, uri string, args ...string) fioResult {
	b.Helper()
	args = append([]string{"--name=bench", "--ioengine=nbd", "--uri=" + uri, "--output-format=json"}, args...)
	out := run(b, "fio", args...)
	if i := strings.IndexByte(out, '{'); i > 0 {
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
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Jobs) == 0 {
		b.Fatalf("fio json: %v\n%s", err, out)
	}
	j := res.Jobs[0]
	return fioResult{iops: j.Read.IOPS + j.Write.IOPS, bw: j.Read.BW + j.Write.BW, ios: j.Read.TotalIOs + j.Write.TotalIOs}
}

// selfCPU is this process's user+system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// procCPU is another process's user+system CPU time in seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}
