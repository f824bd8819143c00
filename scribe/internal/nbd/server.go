package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// Server serves named exports over any number of listeners.
type Server struct {
	cfg Config

	mu      sync.Mutex
	exports map[string]*export
	names   []string // in insertion order, for NBD_OPT_LIST
}

type export struct {
	name    string
	backend Backend
	opts    ExportOptions
}

func (e *export) transmissionFlags() uint16 {
	f := uint16(tfHasFlags | tfSendFlush | tfSendFUA | tfSendTrim | tfWriteZeroes | tfSendDF | tfFastZero)
	if e.opts.ReadOnly {
		f |= tfReadOnly
	}
	if e.opts.MultiConn {
		f |= tfCanMultiConn
	}
	return f
}

// New returns a server with no exports.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg.withDefaults(), exports: map[string]*export{}}, nil
}

// AddExport serves b under name. Connections that already chose another
// export are unaffected.
func (s *Server) AddExport(name string, b Backend, opts ExportOptions) error {
	if len(name) > maxStringLen || strings.ContainsRune(name, 0) {
		return fmt.Errorf("add export %q: %w", name, ErrBadExportName)
	}
	if b == nil || b.Size() < 0 {
		return fmt.Errorf("add export %q: backend is nil or has a negative size: %w", name, ErrInvalid)
	}
	if opts.PreferredBlockSize == 0 {
		opts.PreferredBlockSize = 4096
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.exports[name]; ok {
		return fmt.Errorf("add export %q: %w", name, ErrExportExists)
	}
	s.exports[name] = &export{name: name, backend: b, opts: opts}
	s.names = append(s.names, name)
	return nil
}

// RemoveExport stops offering name to new connections. Connections using
// it keep it until they disconnect. It reports whether name was served.
func (s *Server) RemoveExport(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.exports[name]; !ok {
		return false
	}
	delete(s.exports, name)
	for i, n := range s.names {
		if n == name {
			s.names = append(s.names[:i], s.names[i+1:]...)
			break
		}
	}
	return true
}

func (s *Server) lookup(name string) *export {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exports[name]
}

// exportNames lists the exports for NBD_OPT_LIST: those added, then
// those the Resolver lists.
func (s *Server) exportNames(ctx context.Context) []string {
	s.mu.Lock()
	names := append([]string(nil), s.names...)
	s.mu.Unlock()
	if s.cfg.Resolver != nil {
		more, err := s.cfg.Resolver.List(ctx)
		if err != nil {
			s.cfg.Logger.Warn("nbd list exports", "err", err)
		}
		for _, n := range more {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// Serve accepts connections on ln until ctx is cancelled (then it closes
// ln and every connection, waits for their goroutines and returns nil) or
// ln fails (then it returns the error after the same cleanup).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("nbd accept on %s: %w", ln.Addr(), err)
		}
		wg.Add(2)
		connDone := make(chan struct{})
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
				c.Close()
			case <-connDone:
			}
		}()
		go func() {
			defer wg.Done()
			defer close(connDone)
			defer c.Close()
			s.ServeConn(ctx, c)
		}()
	}
}

// ServeConn runs one client session on rw until the client disconnects or
// the stream breaks, and waits for the session's requests to finish. ctx
// is passed to the Backend; ServeConn does not watch it while reading
// (Serve closes its connections when its ctx ends). rw is closed (when it
// is an io.Closer) only if a reply cannot be written. It returns why the
// session ended: nil after NBD_CMD_DISC, NBD_OPT_ABORT or EOF.
func (s *Server) ServeConn(ctx context.Context, rw io.ReadWriter) error {
	sess := newSession(s, rw)
	defer sess.releaseResolved()
	if dl, ok := rw.(interface{ SetDeadline(t time.Time) error }); ok {
		dl.SetDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout))
	}
	exp, err := sess.handshake(ctx)
	if err != nil {
		if !errors.Is(err, errAborted) {
			s.cfg.Logger.Debug("nbd handshake ended", "err", err)
			return err
		}
		return nil
	}
	if dl, ok := rw.(interface{ SetDeadline(t time.Time) error }); ok {
		dl.SetDeadline(time.Time{})
	}
	err = sess.transmit(ctx, exp)
	if err != nil {
		s.cfg.Logger.Debug("nbd session ended", "export", exp.name, "err", err)
	}
	return err
}
