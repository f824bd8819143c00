package bufpool

import (
	"testing"
	"unsafe"
)

func TestGetPut(t *testing.T) {
	tests := []struct {
		n, cap int
	}{
		{0, 0}, {1, 1}, {3, 4}, {4096, 4096}, {4097, 8192}, {1 << 20, 1 << 20}, {(1 << 20) + 1, 2 << 20},
	}
	for _, tt := range tests {
		b := Get(tt.n)
		if len(*b) != tt.n || cap(*b) != tt.cap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tt.n, len(*b), cap(*b), tt.n, tt.cap)
		}
		if tt.n >= 4096 {
			if p := uintptr(unsafe.Pointer(&(*b)[0])); p%4096 != 0 {
				t.Errorf("Get(%d) at %#x: not 4 KiB aligned", tt.n, p)
			}
		}
		for i := range *b {
			(*b)[i] = 0xa5
		}
		Put(b)
		// Whatever comes back from the pool has the asked length.
		if c := Get(tt.n); len(*c) != tt.n {
			t.Errorf("Get(%d) after Put: len %d", tt.n, len(*c))
		}
	}
	odd := make([]byte, 3)
	Put(&odd) // not from Get: dropped, no panic
}

func BenchmarkGetPut1MiB(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Put(Get(1 << 20))
	}
}
