package vmcluster

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"
)

// agentConn is a connection to a guest's QEMU guest agent (qemu-ga) over
// its virtio-serial port, which QEMU exposes as a UNIX socket. The
// protocol is QMP-like JSON lines without a greeting; guest-sync flushes
// whatever an earlier, interrupted client left in the channel.
type agentConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// ExecResult is what a command run in a guest returned.
type ExecResult struct {
	ExitCode       int
	Stdout, Stderr []byte
}

// agentSyncTimeout bounds the wait for guest-sync's answer (a variable
// for tests).
var agentSyncTimeout = 5 * time.Second

// errAgentNotUp: the agent did not answer guest-sync (the guest is still
// booting, or qemu-ga is not running).
var errAgentNotUp = errors.New("the guest agent does not answer (node still booting?)")

func dialAgent(ctx context.Context, sock string) (*agentConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connect to guest agent socket %s: %w", sock, err)
	}
	a := &agentConn{conn: conn, r: bufio.NewReaderSize(conn, 1<<20)}
	sctx, cancel := context.WithTimeout(ctx, agentSyncTimeout)
	defer cancel()
	id := rand.Int64N(1 << 40)
	if err := a.send("guest-sync", map[string]any{"id": id}); err != nil {
		conn.Close()
		return nil, err
	}
	for {
		var got int64
		err := a.recv(sctx, &got)
		if err != nil {
			conn.Close()
			if sctx.Err() != nil || errors.Is(err, errAgentNotUp) {
				return nil, errAgentNotUp
			}
			return nil, err
		}
		if got == id {
			return a, nil
		}
	}
}

func (a *agentConn) Close() error { return a.conn.Close() }

func (a *agentConn) send(cmd string, args any) error {
	b, err := json.Marshal(map[string]any{"execute": cmd, "arguments": args})
	if err != nil {
		return err
	}
	_, err = a.conn.Write(append(b, '\n'))
	return err
}

// recv reads the next reply into out.
func (a *agentConn) recv(ctx context.Context, out any) error {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Time{}
	}
	a.conn.SetReadDeadline(dl)
	line, err := a.r.ReadBytes('\n')
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errAgentNotUp
		}
		return fmt.Errorf("read from guest agent: %w", err)
	}
	var r struct {
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return nil // a fragment of an older exchange: skip it
	}
	if r.Error != nil {
		return fmt.Errorf("guest agent: %s: %s", r.Error.Class, r.Error.Desc)
	}
	if len(r.Return) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Return, out); err != nil {
		return nil // not the reply we wait for (guest-sync of an older client)
	}
	return nil
}

func (a *agentConn) call(ctx context.Context, cmd string, args, out any) error {
	if err := a.send(cmd, args); err != nil {
		return fmt.Errorf("guest agent %s: %w", cmd, err)
	}
	return a.recv(ctx, out)
}

// exec runs argv[0] (an absolute path) with its arguments in the guest
// and waits for it to exit or ctx to end.
func (a *agentConn) exec(ctx context.Context, argv []string) (ExecResult, error) {
	var started struct {
		Pid int `json:"pid"`
	}
	if err := a.call(ctx, "guest-exec", map[string]any{"path": argv[0], "arg": argv[1:], "capture-output": true}, &started); err != nil {
		return ExecResult{}, err
	}
	if started.Pid == 0 {
		return ExecResult{}, errors.New("guest agent: guest-exec returned no pid")
	}
	delay := 20 * time.Millisecond
	for {
		var st struct {
			Exited   bool   `json:"exited"`
			ExitCode int    `json:"exitcode"`
			Signal   int    `json:"signal"`
			Out      string `json:"out-data"`
			Err      string `json:"err-data"`
		}
		if err := a.call(ctx, "guest-exec-status", map[string]any{"pid": started.Pid}, &st); err != nil {
			return ExecResult{}, err
		}
		if st.Exited {
			res := ExecResult{ExitCode: st.ExitCode}
			if st.Signal != 0 {
				res.ExitCode = 128 + st.Signal
			}
			var err1, err2 error
			res.Stdout, err1 = base64.StdEncoding.DecodeString(st.Out)
			res.Stderr, err2 = base64.StdEncoding.DecodeString(st.Err)
			return res, errors.Join(err1, err2)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ExecResult{}, fmt.Errorf("command %v in the guest still runs: %w", argv, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}
