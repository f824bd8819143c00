package uring

import (
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkDirectIO compares 4 KiB random O_DIRECT reads and writes
// through a Ring with blocking pread/pwrite, one goroutine (QD1) and 32
// (QD32), and reports IOPS and the CPU per I/O of the whole process
// (getrusage: user + system, including the kernel's work for the I/O).
// Run (SHOAL_BENCH_DIR: a directory on a disk; default a temp dir):
//
//	SHOAL_BENCH_DIR=/var/tmp go test -run='^$' -bench=DirectIO -benchtime=20000x ./scribe/internal/uring/
func BenchmarkDirectIO(b *testing.B) {
	const span = 64 << 20
	f, r := benchRing(b, span)
	fd := int(f.Fd())
	ways := []struct {
		name      string
		read, wrt func(p []byte, off int64) (int, error)
	}{
		{"ring", func(p []byte, off int64) (int, error) { return r.ReadAt(fd, p, off) },
			func(p []byte, off int64) (int, error) { return r.WriteAt(fd, p, off) }},
		{"syscalls", f.ReadAt, f.WriteAt},
	}
	for _, qd := range []int{1, 32} {
		for _, write := range []bool{false, true} {
			for _, w := range ways {
				name := map[bool]string{false: "randread", true: "randwrite"}[write]
				b.Run(name+"/QD"+map[int]string{1: "1", 32: "32"}[qd]+"/"+w.name, func(b *testing.B) {
					op := w.read
					if write {
						op = w.wrt
					}
					cpu0 := cpuTime()
					start := time.Now()
					var wg sync.WaitGroup
					for g := range qd {
						wg.Go(func() {
							rnd := rand.New(rand.NewPCG(uint64(g), 1))
							p := alignedBuf(4096)
							for i := g; i < b.N; i += qd {
								if _, err := op(p, rnd.Int64N(span/4096)*4096); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "IOPS")
					b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
				})
			}
		}
	}
}

// BenchmarkWriteFlush is the chunk store's FLUSH after one 4 KiB
// overwrite, at QD1 on an O_DIRECT file: a data write, a second write (the
// journal's open block) and an fdatasync, done with blocking system calls,
// with ring writes and the fdatasync system call (what RingDevice does),
// or all three through the ring (IORING_OP_FSYNC with DATASYNC). It
// reports cycles per second and the CPU per cycle of the whole process
// (getrusage), which includes the Go runtime's sysmon thread.
//
//	SHOAL_BENCH_DIR=/var/tmp go test -run='^$' -bench=WriteFlush -benchtime=3000x ./scribe/internal/uring/
func BenchmarkWriteFlush(b *testing.B) {
	const span = 64 << 20
	f, r := benchRing(b, span)
	fd := int(f.Fd())
	ringWrite := func(p []byte, off int64) error { _, err := r.WriteAt(fd, p, off); return err }
	fileWrite := func(p []byte, off int64) error { _, err := f.WriteAt(p, off); return err }
	ways := []struct {
		name  string
		write func(p []byte, off int64) error
		sync  func() error
	}{
		{"syscalls", fileWrite, f.Sync},
		{"ring+fdatasync", ringWrite, func() error { return syscall.Fdatasync(fd) }},
		{"ring+ringfsync", ringWrite, func() error { return r.Fdatasync(fd) }},
	}
	for _, w := range ways {
		b.Run(w.name, func(b *testing.B) {
			rnd := rand.New(rand.NewPCG(1, 2))
			data, journal := alignedBuf(4096), alignedBuf(4096)
			cpu0 := cpuTime()
			start := time.Now()
			for range b.N {
				if err := w.write(data, (1+rnd.Int64N(span/4096-1))*4096); err != nil {
					b.Fatal(err)
				}
				if err := w.write(journal, 0); err != nil {
					b.Fatal(err)
				}
				if err := w.sync(); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cycles/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/cycle")
		})
	}
}

// benchFile returns an O_DIRECT file of span bytes in SHOAL_BENCH_DIR
// (default a temp dir) with no pages in the page cache, closed and
// removed in cleanup.
// benchRing returns benchFile's file and a Ring, closed when b ends; it
// skips b where io_uring is unavailable.
func benchRing(b *testing.B, span int) (*os.File, *Ring) {
	f := benchFile(b, span)
	r, err := New(Config{})
	if err != nil {
		b.Skipf("io_uring unavailable here: %v", err)
	}
	b.Cleanup(func() { r.Close() })
	return f, r
}

func benchFile(b *testing.B, span int) *os.File {
	dir := b.TempDir()
	if d := os.Getenv("SHOAL_BENCH_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "uringbench"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	path := dir + "/file"
	if err := os.WriteFile(path, make([]byte, span), 0o600); err != nil {
		b.Fatal(err)
	}
	// Written through the page cache: flush and drop it, or every
	// O_DIRECT I/O issued without blocking would find cached pages and
	// go to an io_uring worker thread.
	if err := dropCache(path); err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		b.Skipf("O_DIRECT in %s: %v", dir, err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// cpuTime is the CPU time (user and system) of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func dropCache(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
