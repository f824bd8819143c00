// Package bufpool recycles the payload buffers of the data path (NBD
// requests, chunk service requests): Get returns a buffer of n bytes from
// a pool of its power-of-two size class, Put gives it back. A 1 MiB write
// that allocated a fresh buffer paid for clearing it (the runtime zeroes
// every allocation) and for the garbage collector; a recycled one costs
// neither.
//
// Invariants: a buffer Get returns has length n and capacity the next
// power of two; its start is aligned as the runtime aligns allocations of
// that size (4 KiB and larger: to 4 KiB, as O_DIRECT wants). Its contents
// are whatever the last user left: callers overwrite before they read.
// Put accepts only buffers Get returned (a capacity that is not a power
// of two is dropped); the caller must not touch a buffer after Put.
//
// Concurrency: Get and Put are safe from any goroutine (sync.Pool).
package bufpool
