package peer

import (
	"sync"

	"github.com/shoal-hci/shoal/peer/client"
)

// eventRing keeps the last membership events in memory until the state
// store lands (then they become event records).
type eventRing struct {
	mu   sync.Mutex
	buf  []client.Event
	next int
	full bool
}

func newEventRing(n int) *eventRing { return &eventRing{buf: make([]client.Event, n)} }

func (r *eventRing) add(e client.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = e
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// list returns the events oldest first.
func (r *eventRing) list() []client.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]client.Event(nil), r.buf[:r.next]...)
	}
	return append(append([]client.Event(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}
