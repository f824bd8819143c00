package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Config configures an Agent.
type Config struct {
	// Transports are tried in order on every (re)connect. Zero:
	// DefaultTransports().
	Transports []Transport
	// System is the guest. Zero: Guest{}.
	System System
	// Logger receives connection changes and request failures. Zero:
	// discard.
	Logger *slog.Logger
	// Version is the agent version sent in hello. Zero: "dev".
	Version string
	// HeartbeatInterval is the period of heartbeats and of the address
	// check. Zero: 1 s.
	HeartbeatInterval time.Duration
	// RetryInterval is the pause between connection attempts. Zero: 250 ms.
	RetryInterval time.Duration
	// FreezeTimeout is how long file systems stay frozen when fs-freeze
	// names no timeout; MaxFreeze caps any timeout. Zero: 60 s and 10 min.
	FreezeTimeout, MaxFreeze time.Duration
}

// DefaultConfig returns the configuration of the agent in a guest.
func DefaultConfig() Config {
	return Config{Transports: DefaultTransports(), System: Guest{}, Version: "dev",
		HeartbeatInterval: time.Second, RetryInterval: 250 * time.Millisecond,
		FreezeTimeout: time.Minute, MaxFreeze: 10 * time.Minute}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.HeartbeatInterval < 0 || c.RetryInterval < 0 || c.FreezeTimeout < 0 || c.MaxFreeze < 0 {
		return fmt.Errorf("agent config: negative interval")
	}
	if c.MaxFreeze > 0 && c.FreezeTimeout > c.MaxFreeze {
		return fmt.Errorf("agent config: FreezeTimeout %s over MaxFreeze %s", c.FreezeTimeout, c.MaxFreeze)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.Transports) == 0 {
		c.Transports = d.Transports
	}
	if c.System == nil {
		c.System = d.System
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Version == "" {
		c.Version = d.Version
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = d.RetryInterval
	}
	if c.FreezeTimeout == 0 {
		c.FreezeTimeout = d.FreezeTimeout
	}
	if c.MaxFreeze == 0 {
		c.MaxFreeze = d.MaxFreeze
	}
	return c
}

// Agent is the guest side of the host link.
type Agent struct {
	cfg Config

	mu     sync.Mutex
	frozen bool
	thawAt *time.Timer // auto-thaw of the current freeze
}

// New returns an agent; Run runs it.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg.withDefaults()}, nil
}

// Run connects to the host, serves it, and reconnects whenever the host
// side goes away, until ctx ends (then nil). File systems it froze are
// thawed before it returns.
func (a *Agent) Run(ctx context.Context) error {
	defer a.thawOnExit()
	for ctx.Err() == nil {
		conn, tr, err := a.open(ctx)
		if err == nil {
			a.cfg.Logger.Debug("connected to host", "transport", tr)
			err = a.session(ctx, conn)
			if ctx.Err() == nil {
				a.cfg.Logger.Debug("host link ended", "transport", tr, "err", err)
			}
		}
		t := time.NewTimer(a.cfg.RetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return nil
}

func (a *Agent) open(ctx context.Context) (io.ReadWriteCloser, string, error) {
	var errs []error
	for _, t := range a.cfg.Transports {
		c, err := t.Open(ctx)
		if err == nil {
			return c, t.Name(), nil
		}
		errs = append(errs, err)
	}
	return nil, "", fmt.Errorf("%w: %w", ErrNoTransport, errors.Join(errs...))
}

// session serves one connection until it breaks or ctx ends.
func (a *Agent) session(ctx context.Context, conn io.ReadWriteCloser) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Closing unblocks a Read or Write stuck on a host that went away.
	stop := context.AfterFunc(sctx, func() { conn.Close() })
	defer func() {
		cancel()
		if stop() {
			conn.Close()
		}
	}()

	reqs := make(chan Message)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		defer cancel()
		dec := NewDecoder(conn)
		for {
			m, err := dec.Next()
			if errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLong) {
				a.cfg.Logger.Warn("skipped a bad line from the host", "err", err)
				continue
			}
			if err != nil {
				readErr <- err
				return
			}
			select {
			case reqs <- m:
			case <-sctx.Done():
				return
			}
		}
	})

	send := func(m Message) error {
		if err := Encode(conn, m); err != nil {
			return fmt.Errorf("send %s: %w", m.Type, err)
		}
		return nil
	}
	hello, err := a.hello()
	if err != nil {
		a.cfg.Logger.Warn("hello incomplete", "err", err)
	}
	if err := send(Message{Type: TypeHello, Hello: &hello}); err != nil {
		return err
	}
	ips, err := a.cfg.System.Addrs()
	if err != nil {
		a.cfg.Logger.Warn("read addresses", "err", err)
	}
	if err := send(Message{Type: TypeIPs, IPs: &IPs{Addrs: ips}}); err != nil {
		return err
	}
	var seq uint64
	beat := func() error {
		seq++
		up, err := a.cfg.System.Uptime()
		if err != nil {
			a.cfg.Logger.Warn("read uptime", "err", err)
		}
		if err := send(Message{Type: TypeHeartbeat, Heartbeat: &Heartbeat{Seq: seq, UptimeMS: up.Milliseconds()}}); err != nil {
			return err
		}
		now, err := a.cfg.System.Addrs()
		if err == nil && !slices.Equal(now, ips) {
			ips = now
			return send(Message{Type: TypeIPs, IPs: &IPs{Addrs: ips}})
		}
		return nil
	}
	if err := beat(); err != nil {
		return err
	}
	tick := time.NewTicker(a.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-sctx.Done():
			select {
			case err := <-readErr:
				return err
			default:
				return sctx.Err()
			}
		case <-tick.C:
			if err := beat(); err != nil {
				return err
			}
		case m := <-reqs:
			reply, after := a.handle(m)
			if reply.Type == "" {
				continue
			}
			if err := send(reply); err != nil {
				return err
			}
			if after != nil {
				after()
			}
		}
	}
}

func (a *Agent) hello() (Hello, error) {
	h := Hello{AgentVersion: a.cfg.Version}
	var errs []error
	var err error
	if h.BootID, err = a.cfg.System.BootID(); err != nil {
		errs = append(errs, err)
	}
	if h.Hostname, err = a.cfg.System.Hostname(); err != nil {
		errs = append(errs, err)
	}
	return h, errors.Join(errs...)
}

// handle answers one request; after, if set, runs once the reply is sent.
func (a *Agent) handle(m Message) (reply Message, after func()) {
	if m.ID == 0 {
		// Not a request (or an old peer's notice): nothing to answer.
		return Message{}, nil
	}
	r := Message{Type: TypeReply, ID: m.ID}
	fail := func(err error) (Message, func()) {
		r.Error = err.Error()
		return r, nil
	}
	switch m.Type {
	case TypeGetHello:
		h, err := a.hello()
		if err != nil {
			return fail(err)
		}
		r.Hello = &h
	case TypeGetIPs:
		ips, err := a.cfg.System.Addrs()
		if err != nil {
			return fail(err)
		}
		r.IPs = &IPs{Addrs: ips}
	case TypeShutdown:
		a.cfg.Logger.Info("host asked for shutdown: powering off")
		return r, func() {
			if err := a.cfg.System.Poweroff(); err != nil {
				a.cfg.Logger.Error("power off", "err", err)
			}
		}
	case TypeFreeze:
		timeout := a.cfg.FreezeTimeout
		if m.Freeze != nil && m.Freeze.TimeoutMS > 0 {
			timeout = time.Duration(m.Freeze.TimeoutMS) * time.Millisecond
		}
		n, err := a.freeze(min(timeout, a.cfg.MaxFreeze))
		if err != nil {
			return fail(err)
		}
		r.Freeze = &Freeze{Filesystems: n}
	case TypeThaw:
		n, err := a.thaw()
		if err != nil {
			return fail(err)
		}
		r.Freeze = &Freeze{Filesystems: n}
	default:
		r.Error = fmt.Sprintf("unknown request %q (agent protocol version %d)", m.Type, Version)
	}
	return r, nil
}

// freeze freezes the file systems and arms the thaw after timeout. A
// second freeze while frozen re-arms the timer and counts nothing new.
func (a *Agent) freeze(timeout time.Duration) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.frozen {
		a.thawAt.Reset(timeout)
		return 0, nil
	}
	n, err := a.cfg.System.Freeze()
	if err != nil {
		return 0, err
	}
	a.frozen = true
	a.thawAt = time.AfterFunc(timeout, func() {
		a.cfg.Logger.Warn("file systems frozen too long: thawing", "after", timeout)
		a.thaw()
	})
	return n, nil
}

func (a *Agent) thaw() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.thawAt != nil {
		a.thawAt.Stop()
		a.thawAt = nil
	}
	a.frozen = false
	// Thaw even when this agent froze nothing: an earlier agent may have.
	return a.cfg.System.Thaw()
}

func (a *Agent) thawOnExit() {
	a.mu.Lock()
	frozen := a.frozen
	a.mu.Unlock()
	if frozen {
		if _, err := a.thaw(); err != nil {
			a.cfg.Logger.Error("thaw on exit", "err", err)
		}
	}
}
