package hypervisor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/internal/qemu"
	"github.com/shoal-hci/shoal/peer"
)

// ConsolePort is the TCP port on which each node's hypervisor daemon
// serves the serial consoles of its VMs to other members (mutual TLS).
const ConsolePort = 7950

// DefaultConsoleListen is the console service's listen address.
const DefaultConsoleListen = ":7950"

// MaxConsoleHistory bounds ConsoleRequest.History.
const MaxConsoleHistory = 1 << 20

// maxConsoleLine bounds the request and reply lines of the console
// protocol.
const maxConsoleLine = 1024

// consoleLock is the file in a VM's runtime directory that whoever is
// attached to its serial console holds an exclusive flock on; it holds
// a line saying who that is.
const consoleLock = "console.lock"

// Console errors, matched with errors.Is.
var (
	// ErrConsoleBusy: someone else is attached to the VM's console
	// (QEMU's socket chardev serves one client at a time).
	ErrConsoleBusy = errors.New("in use")
	// ErrNotRunningHere: the VM has no QEMU on the node asked.
	ErrNotRunningHere = errors.New("vm does not run on this node")
	// ErrBadConsoleRequest: a request line that does not decode.
	ErrBadConsoleRequest = errors.New("bad console request")
)

// ConsoleRequest is the one line a client sends on a console connection
// (JSON, at most 1 KiB with its newline).
type ConsoleRequest struct {
	VM string `json:"vm"` // the VM's name, for messages
	ID string `json:"id"` // the VM's ID: its runtime directory
	// History asks for up to this many bytes of the end of the console
	// log before the live stream (0: none; at most MaxConsoleHistory).
	History int64 `json:"history,omitempty"`
}

// consoleReply is the server's one line answer.
type consoleReply struct {
	OK    bool   `json:"ok,omitempty"`
	Node  string `json:"node,omitempty"` // the answering node's ID
	Code  string `json:"code,omitempty"` // "busy", "not-running", "bad-request", "error"
	Error string `json:"error,omitempty"`
}

// Reply codes of the console protocol.
const (
	codeBusy       = "busy"
	codeNotRunning = "not-running"
	codeBadRequest = "bad-request"
	codeError      = "error"
)

// DecodeConsoleRequest parses a request line (without its newline).
func DecodeConsoleRequest(line []byte) (ConsoleRequest, error) {
	var r ConsoleRequest
	if len(line) >= maxConsoleLine {
		return r, fmt.Errorf("%w: longer than %d bytes", ErrBadConsoleRequest, maxConsoleLine)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return ConsoleRequest{}, fmt.Errorf("%w: %v", ErrBadConsoleRequest, err)
	}
	if dec.More() {
		return ConsoleRequest{}, fmt.Errorf("%w: data after the request", ErrBadConsoleRequest)
	}
	if err := r.validate(); err != nil {
		return ConsoleRequest{}, err
	}
	return r, nil
}

func (r ConsoleRequest) validate() error {
	switch {
	case !vmIDPattern.MatchString(r.ID):
		return fmt.Errorf("%w: id %q is not 32 lowercase hex digits", ErrBadConsoleRequest, r.ID)
	case !vmNamePattern.MatchString(r.VM):
		return fmt.Errorf("%w: vm name %q", ErrBadConsoleRequest, r.VM)
	case r.History < 0 || r.History > MaxConsoleHistory:
		return fmt.Errorf("%w: history %d is not 0-%d", ErrBadConsoleRequest, r.History, MaxConsoleHistory)
	}
	return nil
}

// Console is an attached serial console: reads return what the guest
// prints, writes are typed into it. Close detaches.
type Console struct {
	net.Conn
	lock *os.File
}

// Close detaches: the console is free for the next client.
func (c *Console) Close() error {
	err := c.Conn.Close()
	c.lock.Close() // releases the flock
	return err
}

// AttachConsole attaches to the serial console of the VM with ID id
// whose QEMU runs on this node, below runtimeDir (Config.RuntimeDir).
// holder says who attaches; a later attempt while this one is attached
// fails with ErrConsoleBusy naming it. A VM without a QEMU here fails
// with ErrNotRunningHere.
func AttachConsole(runtimeDir, id, holder string) (*Console, error) {
	if !vmIDPattern.MatchString(id) {
		return nil, fmt.Errorf("%w: vm id %q", ErrBadConsoleRequest, id)
	}
	dir := filepath.Join(runtimeDir, id)
	if _, err := os.Stat(qemu.SerialSocket(dir)); err != nil {
		return nil, fmt.Errorf("%w (no %s)", ErrNotRunningHere, qemu.SerialSocket(dir))
	}
	lock, err := os.OpenFile(filepath.Join(dir, consoleLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("console lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		who, _ := io.ReadAll(io.LimitReader(lock, 256))
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w by %s", ErrConsoleBusy, strings.TrimSpace(string(who)))
		}
		return nil, fmt.Errorf("console lock: %w", err)
	}
	if err := lock.Truncate(0); err == nil {
		lock.WriteAt([]byte(holder+"\n"), 0)
	}
	conn, err := net.DialTimeout("unix", qemu.SerialSocket(dir), 5*time.Second)
	if err != nil {
		lock.Close()
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w (its QEMU is gone)", ErrNotRunningHere)
		}
		return nil, fmt.Errorf("connect to the serial console: %w", err)
	}
	return &Console{Conn: conn, lock: lock}, nil
}

// ConsoleHistory returns up to n bytes of the end of the console log of
// the VM with ID id below runtimeDir (nil when there is none).
func ConsoleHistory(runtimeDir, id string, n int64) []byte {
	if n <= 0 || !vmIDPattern.MatchString(id) {
		return nil
	}
	f, err := os.Open(qemu.ConsoleLog(filepath.Join(runtimeDir, id)))
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(st.Size()-min(n, MaxConsoleHistory), 0)
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	return b
}

// DialConsole connects to the console service of the node at addr
// (HOST:PORT) with tlsConfig (this node's peer.NodeTLS ClientTLS), asks
// for the console of req's VM, and returns the stream (history first,
// then live). wantNode, if set, is the node ID that must answer.
func DialConsole(ctx context.Context, addr string, tlsConfig *tls.Config, wantNode string, req ConsoleRequest) (net.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}, Config: tlsConfig}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to the console service at %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	c, err := consoleHandshake(conn, wantNode, req)
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return c, nil
}

// consoleHandshake sends req on conn and reads the reply. The returned
// conn reads through the reply's buffer.
func consoleHandshake(conn net.Conn, wantNode string, req ConsoleRequest) (net.Conn, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	b, _ := json.Marshal(req)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("send console request: %w", err)
	}
	br := bufio.NewReaderSize(conn, maxConsoleLine)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return nil, fmt.Errorf("read console reply: %w", err)
	}
	var rep consoleReply
	if err := json.Unmarshal(line, &rep); err != nil {
		return nil, fmt.Errorf("console reply %q: %w", line, err)
	}
	if !rep.OK {
		var sentinel error
		switch rep.Code {
		case codeBusy:
			return nil, fmt.Errorf("%w by %s", ErrConsoleBusy, rep.Error)
		case codeNotRunning:
			sentinel = ErrNotRunningHere
		case codeBadRequest:
			sentinel = ErrBadConsoleRequest
		default:
			return nil, fmt.Errorf("console service: %s", rep.Error)
		}
		return nil, fmt.Errorf("%w: %s", sentinel, rep.Error)
	}
	if wantNode != "" && rep.Node != wantNode {
		return nil, fmt.Errorf("the console service answered as node %s, not %s (the VM moved?)", rep.Node, wantNode)
	}
	conn.SetDeadline(time.Time{})
	return &bufferedConn{Conn: conn, r: br}, nil
}

// bufferedConn reads through r (which may hold bytes read past a line).
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// serveConsole answers one console connection whose peer (a node ID,
// for the console lock's holder line) is already authenticated: it
// reads the request, attaches, sends the history and relays until
// either side closes or ctx ends.
func serveConsole(ctx context.Context, conn net.Conn, runtimeDir, self, peer string) error {
	defer conn.Close()
	reply := func(r consoleReply) error {
		b, _ := json.Marshal(r)
		_, err := conn.Write(append(b, '\n'))
		return err
	}
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReaderSize(conn, maxConsoleLine)
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			reply(consoleReply{Code: codeBadRequest, Error: "request line too long"})
		}
		return fmt.Errorf("read console request: %w", err)
	}
	req, err := DecodeConsoleRequest(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		reply(consoleReply{Code: codeBadRequest, Error: err.Error()})
		return err
	}
	c, err := AttachConsole(runtimeDir, req.ID, "`shoal vm console` on node "+peer+" (through port 7950)")
	if err != nil {
		r := consoleReply{Code: codeError, Node: self, Error: fmt.Sprintf("vm %s: %v", req.VM, err)}
		switch {
		case errors.Is(err, ErrConsoleBusy):
			// Just who holds it: the client says "in use by …".
			r.Code, r.Error = codeBusy, strings.TrimPrefix(err.Error(), ErrConsoleBusy.Error()+" by ")
		case errors.Is(err, ErrNotRunningHere):
			r.Code = codeNotRunning
		}
		reply(r)
		return err
	}
	defer c.Close()
	if err := reply(consoleReply{OK: true, Node: self}); err != nil {
		return err
	}
	if h := ConsoleHistory(runtimeDir, req.ID, req.History); len(h) > 0 {
		if _, err := conn.Write(h); err != nil {
			return err
		}
	}
	conn.SetDeadline(time.Time{})
	relay(ctx, &bufferedConn{Conn: conn, r: br}, c)
	return nil
}

// relay copies a to b and b to a until either side ends or ctx ends,
// then closes both.
func relay(ctx context.Context, a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	left := 2
	select {
	case <-done:
		left--
	case <-ctx.Done():
	}
	a.Close()
	b.Close()
	for ; left > 0; left-- {
		<-done
	}
}

// serveConsoles runs the console service until ctx ends: it waits until
// this node has cluster credentials in Config.DataDir (it may not be a
// member yet), listens on Config.ConsoleListen with mutual TLS (members
// only) and serves one console per connection.
func (h *Hypervisor) serveConsoles(ctx context.Context) {
	var nt *peer.NodeTLS
	logged := false
	for ctx.Err() == nil {
		var err error
		if nt, err = peer.LoadNodeTLS(h.cfg.DataDir); err == nil {
			break
		}
		if !logged {
			h.log.Info("console service waits for this node's cluster credentials (checked every 2 s)", "err", err)
			logged = true
		}
		sleep(ctx, 2*time.Second)
	}
	var ln net.Listener
	for ctx.Err() == nil {
		var err error
		var lc net.ListenConfig
		if ln, err = lc.Listen(ctx, "tcp", h.cfg.ConsoleListen); err == nil {
			break
		}
		h.log.Warn("console service cannot listen (retried every 5 s)", "addr", h.cfg.ConsoleListen, "err", err)
		sleep(ctx, 5*time.Second)
	}
	if ctx.Err() != nil {
		return
	}
	h.log.Info("console service up", "listen", ln.Addr().String())
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("console service stopped accepting", "err", err)
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tc := tls.Server(conn, nt.ServerTLS())
			hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := tc.HandshakeContext(hctx)
			cancel()
			if err != nil {
				conn.Close()
				h.log.Info("console connection refused", "remote", conn.RemoteAddr().String(), "err", err)
				return
			}
			peerID, _ := nt.Verify(tc.ConnectionState().PeerCertificates[0])
			h.log.Info("console attached", "node", peerID)
			err = serveConsole(ctx, tc, h.cfg.RuntimeDir, h.cfg.NodeID, peerID)
			h.log.Info("console detached", "node", peerID, "err", err)
		}()
	}
}
