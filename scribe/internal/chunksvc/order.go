package chunksvc

import (
	"slices"
	"sync"
)

// alpnV2 is the TLS application protocol a Server advertises and a
// Client offers. A server that negotiated it promises that a Sync covers
// every change received before it on the connection, even one still in
// progress when the Sync arrives (see changes), and takes writes with
// their checksums (flagSums). A server of an older release negotiates
// nothing: its client then waits for the changes to finish before it
// sends a Sync, and sends writes without checksums.
const alpnV2 = "shoal-chunk/2"

// isChange reports whether op changes a store: a Sync covers it.
func isChange(o op) bool {
	switch o {
	case opWrite, opZero, opFree, opStamp, opFence, opRegPut:
		return true
	}
	return false
}

// changes tracks the changes a connection has received and not yet
// finished, so that a Sync waits for those received before it. begin
// and mark are called by the connection's reader, in the order requests
// arrive; end and wait by the handlers.
type changes struct {
	mu      sync.Mutex
	cond    *sync.Cond
	next    uint64   // sequence number of the last change received
	running []uint64 // changes received and not finished (≤ MaxInFlight)
	waiters int
}

func newChanges() *changes {
	c := &changes{}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// begin numbers a change as it is received.
func (c *changes) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	c.running = append(c.running, c.next)
	return c.next
}

// end finishes change seq.
func (c *changes) end(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.running, seq); i >= 0 {
		c.running[i] = c.running[len(c.running)-1]
		c.running = c.running[:len(c.running)-1]
	}
	if c.waiters > 0 {
		c.cond.Broadcast()
	}
}

// mark is the sequence number a Sync received now waits for.
func (c *changes) mark() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next
}

// wait waits until every change numbered up to seq has finished.
func (c *changes) wait(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiters++
	for slices.ContainsFunc(c.running, func(s uint64) bool { return s <= seq }) {
		c.cond.Wait()
	}
	c.waiters--
}
