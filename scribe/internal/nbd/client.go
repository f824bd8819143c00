package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// RemoteError is an error the server returned for a request.
type RemoteError struct {
	Errno uint32
}

func (e *RemoteError) Error() string { return fmt.Sprintf("nbd server returned errno %d", e.Errno) }

// Client is a minimal NBD client for tests and checkers: fixed newstyle,
// NBD_OPT_GO, simple replies, one request at a time.
type Client struct {
	conn  net.Conn
	r     *bufio.Reader
	size  int64
	flags uint16

	mu     sync.Mutex
	cookie uint64
}

// Dial connects to addr (network "unix" or "tcp") and selects export.
func Dial(ctx context.Context, network, addr, export string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("nbd dial %s: %w", addr, err)
	}
	c, err := NewClient(conn, export)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// NewClient runs the handshake on conn and selects export. The Client
// owns conn from then on.
func NewClient(conn net.Conn, export string) (*Client, error) {
	c := &Client{conn: conn, r: bufio.NewReader(conn)}
	if err := c.handshake(export); err != nil {
		return nil, fmt.Errorf("nbd handshake for export %q: %w", export, err)
	}
	return c, nil
}

func (c *Client) handshake(export string) error {
	var hello [18]byte
	if _, err := io.ReadFull(c.r, hello[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint64(hello[0:]) != magicNBD || binary.BigEndian.Uint64(hello[8:]) != magicOpt {
		return fmt.Errorf("not a newstyle NBD server: %w", errProtocol)
	}
	sflags := binary.BigEndian.Uint16(hello[16:])
	if sflags&flagFixedNewstyle == 0 {
		return fmt.Errorf("server lacks fixed newstyle: %w", errProtocol)
	}
	cflags := uint32(flagFixedNewstyle) | uint32(sflags&flagNoZeroes)
	msg := binary.BigEndian.AppendUint32(nil, cflags)
	msg = binary.BigEndian.AppendUint64(msg, magicOpt)
	msg = binary.BigEndian.AppendUint32(msg, optGo)
	msg = binary.BigEndian.AppendUint32(msg, uint32(4+len(export)+2))
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(export)))
	msg = append(msg, export...)
	msg = binary.BigEndian.AppendUint16(msg, 0)
	if _, err := c.conn.Write(msg); err != nil {
		return err
	}
	gotSize := false
	for {
		var h [20]byte
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			return err
		}
		if binary.BigEndian.Uint64(h[0:]) != magicOptReply {
			return fmt.Errorf("option reply magic: %w", errProtocol)
		}
		typ, n := binary.BigEndian.Uint32(h[12:]), binary.BigEndian.Uint32(h[16:])
		if n > 64<<10 {
			return fmt.Errorf("option reply of %d bytes: %w", n, errProtocol)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.r, data); err != nil {
			return err
		}
		switch {
		case typ == repAck:
			if !gotSize {
				return fmt.Errorf("server sent no export size: %w", errProtocol)
			}
			return nil
		case typ == repInfo && len(data) >= 12 && binary.BigEndian.Uint16(data) == infoExport:
			c.size = int64(binary.BigEndian.Uint64(data[2:]))
			c.flags = binary.BigEndian.Uint16(data[10:])
			gotSize = c.size >= 0
		case typ>>31 != 0:
			return fmt.Errorf("server refused the export (reply %#x): %s", typ, data)
		}
	}
}

// Size is the export size.
func (c *Client) Size() int64 { return c.size }

// Close sends NBD_CMD_DISC and closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.send(cmdDisc, 0, 0, 0, nil)
	return c.conn.Close()
}

func (c *Client) send(typ, flags uint16, off uint64, length uint32, payload []byte) (uint64, error) {
	c.cookie++
	h := make([]byte, requestHeaderLen, requestHeaderLen+len(payload))
	binary.BigEndian.PutUint32(h[0:], magicRequest)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], c.cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
	nb := net.Buffers{h, payload}
	_, err := nb.WriteTo(c.conn)
	return c.cookie, err
}

// do sends one request and reads its simple reply into data.
func (c *Client) do(typ, flags uint16, off int64, length uint32, payload, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cookie, err := c.send(typ, flags, uint64(off), length, payload)
	if err != nil {
		return fmt.Errorf("nbd send: %w", err)
	}
	var h [16]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return fmt.Errorf("nbd reply: %w", err)
	}
	if binary.BigEndian.Uint32(h[0:]) != magicSimple || binary.BigEndian.Uint64(h[8:]) != cookie {
		return fmt.Errorf("nbd reply header %x: %w", h, errProtocol)
	}
	if errno := binary.BigEndian.Uint32(h[4:]); errno != 0 {
		return &RemoteError{Errno: errno}
	}
	if data != nil {
		if _, err := io.ReadFull(c.r, data); err != nil {
			return fmt.Errorf("nbd read data: %w", err)
		}
	}
	return nil
}

// ReadAt reads len(p) bytes at off.
func (c *Client) ReadAt(p []byte, off int64) error {
	return c.do(cmdRead, 0, off, uint32(len(p)), nil, p)
}

// WriteAt writes p at off, with FUA when fua is set.
func (c *Client) WriteAt(p []byte, off int64, fua bool) error {
	var f uint16
	if fua {
		f = cmdFlagFUA
	}
	return c.do(cmdWrite, f, off, uint32(len(p)), p, nil)
}

// Flush asks the server to make every completed write durable.
func (c *Client) Flush() error { return c.do(cmdFlush, 0, 0, 0, nil, nil) }

// Trim discards [off, off+n).
func (c *Client) Trim(off int64, n uint32) error { return c.do(cmdTrim, 0, off, n, nil, nil) }

// IsRemote reports whether err came from the server with errno.
func IsRemote(err error, errno uint32) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Errno == errno
}
