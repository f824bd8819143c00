package agentlink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/internal/agent"
)

// Config configures a Link.
type Config struct {
	// Path is the UNIX socket of the VM's agent chardev (agent.sock in
	// the VM's runtime dir). Used when Dial is nil.
	Path string
	// Dial connects to the agent's stream. Zero: dial the UNIX socket Path.
	Dial func(ctx context.Context) (io.ReadWriteCloser, error)
	// Logger receives connection changes. Zero: discard.
	Logger *slog.Logger
	// RetryInterval is the pause between connection attempts. Zero: 250 ms.
	RetryInterval time.Duration
}

// DefaultConfig returns a Config for the agent socket at path.
func DefaultConfig(path string) Config {
	return Config{Path: path, RetryInterval: 250 * time.Millisecond}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	if c.Path == "" && c.Dial == nil {
		return fmt.Errorf("agent link config: neither Path nor Dial set")
	}
	if c.RetryInterval < 0 {
		return fmt.Errorf("agent link config: negative RetryInterval %s", c.RetryInterval)
	}
	return nil
}

// Status is what the host knows of a guest's agent.
type Status struct {
	Connected     bool      // a stream to the agent is open
	AgentVersion  string    // from the last hello
	BootID        string    // from the last hello; changes when the guest reboots
	Hostname      string    // from the last hello
	LastHeartbeat time.Time // host time the last heartbeat arrived; zero: none yet
	Seq           uint64    // of the last heartbeat (restarts at 1 per agent connection)
	Uptime        time.Duration
	IPs           []agent.Addr
}

type result struct {
	m   agent.Message
	err error
}

// Link is the host side of one VM's agent connection.
type Link struct {
	cfg Config

	mu      sync.Mutex
	st      Status
	changed chan struct{} // closed and replaced on every change
	conn    io.ReadWriteCloser
	wmu     *sync.Mutex // serialises writes on conn
	nextID  uint64
	pending map[uint64]chan result
	stopped bool
}

// New returns a Link; Run runs it.
func New(cfg Config) (*Link, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 250 * time.Millisecond
	}
	if cfg.Dial == nil {
		path := cfg.Path
		cfg.Dial = func(ctx context.Context) (io.ReadWriteCloser, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	}
	return &Link{cfg: cfg, changed: make(chan struct{}), pending: map[uint64]chan result{}}, nil
}

// Run connects to the agent and keeps reconnecting (the agent restarted,
// QEMU was restarted or migrated, the socket is not there yet) until ctx
// ends; then it returns nil. After every connect it asks the agent for
// its hello and addresses, as the agent may not know the host changed.
func (l *Link) Run(ctx context.Context) error {
	defer func() {
		l.mu.Lock()
		l.stopped = true
		l.notifyLocked()
		l.mu.Unlock()
	}()
	for ctx.Err() == nil {
		conn, err := l.cfg.Dial(ctx)
		if err == nil {
			err = l.session(ctx, conn)
			if ctx.Err() == nil {
				l.cfg.Logger.Debug("agent link ended", "err", err)
			}
		}
		t := time.NewTimer(l.cfg.RetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return nil
}

func (l *Link) session(ctx context.Context, conn io.ReadWriteCloser) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	wmu := &sync.Mutex{}
	l.mu.Lock()
	l.conn, l.wmu = conn, wmu
	l.st.Connected = true
	l.notifyLocked()
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.conn, l.wmu = nil, nil
		l.st.Connected = false
		for id, ch := range l.pending {
			ch <- result{err: ErrDisconnected}
			delete(l.pending, id)
		}
		l.notifyLocked()
		l.mu.Unlock()
	}()

	// Resync: the agent greets a new stream by itself, but over
	// virtio-serial it cannot tell a new host connection from the old.
	// Sent beside the reader: a stream may not buffer.
	var wg sync.WaitGroup
	defer func() { conn.Close(); wg.Wait() }()
	wg.Go(func() {
		for _, t := range []string{agent.TypeGetHello, agent.TypeGetIPs} {
			l.mu.Lock()
			l.nextID++
			id := l.nextID
			l.mu.Unlock()
			wmu.Lock()
			err := agent.Encode(conn, agent.Message{Type: t, ID: id})
			wmu.Unlock()
			if err != nil {
				l.cfg.Logger.Debug("resync", "err", err)
				conn.Close()
				return
			}
		}
	})

	dec := agent.NewDecoder(conn)
	for {
		m, err := dec.Next()
		if errors.Is(err, agent.ErrMalformed) || errors.Is(err, agent.ErrTooLong) {
			// A host reconnecting mid-line reads the tail of a line.
			l.cfg.Logger.Debug("skipped a bad line from the agent", "err", err)
			continue
		}
		if err != nil {
			return err
		}
		l.receive(m)
	}
}

func (l *Link) receive(m agent.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m.Hello != nil {
		if l.st.BootID != "" && l.st.BootID != m.Hello.BootID {
			l.cfg.Logger.Info("guest rebooted", "boot_id", m.Hello.BootID)
		}
		l.st.AgentVersion, l.st.BootID, l.st.Hostname = m.Hello.AgentVersion, m.Hello.BootID, m.Hello.Hostname
	}
	if m.IPs != nil {
		l.st.IPs = slices.Clone(m.IPs.Addrs)
	}
	if m.Type == agent.TypeHeartbeat {
		l.st.LastHeartbeat = time.Now()
		l.st.Seq = m.Heartbeat.Seq
		l.st.Uptime = time.Duration(m.Heartbeat.UptimeMS) * time.Millisecond
	}
	if m.Type == agent.TypeReply {
		if ch, ok := l.pending[m.ID]; ok {
			ch <- result{m: m}
			delete(l.pending, m.ID)
		}
	}
	l.notifyLocked()
}

func (l *Link) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// Status returns what is known of the agent now.
func (l *Link) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.st
	s.IPs = slices.Clone(s.IPs)
	return s
}

// Changed returns a channel closed at the next change of Status (or of
// the connection).
func (l *Link) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// LastHeartbeat returns when the last heartbeat arrived (zero: none).
func (l *Link) LastHeartbeat() time.Time { return l.Status().LastHeartbeat }

// Uptime returns the guest's uptime as of the last heartbeat.
func (l *Link) Uptime() time.Duration { return l.Status().Uptime }

// IPs returns the guest's addresses as last reported.
func (l *Link) IPs() []agent.Addr { return l.Status().IPs }

// BootID returns the guest's boot ID as last reported.
func (l *Link) BootID() string { return l.Status().BootID }

// request sends m once connected (waiting for a connection until ctx
// ends) and waits for its reply.
func (l *Link) request(ctx context.Context, m agent.Message) (agent.Message, error) {
	var (
		conn io.ReadWriteCloser
		wmu  *sync.Mutex
		ch   = make(chan result, 1)
	)
	for {
		l.mu.Lock()
		if l.stopped {
			l.mu.Unlock()
			return agent.Message{}, ErrStopped
		}
		if l.conn != nil {
			conn, wmu = l.conn, l.wmu
			l.nextID++
			m.ID = l.nextID
			l.pending[m.ID] = ch
			l.mu.Unlock()
			break
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return agent.Message{}, fmt.Errorf("%s: no agent connection: %w", m.Type, ctx.Err())
		}
	}
	forget := func() {
		l.mu.Lock()
		delete(l.pending, m.ID)
		l.mu.Unlock()
	}
	wmu.Lock()
	err := agent.Encode(conn, m)
	wmu.Unlock()
	if err != nil {
		forget()
		return agent.Message{}, fmt.Errorf("send %s: %w: %w", m.Type, ErrDisconnected, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return agent.Message{}, fmt.Errorf("%s: %w", m.Type, r.err)
		}
		if r.m.Error != "" {
			return r.m, fmt.Errorf("%s: %w: %s", m.Type, ErrAgent, r.m.Error)
		}
		return r.m, nil
	case <-ctx.Done():
		forget()
		return agent.Message{}, fmt.Errorf("%s: no reply: %w", m.Type, ctx.Err())
	}
}

// Shutdown asks the guest to power off and returns once the agent has
// accepted; the guest then shuts down by itself (QEMU exits unless run
// with -no-shutdown).
func (l *Link) Shutdown(ctx context.Context) error {
	_, err := l.request(ctx, agent.Message{Type: agent.TypeShutdown})
	return err
}

// Freeze freezes the guest's writable file systems and returns how many
// it froze. The agent thaws them by itself after timeout (0: the agent's
// default, 60 s) if no Thaw comes.
func (l *Link) Freeze(ctx context.Context, timeout time.Duration) (int, error) {
	req := agent.Message{Type: agent.TypeFreeze}
	if timeout > 0 {
		req.Freeze = &agent.Freeze{TimeoutMS: max(1, timeout.Milliseconds())}
	}
	r, err := l.request(ctx, req)
	if err != nil {
		return 0, err
	}
	if r.Freeze == nil {
		return 0, nil
	}
	return r.Freeze.Filesystems, nil
}

// Thaw thaws the guest's file systems and returns how many it thawed.
func (l *Link) Thaw(ctx context.Context) (int, error) {
	r, err := l.request(ctx, agent.Message{Type: agent.TypeThaw})
	if err != nil {
		return 0, err
	}
	if r.Freeze == nil {
		return 0, nil
	}
	return r.Freeze.Filesystems, nil
}
