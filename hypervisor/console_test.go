package hypervisor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/consoletest"
)

const testVMID = "0123456789abcdef0123456789abcdef"

// fakeSerial plays QEMU's serial chardev for the VM testVMID below a new
// runtime dir (see consoletest.Serial) and returns the runtime dir.
func fakeSerial(t *testing.T) string {
	t.Helper()
	rt, err := os.MkdirTemp("", "shc") // short: the socket path must fit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	consoletest.Serial(t, rt, testVMID, "old line 1\nold line 2\n")
	return rt
}

// readUntil reads r until it has seen want, or fails after 10 s.
func readUntil(t *testing.T, c net.Conn, want string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var got []byte
	b := make([]byte, 256)
	for !bytes.Contains(got, []byte(want)) {
		n, err := c.Read(b)
		got = append(got, b[:n]...)
		if err != nil {
			t.Fatalf("read %q so far, want %q: %v", got, want, err)
		}
	}
	return string(got)
}

func TestAttachConsoleLocal(t *testing.T) {
	rt := fakeSerial(t)
	c, err := AttachConsole(rt, testVMID, "pid 42 on this node")
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, "login: ")
	c.Write([]byte("root\n"))
	readUntil(t, c, "ROOT\n")

	_, err = AttachConsole(rt, testVMID, "someone else")
	if !errors.Is(err, ErrConsoleBusy) || !strings.Contains(err.Error(), "pid 42 on this node") {
		t.Fatalf("second attach: %v, want ErrConsoleBusy naming the holder", err)
	}
	c.Close()
	c2, err := AttachConsole(rt, testVMID, "pid 43")
	if err != nil {
		t.Fatalf("attach after detach: %v", err)
	}
	readUntil(t, c2, "login: ")
	c2.Close()

	for _, id := range []string{strings.Repeat("f", 32), "../../etc"} {
		if _, err := AttachConsole(rt, id, "x"); !errors.Is(err, ErrNotRunningHere) && !errors.Is(err, ErrBadConsoleRequest) {
			t.Errorf("attach %q: %v, want ErrNotRunningHere or ErrBadConsoleRequest", id, err)
		}
	}
	if got := string(ConsoleHistory(rt, testVMID, 11)); got != "old line 2\n" {
		t.Errorf("ConsoleHistory(11) = %q, want the last 11 bytes", got)
	}
}

// The console protocol over a loopback connection (the daemon wraps it
// in mutual TLS): history then live, busy and not-running errors, bad
// requests.
func TestConsoleProtocol(t *testing.T) {
	rt := fakeSerial(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveConsole(ctx, c, rt, "node-b", "node-a")
		}
	}()
	defer func() { ln.Close(); <-served }()
	dial := func(want string, req ConsoleRequest) (net.Conn, error) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		cc, err := consoleHandshake(c, want, req)
		if err != nil {
			c.Close()
		}
		return cc, err
	}

	c, err := dial("node-b", ConsoleRequest{VM: "web1", ID: testVMID, History: 1024})
	if err != nil {
		t.Fatal(err)
	}
	got := readUntil(t, c, "login: ")
	if !strings.HasPrefix(got, "old line 1\nold line 2\n") {
		t.Errorf("stream starts %q, want the console log's history first", got)
	}
	c.Write([]byte("echo hi\n"))
	readUntil(t, c, "ECHO HI\n")

	_, err = dial("", ConsoleRequest{VM: "web1", ID: testVMID})
	if !errors.Is(err, ErrConsoleBusy) || !strings.Contains(err.Error(), "in use by `shoal vm console` on node node-a") {
		t.Errorf("second client: %v, want ErrConsoleBusy naming node-a", err)
	}
	c.Close()
	// Detaching frees it (the server notices the close and lets go).
	dialFree := func(want string, req ConsoleRequest) (c net.Conn, err error) {
		for range 100 {
			if c, err = dial(want, req); !errors.Is(err, ErrConsoleBusy) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		return c, err
	}
	c2, err := dialFree("node-b", ConsoleRequest{VM: "web1", ID: testVMID})
	if err != nil {
		t.Fatalf("attach after detach: %v", err)
	}
	readUntil(t, c2, "login: ")
	c2.Close()

	if _, err := dial("", ConsoleRequest{VM: "db1", ID: strings.Repeat("e", 32)}); !errors.Is(err, ErrNotRunningHere) || !strings.Contains(err.Error(), "vm db1") {
		t.Errorf("VM not here: %v, want ErrNotRunningHere", err)
	}
	if _, err := dialFree("node-c", ConsoleRequest{VM: "web1", ID: testVMID}); err == nil || !strings.Contains(err.Error(), "not node-c") {
		t.Errorf("wrong node answering: %v, want an error", err)
	}
	// A raw bad request line gets a bad-request reply.
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte(`{"vm":"web1","id":"../x"}` + "\n"))
	b, _ := io.ReadAll(raw)
	if !strings.Contains(string(b), `"code":"bad-request"`) {
		t.Errorf("bad request answered %q", b)
	}
}

func FuzzDecodeConsoleRequest(f *testing.F) {
	for _, s := range []string{
		`{"vm":"web1","id":"0123456789abcdef0123456789abcdef","history":4096}`,
		`{"vm":"web1","id":"0123456789abcdef0123456789abcdef"}`,
		`{"vm":"web1","id":"../../etc/passwd"}`,
		`{"vm":"web1","id":"0123456789abcdef0123456789abcdef","history":-1}`,
		`{"vm":"web1","id":"0123456789abcdef0123456789abcdef"} {}`,
		`{"vm":"web1","id":"0123456789abcdef0123456789abcdef","extra":1}`,
		`not json`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := DecodeConsoleRequest(line)
		if err != nil {
			if !errors.Is(err, ErrBadConsoleRequest) {
				t.Fatalf("error %v does not wrap ErrBadConsoleRequest", err)
			}
			return
		}
		if !vmIDPattern.MatchString(r.ID) || strings.Contains(r.ID, "/") || r.History < 0 || r.History > MaxConsoleHistory {
			t.Fatalf("accepted a bad request %+v", r)
		}
	})
}
