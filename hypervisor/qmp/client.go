package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// MaxQueuedEvents bounds the events waiting for a reader of Events.
const MaxQueuedEvents = 1024

// maxLine bounds one QMP message (query-qmp-schema is ~200 KiB).
const maxLine = 16 << 20

// dialRetry is how often Dial retries while the socket is not there yet.
const dialRetry = 50 * time.Millisecond

// Client is a connection to one QMP monitor.
type Client struct {
	conn     net.Conn
	greeting Greeting

	writeMu sync.Mutex // one request line at a time

	mu      sync.Mutex
	pending map[string]chan message
	nextID  uint64
	err     error // set once the reader stops
	queue   []Event

	wake    chan struct{} // 1-buffered: events queued
	events  chan Event
	done    chan struct{} // closed when the reader stops
	closing chan struct{} // closed by Close
	dropped atomic.Uint64
	wg      sync.WaitGroup
	once    sync.Once
}

// Dial connects to the QMP socket at path, reads the greeting and
// negotiates capabilities. While the socket does not exist yet or refuses
// connections (QEMU is still starting) it retries until ctx ends; ctx
// bounds only the dial and the handshake.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			c, err := newClient(ctx, conn)
			if err != nil {
				return nil, fmt.Errorf("qmp handshake on %s: %w", path, err)
			}
			return c, nil
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("connect to qmp socket %s: %w", path, err)
		}
		t := time.NewTimer(dialRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("connect to qmp socket %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// NewClient runs the handshake on an established connection (for
// example one end of a net.Pipe in tests) and takes ownership of conn.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	return newClient(ctx, conn)
}

func newClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{
		conn:    conn,
		pending: map[string]chan message{},
		wake:    make(chan struct{}, 1),
		events:  make(chan Event),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
	}
	greeting := make(chan *Greeting, 1)
	c.wg.Add(2)
	go c.readLoop(greeting)
	go c.pumpEvents()
	select {
	case g := <-greeting:
		c.greeting = *g
	case <-c.done:
		err := c.closedErr()
		c.Close()
		return nil, fmt.Errorf("read greeting: %w", err)
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("read greeting: %w", ctx.Err())
	}
	if _, err := c.Execute(ctx, "qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Greeting returns what QEMU announced on connect (its version).
func (c *Client) Greeting() Greeting { return c.greeting }

// Events delivers asynchronous events in order. It is closed after the
// connection ends and the queued events are delivered, or on Close.
func (c *Client) Events() <-chan Event { return c.events }

// DroppedEvents counts events dropped because more than MaxQueuedEvents
// were waiting for a reader.
func (c *Client) DroppedEvents() uint64 { return c.dropped.Load() }

// Done is closed when the connection has ended (QEMU exited, the socket
// broke, or Close was called).
func (c *Client) Done() <-chan struct{} { return c.done }

// Close closes the connection and waits for the client's goroutines.
// Pending commands fail with ErrClosed.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closing)
		err = c.conn.Close()
		c.wg.Wait()
	})
	return err
}

func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Execute runs cmd with args (nil, or anything encoding/json turns into
// an object) and returns QEMU's "return" value. A QMP error reply is an
// *Error. If ctx ends first Execute returns ctx's error; the command may
// still run in QEMU.
func (c *Client) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	c.nextID++
	id := "shoal-" + strconv.FormatUint(c.nextID, 10)
	reply := make(chan message, 1)
	c.pending[id] = reply
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()

	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{cmd, args, id}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: encode arguments: %w", cmd, err)
	}
	line = append(line, '\n')
	if err := c.write(ctx, line); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	select {
	case m := <-reply:
		return result(cmd, m)
	case <-c.done:
		// The reader may have delivered the reply just before stopping.
		select {
		case m := <-reply:
			return result(cmd, m)
		default:
		}
		return nil, fmt.Errorf("qmp %s: %w", cmd, c.closedErr())
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
}

func result(cmd string, m message) (json.RawMessage, error) {
	if m.kind == kindError {
		e := *m.err
		e.Command = cmd
		return nil, &e
	}
	return m.ret, nil
}

// ExecuteInto runs cmd like Execute and decodes its return value into out.
func (c *Client) ExecuteInto(ctx context.Context, cmd string, args, out any) error {
	ret, err := c.Execute(ctx, cmd, args)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(ret, out); err != nil {
		return fmt.Errorf("qmp %s: decode return %.200s: %w", cmd, ret, err)
	}
	return nil
}

func (c *Client) write(ctx context.Context, line []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
	} else {
		c.conn.SetWriteDeadline(time.Time{})
	}
	if _, err := c.conn.Write(line); err != nil {
		if ce := c.closedErr(); ce != nil {
			return ce
		}
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// readLoop owns reading the connection. It hands the greeting over once,
// replies to their waiting Execute and events to the queue.
func (c *Client) readLoop(greeting chan<- *Greeting) {
	defer c.wg.Done()
	sc := bufio.NewScanner(c.conn)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var err error
	for sc.Scan() {
		m, derr := decodeMessage(sc.Bytes())
		if derr != nil {
			err = derr
			break
		}
		switch m.kind {
		case kindGreeting:
			select {
			case greeting <- m.greeting:
			default:
			}
		case kindReturn, kindError:
			c.mu.Lock()
			ch := c.pending[m.id]
			c.mu.Unlock()
			if ch != nil {
				ch <- m // 1-buffered, one reply per id
			}
		case kindEvent:
			c.mu.Lock()
			if len(c.queue) >= MaxQueuedEvents {
				c.queue = c.queue[1:]
				c.dropped.Add(1)
			}
			c.queue = append(c.queue, m.event)
			c.mu.Unlock()
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}
	if err == nil {
		err = sc.Err()
	}
	select {
	case <-c.closing:
		err = ErrClosed
	default:
		if err == nil {
			err = fmt.Errorf("%w: qemu hung up", ErrClosed)
		} else {
			err = fmt.Errorf("%w: %v", ErrClosed, err)
		}
	}
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	c.conn.Close()
	close(c.done)
}

// pumpEvents feeds queued events to Events until the reader has stopped
// and the queue is empty, or Close is called.
func (c *Client) pumpEvents() {
	defer c.wg.Done()
	defer close(c.events)
	for {
		c.mu.Lock()
		var ev Event
		have := len(c.queue) > 0
		if have {
			ev = c.queue[0]
			c.queue = c.queue[1:]
		}
		c.mu.Unlock()
		if !have {
			select {
			case <-c.wake:
				continue
			case <-c.done:
				c.mu.Lock()
				empty := len(c.queue) == 0
				c.mu.Unlock()
				if empty {
					return
				}
				continue
			case <-c.closing:
				return
			}
		}
		select {
		case c.events <- ev:
		case <-c.closing:
			return
		}
	}
}
