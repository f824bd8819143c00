package bufpool

import (
	"math/bits"
	"sync"
)

// pools hold buffers in power-of-two size classes: pools[k] has cap 1<<k.
var pools [33]sync.Pool

// Get returns a buffer of length n (n >= 0, at most 4 GiB).
func Get(n int) *[]byte {
	if n <= 0 {
		b := []byte{}
		return &b
	}
	class := bits.Len(uint(n - 1))
	if class >= len(pools) {
		b := make([]byte, n)
		return &b
	}
	if v := pools[class].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<class)
	return &b
}

// Put returns b, which Get returned, to its pool.
func Put(b *[]byte) {
	c := cap(*b)
	if c == 0 || c&(c-1) != 0 || bits.Len(uint(c-1)) >= len(pools) {
		return
	}
	pools[bits.Len(uint(c-1))].Put(b)
}
