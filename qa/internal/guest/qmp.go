package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// QMP is a minimal QEMU Machine Protocol client: capabilities
// negotiation and synchronous commands, skipping asynchronous events.
type QMP struct {
	conn net.Conn
	r    *bufio.Reader
}

// DialQMP connects to a QMP UNIX socket, retrying until ctx ends (QEMU
// creates the socket shortly after it starts).
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var conn net.Conn
	for {
		var err error
		var d net.Dialer
		conn, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to QMP %s: %w", path, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn)}
	if _, err := q.read(ctx); err != nil { // greeting
		conn.Close()
		return nil, fmt.Errorf("QMP greeting: %w", err)
	}
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	QMP   json.RawMessage `json:"QMP"`
}

func (q *QMP) read(ctx context.Context) (qmpReply, error) {
	if dl, ok := ctx.Deadline(); ok {
		q.conn.SetReadDeadline(dl)
	} else {
		q.conn.SetReadDeadline(time.Time{})
	}
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return qmpReply{}, err
	}
	var r qmpReply
	if err := json.Unmarshal(line, &r); err != nil {
		return qmpReply{}, fmt.Errorf("decode QMP %q: %w", line, err)
	}
	return r, nil
}

// Execute runs one command and returns its "return" value.
func (q *QMP) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	for {
		r, err := q.read(ctx)
		if err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
		if r.Event != "" {
			continue
		}
		if r.Error != nil {
			return nil, fmt.Errorf("QMP %s: %s: %s", cmd, r.Error.Class, r.Error.Desc)
		}
		return r.Return, nil
	}
}
