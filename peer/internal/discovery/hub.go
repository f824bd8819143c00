package discovery

import (
	"errors"
	"sync"
)

// Hub is an in-process broadcast medium for tests: every Conn from one Hub
// hears every other's beacons.
type Hub struct {
	mu      sync.Mutex
	conns   map[*hubConn]bool
	blocked func(from, to string) bool
}

// Block drops datagrams between named conns for which blocked returns true
// (a partition); nil heals.
func (h *Hub) Block(blocked func(from, to string) bool) {
	h.mu.Lock()
	h.blocked = blocked
	h.mu.Unlock()
}

// NewHub returns an empty Hub.
func NewHub() *Hub { return &Hub{conns: map[*hubConn]bool{}} }

// Conn attaches a new Conn to the hub.
func (h *Hub) Conn() Conn { return h.NamedConn("") }

// NamedConn attaches a new Conn named name (for Block).
func (h *Hub) NamedConn(name string) Conn {
	c := &hubConn{hub: h, name: name, in: make(chan []byte, 256), done: make(chan struct{})}
	h.mu.Lock()
	h.conns[c] = true
	h.mu.Unlock()
	return c
}

type hubConn struct {
	hub  *Hub
	name string
	in   chan []byte
	once sync.Once
	done chan struct{}
}

func (c *hubConn) Send(p []byte) error {
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	for o := range c.hub.conns {
		if o == c || (c.hub.blocked != nil && c.hub.blocked(c.name, o.name)) {
			continue
		}
		select {
		case o.in <- append([]byte(nil), p...):
		default: // a full receiver loses the datagram, like UDP
		}
	}
	return nil
}

func (c *hubConn) Recv(buf []byte) (int, error) {
	select {
	case p := <-c.in:
		return copy(buf, p), nil
	case <-c.done:
		return 0, errors.New("hub conn closed")
	}
}

func (c *hubConn) Close() error {
	c.once.Do(func() {
		c.hub.mu.Lock()
		delete(c.hub.conns, c)
		c.hub.mu.Unlock()
		close(c.done)
	})
	return nil
}
