package chunkstore

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestDirectDeviceUnaligned(t *testing.T) {
	for _, d := range devices {
		t.Run(d.name, func(t *testing.T) {
			opts := d.opts
			opts.Direct = true
			testDirectDeviceUnaligned(t, opts)
		})
	}
}

func testDirectDeviceUnaligned(t *testing.T, opts FileOptions) {
	_, dev := newDisk(t, 1<<20, opts)
	defer dev.Close()
	model := make([]byte, 1<<20)
	tests := []struct {
		name string
		off  int64
		n    int
	}{
		{"aligned", 8192, 4096},
		{"inside one sector", 100, 200},
		{"across sectors", 4000, 10000},
		{"misaligned memory only", 16384, 4096},
		{"last sector", 1<<20 - 10, 10},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, tt.n+1)[1:] // misaligned address
			for j := range buf {
				buf[j] = byte(i + j)
			}
			if _, err := dev.WriteAt(buf, tt.off); err != nil {
				t.Fatal(err)
			}
			copy(model[tt.off:], buf)
			got := make([]byte, 1<<20)
			if _, err := dev.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, model) {
				t.Error("device content differs from the writes")
			}
			part := make([]byte, tt.n+3)[3:]
			if n, err := dev.ReadAt(part, tt.off); err != nil || n != tt.n || !bytes.Equal(part, model[tt.off:tt.off+int64(tt.n)]) {
				t.Errorf("unaligned read: n %d, err %v, equal %v", n, err, bytes.Equal(part, model[tt.off:tt.off+int64(tt.n)]))
			}
		})
	}
}

// TestOpenFileChoosesDevice checks which Device OpenFile returns for
// each IOMode, including the fallback when io_uring cannot be set up
// (forced with ringErr), which logs why once.
func TestOpenFileChoosesDevice(t *testing.T) {
	refused := syscall.EPERM // as with kernel.io_uring_disabled=2
	tests := []struct {
		name     string
		opts     FileOptions
		wantRing bool
		wantErr  error
		wantLog  bool
	}{
		{"buffered auto", FileOptions{}, false, nil, false},
		{"direct auto", FileOptions{Direct: true}, true, nil, false},
		{"direct syscalls", FileOptions{Direct: true, IO: IOSyscalls}, false, nil, false},
		{"buffered uring", FileOptions{IO: IOUring}, true, nil, false},
		{"direct auto, no io_uring", FileOptions{Direct: true, ringErr: refused}, false, nil, true},
		{"direct uring, no io_uring", FileOptions{Direct: true, IO: IOUring, ringErr: refused}, false, ErrNoUring, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logged strings.Builder
			tt.opts.Log = slog.New(slog.NewTextHandler(&logged, nil))
			ringFallback = sync.Once{}
			_, dev := newDisk(t, 1<<20) // creates the file
			dev.Close()
			path := dev.(*FileDevice).f.Name()
			dev, err := OpenFile(path, tt.opts)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("open: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer dev.Close()
			_, isRing := dev.(*RingDevice)
			if isRing != tt.wantRing {
				t.Fatalf("got %T", dev)
			}
			if got := strings.Contains(logged.String(), "io_uring unavailable"); got != tt.wantLog {
				t.Errorf("logged %q; want a fallback line: %v", logged.String(), tt.wantLog)
			}
			if tt.wantLog {
				if _, err := OpenFile(path, tt.opts); err != nil {
					t.Fatal(err)
				}
				if n := strings.Count(logged.String(), "io_uring unavailable"); n != 1 {
					t.Errorf("fallback logged %d times, want once", n)
				}
			}
			p := bytes.Repeat([]byte{7}, 4096)
			if _, err := dev.WriteAt(p, 4096); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4096)
			if _, err := dev.ReadAt(got, 4096); err != nil || !bytes.Equal(got, p) {
				t.Errorf("read back: %v, equal %v", err, bytes.Equal(got, p))
			}
		})
	}
}
