package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/hypervisor"
	"github.com/shoal-hci/shoal/peer"
	"github.com/shoal-hci/shoal/peer/client"
)

// detachKey is Ctrl-]: typed on a terminal it detaches from a console.
const detachKey = 0x1d

// VMConsole is `shoal vm console NAME`: the VM's serial console, from
// any node. On a terminal it is raw and Ctrl-] detaches; otherwise
// stdin is typed into the console and its output copied to stdout.
func VMConsole(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vm console")
	runtimeDir := fs.String("runtime-dir", hypervisor.DefaultRuntimeDir, "the hypervisor's runtime dir (VMs running on this node)")
	dataDir := fs.String("data-dir", peer.DefaultDataDir, "data dir holding this node's cluster certificate (VMs on other nodes)")
	history := fs.Int64("history", 0, "first print up to this many bytes of what the console printed before")
	until := fs.String("until", "", "detach once the output contains this text (scripts and tests)")
	timeout := fs.Duration("timeout", 0, "detach after this long (0: never); with --until, not seeing the text by then is an error")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	if *history < 0 || *history > hypervisor.MaxConsoleHistory {
		return verb.Usagef("--history %d: want 0 to %d bytes", *history, hypervisor.MaxConsoleHistory)
	}
	c := fs.client()
	v, err := getVM(ctx, c, fs.Arg(0))
	if err != nil {
		return err
	}
	if v.Node == "" || v.Status == "stopped" {
		return fmt.Errorf("vm %s is not running (status %s): `shoal vm start %s` first", v.Name, v.Status, v.Name)
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	conn, where, err := openConsole(ctx, env, c, v, *runtimeDir, *dataDir, *history)
	if err != nil {
		return err
	}
	defer conn.Close()
	s := consoleSession{conn: conn, stdin: env.Stdin, stdout: env.Stdout, until: []byte(*until)}
	if f, ok := env.Stdin.(*os.File); ok && isTerminal(f) && *until == "" {
		restore, err := makeRaw(f)
		if err != nil {
			return fmt.Errorf("raw terminal mode: %w", err)
		}
		defer restore()
		s.detachKey = true
		fmt.Fprintf(env.Stderr, "attached to the console of vm %s on %s; Ctrl-] detaches\r\n", v.Name, where)
	}
	end := s.run(ctx)
	switch {
	case end == endUntil, end == endDetached:
		if s.detachKey {
			fmt.Fprintf(env.Stderr, "\r\ndetached from vm %s\r\n", v.Name)
		}
		return nil
	case end == endClosed:
		return fmt.Errorf("the console of vm %s closed (the VM stopped, crashed or moved; `shoal vm info %s`)", v.Name, v.Name)
	case len(s.until) > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("vm %s: %q did not appear on the console within %v", v.Name, *until, *timeout)
	}
	return nil // interrupted, or --timeout without --until
}

// openConsole attaches to v's console: directly when it runs on this
// node, else through the console service of its node. where names the
// node for messages.
func openConsole(ctx context.Context, env *verb.Env, c *client.Client, v vmInfo, runtimeDir, dataDir string, history int64) (net.Conn, string, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, "", err
	}
	busy := func(where string, err error) error {
		if errors.Is(err, hypervisor.ErrConsoleBusy) {
			return fmt.Errorf("console of vm %s on %s is %v: detach it there first (Ctrl-]); QEMU serves one client at a time", v.Name, where, err)
		}
		return fmt.Errorf("console of vm %s on %s: %w", v.Name, where, err)
	}
	if v.Node == st.Self.ID {
		where := "this node (" + st.Self.Name + ")"
		cons, err := hypervisor.AttachConsole(runtimeDir, v.ID, "`shoal vm console` (pid "+strconv.Itoa(os.Getpid())+") on node "+st.Self.Name)
		if err != nil {
			return nil, "", busy(where, err)
		}
		if h := hypervisor.ConsoleHistory(runtimeDir, v.ID, history); len(h) > 0 {
			env.Stdout.Write(h)
		}
		return cons, where, nil
	}
	members, err := c.Nodes(ctx)
	if err != nil {
		return nil, "", err
	}
	var m *client.Member
	for i := range members {
		if members[i].ID == v.Node {
			m = &members[i]
		}
	}
	if m == nil {
		return nil, "", fmt.Errorf("vm %s runs on node %s, which is not a member: it cannot be reached", v.Name, v.Node)
	}
	where := "node " + m.Name + " (" + m.ID + ")"
	if m.State != client.StateAlive && m.State != client.StateSuspect && m.State != client.StateLeaving {
		return nil, "", fmt.Errorf("vm %s runs on %s, which is %s: unreachable (`shoal status`)", v.Name, where, m.State)
	}
	host, _, err := net.SplitHostPort(m.Gossip)
	if err != nil || host == "" {
		return nil, "", fmt.Errorf("%s has no backplane address (gossip %q)", where, m.Gossip)
	}
	nt, err := peer.LoadNodeTLS(dataDir)
	switch {
	case errors.Is(err, peer.ErrNotMember):
		return nil, "", fmt.Errorf("vm %s runs on %s, and this node has no cluster certificate in %s to reach it: %w", v.Name, where, dataDir, err)
	case errors.Is(err, fs.ErrPermission):
		return nil, "", fmt.Errorf("%w (the cluster certificate is readable by root only: run as root)", err)
	case err != nil:
		return nil, "", err
	}
	addr := net.JoinHostPort(host, strconv.Itoa(hypervisor.ConsolePort))
	conn, err := hypervisor.DialConsole(ctx, addr, nt.ClientTLS(), v.Node, hypervisor.ConsoleRequest{VM: v.Name, ID: v.ID, History: history})
	if err != nil {
		return nil, "", busy(where, err)
	}
	return conn, where, nil
}

// Why a console session ended.
type consoleEnd int

const (
	endContext  consoleEnd = iota // ctx ended (interrupt, --timeout)
	endClosed                     // the console's side closed
	endDetached                   // Ctrl-] on a terminal
	endUntil                      // --until text seen
)

// consoleSession copies between a console and stdin/stdout.
type consoleSession struct {
	conn      net.Conn
	stdin     io.Reader
	stdout    io.Writer
	until     []byte
	detachKey bool // Ctrl-] detaches (terminal)
}

// run copies until the session ends and says why. stdin reaching its end
// only stops input: output goes on.
func (s *consoleSession) run(ctx context.Context) consoleEnd {
	ends := make(chan consoleEnd, 2)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// Whatever ends the session (cancel on return included) unblocks the
	// output goroutine's read.
	context.AfterFunc(ctx, func() { s.conn.SetReadDeadline(time.Now()) })
	wg.Add(2)
	go func() {
		defer wg.Done()
		ends <- s.output()
	}()
	go func() {
		defer wg.Done()
		if s.input(ctx) {
			ends <- endDetached
		}
	}()
	select {
	case e := <-ends:
		return e
	case <-ctx.Done():
		return endContext
	}
}

// output copies the console to stdout, watching for the until text.
func (s *consoleSession) output() consoleEnd {
	buf := make([]byte, 32<<10)
	var tail []byte
	for {
		n, err := s.conn.Read(buf)
		if n > 0 {
			s.stdout.Write(buf[:n])
			if len(s.until) > 0 {
				tail = append(tail, buf[:n]...)
				if bytes.Contains(tail, s.until) {
					return endUntil
				}
				if keep := len(s.until) - 1; len(tail) > keep {
					tail = append(tail[:0], tail[len(tail)-keep:]...)
				}
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return endContext
			}
			return endClosed
		}
	}
}

// input types stdin into the console until stdin ends or ctx ends; it
// reports whether the detach key was typed.
func (s *consoleSession) input(ctx context.Context) bool {
	if s.stdin == nil {
		return false
	}
	buf := make([]byte, 4096)
	for ctx.Err() == nil {
		n, err := pollRead(s.stdin, buf)
		if n > 0 {
			b := buf[:n]
			if s.detachKey {
				if i := bytes.IndexByte(b, detachKey); i >= 0 {
					s.conn.Write(b[:i])
					return true
				}
			}
			if _, err := s.conn.Write(b); err != nil {
				return false
			}
		}
		if err != nil {
			return false // end of input: keep printing the output
		}
	}
	return false
}
