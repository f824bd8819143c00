package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeQEMU is a hand-written QMP server on one end of a pipe. handle gets
// every decoded request and writes whatever it wants through send.
type fakeQEMU struct {
	t    *testing.T
	conn net.Conn
	mu   sync.Mutex
}

type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        string          `json:"id"`
}

func (f *fakeQEMU) send(v any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	f.conn.Write(append(b, '\n'))
}

func (f *fakeQEMU) reply(id string, ret any) { f.send(map[string]any{"return": ret, "id": id}) }

// startFake connects a Client to a fake server; handle runs in the
// server's goroutine for every request after qmp_capabilities.
func startFake(t *testing.T, handle func(f *fakeQEMU, r request)) *Client {
	t.Helper()
	cconn, sconn := net.Pipe()
	f := &fakeQEMU{t: t, conn: sconn}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.send(map[string]any{"QMP": map[string]any{"version": map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 22}, "package": "test"}, "capabilities": []string{"oob"}}})
		sc := bufio.NewScanner(sconn)
		for sc.Scan() {
			var r request
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				f.send(map[string]any{"error": map[string]string{"class": "GenericError", "desc": "JSON parse error"}})
				continue
			}
			if r.Execute == "qmp_capabilities" {
				f.reply(r.ID, map[string]any{})
				continue
			}
			handle(f, r)
		}
	}()
	t.Cleanup(func() { sconn.Close(); wg.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := NewClient(ctx, cconn)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestExecuteReturnsAndErrors(t *testing.T) {
	c := startFake(t, func(f *fakeQEMU, r request) {
		switch r.Execute {
		case "query-status":
			f.reply(r.ID, map[string]any{"status": "running", "running": true})
		case "echo":
			f.send(map[string]any{"return": json.RawMessage(r.Arguments), "id": r.ID})
		default:
			f.send(map[string]any{"error": map[string]string{"class": "CommandNotFound", "desc": "The command " + r.Execute + " has not been found"}, "id": r.ID})
		}
	})
	if got := c.Greeting().Version.QEMU; got.Major != 7 || got.Minor != 2 {
		t.Errorf("greeting version = %+v, want 7.2", got)
	}
	ctx := context.Background()
	var st struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := c.ExecuteInto(ctx, "query-status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != "running" || !st.Running {
		t.Errorf("query-status = %+v", st)
	}
	ret, err := c.Execute(ctx, "echo", map[string]any{"name": "nic0", "up": false})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(`{"name":"nic0","up":false}`, string(ret)); diff != "" {
		t.Errorf("arguments round trip (-want +got):\n%s", diff)
	}
	_, err = c.Execute(ctx, "no-such", nil)
	var qe *Error
	if !errors.As(err, &qe) {
		t.Fatalf("error = %v, want *Error", err)
	}
	want := Error{Command: "no-such", Class: "CommandNotFound", Desc: "The command no-such has not been found"}
	if diff := cmp.Diff(want, *qe); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

// Replies come back in reverse order; each caller still gets its own.
func TestConcurrentCallersMatchedByID(t *testing.T) {
	const n = 16
	var mu sync.Mutex
	var held []request
	c := startFake(t, func(f *fakeQEMU, r request) {
		mu.Lock()
		held = append(held, r)
		if len(held) < n {
			mu.Unlock()
			return
		}
		batch := held
		held = nil
		mu.Unlock()
		for i := len(batch) - 1; i >= 0; i-- {
			f.send(map[string]any{"return": json.RawMessage(batch[i].Arguments), "id": batch[i].ID})
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got struct{ N int }
			if err := c.ExecuteInto(context.Background(), "echo", map[string]int{"N": i}, &got); err != nil {
				errs <- err
				return
			}
			if got.N != i {
				errs <- fmt.Errorf("caller %d got reply for %d", i, got.N)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Thousands of unread events never hold up a reply; the overflow is
// counted and the newest events are kept in order.
func TestEventsNeverBlockReplies(t *testing.T) {
	const sent = MaxQueuedEvents + 500
	c := startFake(t, func(f *fakeQEMU, r request) {
		for i := range sent {
			f.send(map[string]any{"event": "STOP", "data": map[string]int{"n": i}, "timestamp": map[string]int64{"seconds": 1700000000, "microseconds": 5}})
		}
		f.reply(r.ID, map[string]any{})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Execute(ctx, "stop", nil); err != nil {
		t.Fatal(err)
	}
	// The pump may hold one event outside the queue while it waits to
	// deliver it, so up to one extra event survives.
	if d := c.DroppedEvents(); d < sent-MaxQueuedEvents-1 || d > sent-MaxQueuedEvents {
		t.Errorf("dropped = %d, want about %d", d, sent-MaxQueuedEvents)
	}
	var last int
	for i := 0; ; i++ {
		ev := <-c.Events()
		if ev.Name != "STOP" || !ev.Time.Equal(time.Unix(1700000000, 5000)) {
			t.Fatalf("event = %+v", ev)
		}
		var d struct{ N int }
		json.Unmarshal(ev.Data, &d)
		// The first event may be the one the pump held back (event 0).
		if i > 1 && d.N != last+1 {
			t.Fatalf("event %d after %d: out of order", d.N, last)
		}
		last = d.N
		if d.N == sent-1 {
			break
		}
	}
}

func TestHangupFailsPendingAndLaterCommands(t *testing.T) {
	c := startFake(t, func(f *fakeQEMU, r request) {
		f.send(map[string]any{"event": "SHUTDOWN", "data": map[string]any{"guest": true, "reason": "guest-shutdown"}})
		f.conn.Close() // QEMU exits without replying
	})
	_, err := c.Execute(context.Background(), "system_powerdown", nil)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("pending command error = %v, want ErrClosed", err)
	}
	<-c.Done()
	if _, err := c.Execute(context.Background(), "query-status", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("later command error = %v, want ErrClosed", err)
	}
	// Events queued before the hangup are still delivered, then the
	// channel closes.
	var names []string
	for ev := range c.Events() {
		names = append(names, ev.Name)
	}
	if diff := cmp.Diff([]string{"SHUTDOWN"}, names); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestExecuteHonoursContext(t *testing.T) {
	c := startFake(t, func(f *fakeQEMU, r request) {}) // never replies
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Execute(ctx, "query-status", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("Close: %v", err)
	}
	if _, err := c.Execute(context.Background(), "query-status", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

func TestDialWaitsForSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ready := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ready // Dial has started and found nothing
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Error(err)
			return
		}
		defer l.Close()
		conn, err := l.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		conn.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}` + "\n"))
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var r request
			json.Unmarshal(sc.Bytes(), &r)
			fmt.Fprintf(conn, `{"return": {}, "id": %q}`+"\n", r.ID)
		}
	}()
	if _, err := os.Stat(path); err == nil {
		t.Fatal("socket exists before the test creates it")
	}
	close(ready)
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Execute(ctx, "cont", nil); err != nil {
		t.Error(err)
	}
	c.Close()
	wg.Wait()
}

func TestDialGivesUpWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, filepath.Join(t.TempDir(), "absent.sock"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want DeadlineExceeded", err)
	}
}

// Against a real QEMU (no machine): handshake, a query, a QMP error.
func TestRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (make deps installs qemu-system-x86)")
	}
	sock := filepath.Join(t.TempDir(), "q.sock")
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-display", "none", "-qmp", "unix:"+sock+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Greeting().Version.QEMU.Major == 0 {
		t.Errorf("greeting without a version: %+v", c.Greeting())
	}
	var st struct{ Status string }
	if err := c.ExecuteInto(ctx, "query-status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Status == "" {
		t.Error("query-status returned no status")
	}
	_, err = c.Execute(ctx, "no-such-command", nil)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("error = %v, want CommandNotFound", err)
	}
	if _, err := c.Execute(ctx, "quit", nil); err != nil && !errors.Is(err, ErrClosed) {
		t.Errorf("quit: %v", err)
	}
	<-c.Done()
}
