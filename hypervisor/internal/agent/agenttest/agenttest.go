// Package agenttest has fakes for testing the guest agent and its host
// link in one process: a System that records what it was asked, and a
// Pipe that connects an agent Transport to a host-side dialer in memory.
package agenttest

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/internal/agent"
)

// System is a fake agent.System. Its uptime runs from its creation on
// the time package's clock (a synctest bubble's, in tests).
type System struct {
	mu        sync.Mutex
	start     time.Time
	bootID    string
	addrs     []agent.Addr
	filesys   int // how many file systems Freeze freezes
	frozen    bool
	freezes   int
	thaws     int
	poweroffs int
}

// NewSystem returns a guest with the given boot ID and n freezable file
// systems.
func NewSystem(bootID string, n int) *System {
	return &System{start: time.Now(), bootID: bootID, filesys: n}
}

// SetAddrs changes the guest's addresses.
func (s *System) SetAddrs(a ...agent.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addrs = slices.Clone(a)
}

// Counts returns how often Freeze, Thaw (that thawed something) and
// Poweroff were called, and whether the file systems are frozen.
func (s *System) Counts() (freezes, thaws, poweroffs int, frozen bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.freezes, s.thaws, s.poweroffs, s.frozen
}

// BootID implements agent.System.
func (s *System) BootID() (string, error) { return s.bootID, nil }

// Hostname implements agent.System.
func (s *System) Hostname() (string, error) { return "fake-guest", nil }

// Uptime implements agent.System.
func (s *System) Uptime() (time.Duration, error) { return time.Since(s.start), nil }

// Addrs implements agent.System.
func (s *System) Addrs() ([]agent.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.addrs), nil
}

// Poweroff implements agent.System.
func (s *System) Poweroff() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.poweroffs++
	return nil
}

// Freeze implements agent.System.
func (s *System) Freeze() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen {
		return 0, errors.New("fake: already frozen (FIFREEZE gives EBUSY)")
	}
	s.frozen = true
	s.freezes++
	return s.filesys, nil
}

// Thaw implements agent.System.
func (s *System) Thaw() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.frozen {
		return 0, nil
	}
	s.frozen = false
	s.thaws++
	return s.filesys, nil
}

// Pipe connects agents and hosts in memory: every Dial makes a
// connection whose other end the next agent Open receives.
type Pipe struct {
	conns chan net.Conn
}

// NewPipe returns an empty Pipe.
func NewPipe() *Pipe { return &Pipe{conns: make(chan net.Conn)} }

// Dial is the host side: it waits for an agent to Open.
func (p *Pipe) Dial(ctx context.Context) (io.ReadWriteCloser, error) {
	h, a := net.Pipe()
	select {
	case p.conns <- a:
		return h, nil
	case <-ctx.Done():
		h.Close()
		a.Close()
		return nil, ctx.Err()
	}
}

// Transport is the agent side of the Pipe.
func (p *Pipe) Transport() agent.Transport { return pipeTransport{p} }

type pipeTransport struct{ p *Pipe }

func (t pipeTransport) Name() string { return "pipe" }

func (t pipeTransport) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	select {
	case c := <-t.p.conns:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Chardev models QEMU's socket chardev behind a virtio-serial port: the
// agent's stream stays open while host connections come and go, so the
// agent never sees the host reconnect. Reads and writes of the agent
// wait while no host is connected.
type Chardev struct {
	mu   sync.Mutex
	host net.Conn      // the agent's end of the current host connection
	next chan struct{} // closed when host changes
}

// NewChardev returns a chardev without a host connection.
func NewChardev() *Chardev { return &Chardev{next: make(chan struct{})} }

// Dial is the host side: it replaces the current host connection.
func (c *Chardev) Dial(ctx context.Context) (io.ReadWriteCloser, error) {
	h, a := net.Pipe()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.host != nil {
		c.host.Close()
	}
	c.host = a
	close(c.next)
	c.next = make(chan struct{})
	return h, nil
}

// Transport is the agent side: every Open returns a stream on the chardev.
func (c *Chardev) Transport() agent.Transport { return chardevTransport{c} }

func (c *Chardev) current() (net.Conn, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.host, c.next
}

func (c *Chardev) drop(conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.host == conn {
		c.host = nil
	}
}

type chardevTransport struct{ c *Chardev }

func (t chardevTransport) Name() string { return "chardev" }

func (t chardevTransport) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	return &chardevStream{c: t.c, done: make(chan struct{})}, nil
}

type chardevStream struct {
	c    *Chardev
	once sync.Once
	done chan struct{}
}

// io runs op on the current host connection, waiting for one, and moves
// on to the next connection when this one breaks.
func (s *chardevStream) io(op func(net.Conn) (int, error)) (int, error) {
	for {
		conn, next := s.c.current()
		if conn == nil {
			select {
			case <-next:
				continue
			case <-s.done:
				return 0, io.ErrClosedPipe
			}
		}
		n, err := op(conn)
		if err == nil {
			return n, nil
		}
		select {
		case <-s.done:
			return n, io.ErrClosedPipe
		default:
		}
		s.c.drop(conn)
	}
}

func (s *chardevStream) Read(p []byte) (int, error) {
	return s.io(func(c net.Conn) (int, error) { return c.Read(p) })
}

func (s *chardevStream) Write(p []byte) (int, error) {
	return s.io(func(c net.Conn) (int, error) { return c.Write(p) })
}

// Close ends the stream; the host connection breaks too (a Read stuck on
// it has no other way out).
func (s *chardevStream) Close() error {
	s.once.Do(func() {
		close(s.done)
		if conn, _ := s.c.current(); conn != nil {
			conn.Close()
		}
	})
	return nil
}
