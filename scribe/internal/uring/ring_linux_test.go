package uring

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

var seedFlag = flag.Uint64("seed", 0, "seed of the randomised tests (0: a random one, printed)")

func seed(t *testing.T) uint64 {
	v := *seedFlag
	if v == 0 {
		v = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -seed=%d)", v, v)
	return v
}

// newRing returns a Ring closed in cleanup, or skips the test where
// io_uring is unavailable.
func newRing(t *testing.T, cfg Config) *Ring {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Skipf("io_uring unavailable here (%v): the chunk store falls back to blocking system calls", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// newFile returns a file of size zero bytes, open read-write, closed
// in cleanup.
func newFile(t *testing.T, size int64, flags int) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|flags, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// alignedBuf returns n bytes at a 4 KiB-aligned address (O_DIRECT).
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	skip := (4096 - int(uintptr(unsafe.Pointer(&b[0]))%4096)) % 4096
	return b[skip : skip+n : skip+n]
}

func TestABISizes(t *testing.T) {
	got := []uintptr{unsafe.Sizeof(params{}), unsafe.Sizeof(sqe{}), unsafe.Sizeof(cqe{})}
	want := []uintptr{120, 64, 16}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("struct %d: %d bytes, the kernel's is %d", i, got[i], want[i])
		}
	}
}

// TestConcurrentRandomOps has many more goroutines than ring entries
// (or just two) doing random reads, writes and pairs of writes
// (WriteAtBoth; each goroutine in its own blocks) and compares every read, and the file at the end, with a model.
func TestConcurrentRandomOps(t *testing.T) {
	sd := seed(t)
	const (
		blocks = 16 // per goroutine
		block  = 4096
		ops    = 80
	)
	for _, mode := range []struct {
		name       string
		flags      int
		maxIO      int
		goroutines int
		rawWait    time.Duration
	}{
		{"buffered", 0, 0, 48, 0},
		{"buffered, short transfers", 0, 3000, 48, 0},
		{"direct", syscall.O_DIRECT, 0, 48, 0},
		{"direct, short transfers", syscall.O_DIRECT, 2 * block, 48, 0},
		// Often one request in flight (waiting in the kernel, eventfd
		// off) while the other's completes.
		{"direct, two callers", syscall.O_DIRECT, 0, 2, 0},
		// The lone request's raw wait always expires: it goes on in a
		// blocking one.
		{"direct, two callers, raw wait expires", syscall.O_DIRECT, 0, 2, time.Nanosecond},
	} {
		t.Run(mode.name, func(t *testing.T) {
			goroutines := mode.goroutines
			r := newRing(t, Config{Entries: 8, maxIO: mode.maxIO, rawWait: mode.rawWait})
			if goroutines > 2 && r.Entries() >= goroutines {
				t.Fatalf("%d entries: the test needs fewer than %d", r.Entries(), goroutines)
			}
			f := newFile(t, int64(goroutines*blocks*block), 0)
			if mode.flags != 0 {
				df, err := os.OpenFile(f.Name(), os.O_RDWR|mode.flags, 0)
				if err != nil {
					t.Skipf("O_DIRECT on %s: %v", f.Name(), err)
				}
				defer df.Close()
				f = df
			}
			model := make([]byte, goroutines*blocks*block)
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := range goroutines {
				wg.Go(func() {
					rnd := rand.New(rand.NewPCG(sd, uint64(g)))
					base := int64(g * blocks * block)
					for i := range ops {
						first := rnd.IntN(blocks)
						n := (1 + rnd.IntN(blocks-first)) * block
						off := base + int64(first*block)
						p := alignedBuf(n)
						if rnd.IntN(2) == 0 {
							for j := range p {
								p[j] = byte(rnd.Uint32())
							}
							if k := rnd.IntN(n / block); k > 0 {
								// Two pieces as one pair, the second first.
								e2, e1 := r.WriteAtBoth(int(f.Fd()), p[k*block:], off+int64(k*block), p[:k*block], off)
								if e1 != nil || e2 != nil {
									errs <- errors.New("write pair " + strconv.Itoa(i) + ": " + errString(errors.Join(e1, e2)))
									return
								}
							} else if got, err := r.WriteAt(int(f.Fd()), p, off); err != nil || got != n {
								errs <- errors.New("write " + strconv.Itoa(i) + ": " + errString(err))
								return
							}
							copy(model[off:], p)
							continue
						}
						if got, err := r.ReadAt(int(f.Fd()), p, off); err != nil || got != n {
							errs <- errors.New("read " + strconv.Itoa(i) + ": " + errString(err))
							return
						}
						if !bytes.Equal(p, model[off:off+int64(n)]) {
							errs <- errors.New("read " + strconv.Itoa(i) + " differs from the model")
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if err := r.Fdatasync(int(f.Fd())); err != nil {
				t.Errorf("fdatasync: %v", err)
			}
			got, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, model) {
				t.Error("file content differs from the model")
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "short, no error"
	}
	return err.Error()
}

// TestShortTransfers reads and writes through submissions capped well
// below the transfer size, and across the end of the file.
func TestShortTransfers(t *testing.T) {
	r := newRing(t, Config{Entries: 4, maxIO: 1000})
	f := newFile(t, 0, 0)
	want := make([]byte, 10_000)
	for i := range want {
		want[i] = byte(i * 7)
	}
	if n, err := r.WriteAt(int(f.Fd()), want, 0); err != nil || n != len(want) {
		t.Fatalf("write: %d, %v", n, err)
	}
	tests := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantErr error
	}{
		{"whole", 0, 10_000, 10_000, nil},
		{"middle", 1234, 5000, 5000, nil},
		{"across the end", 9000, 4000, 1000, io.EOF},
		{"at the end", 10_000, 10, 0, io.EOF},
		{"empty", 5, 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := make([]byte, tt.n)
			n, err := r.ReadAt(int(f.Fd()), p, tt.off)
			if n != tt.wantN || !errors.Is(err, tt.wantErr) {
				t.Fatalf("read: %d, %v; want %d, %v", n, err, tt.wantN, tt.wantErr)
			}
			if !bytes.Equal(p[:n], want[tt.off:tt.off+int64(n)]) {
				t.Error("read data differs from the write")
			}
		})
	}
}

// TestLoneRequestOutlastsRawWait: a lone request whose completion takes
// longer than the raw wait (a read of an empty pipe, with a raw wait of
// a nanosecond) goes on waiting in blocking system calls, and a second
// request then in flight is served too.
func TestLoneRequestOutlastsRawWait(t *testing.T) {
	for _, tt := range []struct {
		name    string
		rawWait time.Duration
	}{{"raw wait expires", time.Nanosecond}, {"default", 0}} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(t, Config{Entries: 4, rawWait: tt.rawWait})
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close()
			type result struct {
				n   int
				err error
			}
			got := make(chan result, 1)
			p := make([]byte, 5)
			go func() {
				n, err := r.ReadAt(int(pr.Fd()), p, 0)
				got <- result{n, err}
			}()
			for r.inflight.Load() == 0 {
				runtime.Gosched()
			}
			// Another request while the read waits: a file write.
			f := newFile(t, 0, 0)
			if n, err := r.WriteAt(int(f.Fd()), []byte("world"), 0); err != nil || n != 5 {
				t.Fatalf("write while a read waits: %d, %v", n, err)
			}
			if _, err := pw.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if res := <-got; res.err != nil || res.n != 5 || string(p) != "hello" {
				t.Fatalf("pipe read: %d, %v, %q; want 5, nil, hello", res.n, res.err, p)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	r := newRing(t, Config{Entries: 2})
	f := newFile(t, 4096, 0)
	ro, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	p := make([]byte, 4096)
	if _, err := r.WriteAt(int(ro.Fd()), p, 0); !errors.Is(err, syscall.EBADF) {
		t.Errorf("write to a read-only file: %v, want EBADF", err)
	}
	if _, err := r.ReadAt(int(f.Fd()), p, -1); err == nil {
		t.Error("read at a negative offset: no error")
	}
	if n, err := r.ReadAt(int(f.Fd()), p, 0); err != nil || n != len(p) {
		t.Errorf("read after errors: %d, %v", n, err)
	}
}

// TestCloseWithRequestsInFlight closes a ring while goroutines keep it
// busy: each call either completes entirely or fails with ErrClosed, and
// every call after Close fails with ErrClosed.
func TestCloseWithRequestsInFlight(t *testing.T) {
	r, err := New(Config{Entries: 4})
	if err != nil {
		t.Skipf("io_uring unavailable here (%v)", err)
	}
	f := newFile(t, 1<<20, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[string]int{}
	started := make(chan struct{}, 16)
	for g := range 16 {
		wg.Go(func() {
			p := bytes.Repeat([]byte{byte(g)}, 64<<10)
			off := int64(g) * 64 << 10
			started <- struct{}{}
			for i := 0; ; i++ {
				var n int
				var err error
				if i%2 == 0 {
					n, err = r.WriteAt(int(f.Fd()), p, off)
				} else {
					n, err = r.ReadAt(int(f.Fd()), p, off)
				}
				mu.Lock()
				switch {
				case errors.Is(err, ErrClosed):
					counts["closed"]++
				case err != nil || n != len(p):
					counts["bad: "+errString(err)]++
				default:
					counts["done"]++
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	for range 16 {
		<-started
	}
	if err := r.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	wg.Wait()
	if _, err := r.ReadAt(int(f.Fd()), make([]byte, 10), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("read after close: %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if counts["closed"] != 16 || len(counts) > 2 {
		t.Errorf("outcomes %v: want 16 closed, the rest done", counts)
	}
}
