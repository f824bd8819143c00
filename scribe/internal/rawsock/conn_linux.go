package rawsock

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// Conn is a socket read and written with raw system calls.
type Conn struct {
	rc syscall.RawConn

	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// Wrap returns a Conn on rw's socket, or rw itself when it is not a
// socket (a pipe, a TLS connection, a file).
func Wrap(rw io.ReadWriter) io.ReadWriter {
	sc, ok := rw.(syscall.Conn)
	if !ok {
		return rw
	}
	if _, isFile := rw.(*os.File); isFile {
		return rw // may be a blocking descriptor
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return rw
	}
	c := &Conn{rc: rc}
	c.readFn = c.read
	c.writeFn = c.write
	return c
}

// read is one attempt at reading into rbuf; false: not ready.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerrno = int(n), errno
		return true
	}
}

// Read implements io.Reader.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case c.rerrno != 0:
		return 0, os.NewSyscallError("read", c.rerrno)
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

// write writes what is left of wbuf; false: the socket is full.
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.wbuf[c.wn])), uintptr(len(c.wbuf)-c.wn))
		switch errno {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = errno
			return true
		}
	}
	return true
}

// Write implements io.Writer: all of p, or an error.
func (c *Conn) Write(p []byte) (int, error) {
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n := c.wn
	c.wbuf = nil
	switch {
	case err != nil:
		return n, err
	case c.werrno != 0:
		return n, os.NewSyscallError("write", c.werrno)
	}
	return n, nil
}
