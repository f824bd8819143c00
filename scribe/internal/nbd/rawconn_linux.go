package nbd

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// rawConn reads and writes a non-blocking socket with raw system calls,
// parking in the netpoller (through syscall.RawConn) only when the
// socket is not ready. A non-blocking read or write never blocks in the
// kernel, so the Go runtime need not be told of it; told (net.Conn's
// Read and Write do: entersyscall), it wakes its sysmon thread whenever
// every P was idle before, which is the case at every request of a
// client at queue depth 1, and that wake-up and the sysmon's sleeps
// that follow cost more CPU than the request's own system calls.
// Deadlines set on the connection still apply.
//
// One goroutine reads at a time and one writes at a time (the session's
// reader and whoever holds wmu): each direction keeps its call's state
// here, so the functions passed to RawConn are made once, not per call.
type rawConn struct {
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

// rawConnOf returns a rawConn on rw's socket, or nil when rw is not a
// socket (a pipe in tests, a TLS connection).
func rawConnOf(rw io.ReadWriter) *rawConn {
	sc, ok := rw.(syscall.Conn)
	if !ok {
		return nil
	}
	if _, isFile := rw.(*os.File); isFile {
		return nil // may be a blocking descriptor
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	c := &rawConn{rc: rc}
	c.readFn = c.read
	c.writeFn = c.write
	return c
}

// read is one attempt at reading into rbuf; false: not ready.
func (c *rawConn) read(fd uintptr) bool {
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

func (c *rawConn) Read(p []byte) (int, error) {
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
func (c *rawConn) write(fd uintptr) bool {
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

func (c *rawConn) Write(p []byte) (int, error) {
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
