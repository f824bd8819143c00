package chunkstore

import (
	"bytes"
	"testing"
)

func TestDirectDeviceUnaligned(t *testing.T) {
	_, dev := newDisk(t, 1<<20, FileOptions{Direct: true})
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
