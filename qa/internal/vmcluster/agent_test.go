package vmcluster

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeAgent is a hand-written qemu-ga: guest-sync, guest-exec (echoes its
// arguments after `polls` status calls) and guest-exec-status. It first
// writes a stale reply, as an interrupted earlier client would leave.
type fakeAgent struct {
	polls int
	// out, if set, makes the command's stdout and exit code (else the
	// command line is echoed with exit code 3).
	out  func(argv []string) (string, int)
	mu   sync.Mutex
	seen []string
}

func (f *fakeAgent) serve(t *testing.T, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.Write([]byte(`{"return": {"pid": 9999, "exited": true}}` + "\n"))
			r := bufio.NewReader(c)
			enc := json.NewEncoder(c)
			var argv []string
			left := 0
			for {
				line, err := r.ReadBytes('\n')
				if err != nil {
					return
				}
				var req struct {
					Execute   string          `json:"execute"`
					Arguments json.RawMessage `json:"arguments"`
				}
				if err := json.Unmarshal(line, &req); err != nil {
					t.Errorf("agent got %q: %v", line, err)
					return
				}
				f.mu.Lock()
				f.seen = append(f.seen, req.Execute)
				f.mu.Unlock()
				switch req.Execute {
				case "guest-sync":
					var a struct{ ID int64 }
					json.Unmarshal(req.Arguments, &a)
					enc.Encode(map[string]any{"return": a.ID})
				case "guest-exec":
					var a struct {
						Path string   `json:"path"`
						Arg  []string `json:"arg"`
					}
					json.Unmarshal(req.Arguments, &a)
					if a.Path == "/usr/bin/missing" {
						enc.Encode(map[string]any{"error": map[string]string{"class": "GenericError", "desc": "Guest agent command failed"}})
						continue
					}
					argv, left = append([]string{a.Path}, a.Arg...), f.polls
					enc.Encode(map[string]any{"return": map[string]int{"pid": 42}})
				case "guest-exec-status":
					if left > 0 {
						left--
						enc.Encode(map[string]any{"return": map[string]any{"exited": false}})
						continue
					}
					stdout, code := strings.Join(argv, " "), 3
					if f.out != nil {
						stdout, code = f.out(argv)
					}
					enc.Encode(map[string]any{"return": map[string]any{"exited": true, "exitcode": code,
						"out-data": base64.StdEncoding.EncodeToString([]byte(stdout)),
						"err-data": base64.StdEncoding.EncodeToString([]byte("warn"))}})
				}
			}
		}()
	}
}

// startAgent serves f on sock until the test ends.
func startAgent(t *testing.T, sock string, f *fakeAgent) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); f.serve(t, ln) }()
	t.Cleanup(func() { ln.Close(); <-done })
}

func TestAgentExec(t *testing.T) {
	sock := filepath.Join(t.TempDir(), fAgent)
	f := &fakeAgent{polls: 2}
	startAgent(t, sock, f)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := dialAgent(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	res, err := a.exec(ctx, []string{"/usr/bin/shoal", "status", "--json"})
	if err != nil {
		t.Fatal(err)
	}
	want := ExecResult{ExitCode: 3, Stdout: []byte("/usr/bin/shoal status --json"), Stderr: []byte("warn")}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("exec result (-want +got)\n%s", diff)
	}
	f.mu.Lock()
	seen := f.seen
	f.mu.Unlock()
	if diff := cmp.Diff([]string{"guest-sync", "guest-exec", "guest-exec-status", "guest-exec-status", "guest-exec-status"}, seen); diff != "" {
		t.Errorf("agent commands (-want +got)\n%s", diff)
	}
	if _, err := a.exec(ctx, []string{"/usr/bin/missing"}); err == nil || !strings.Contains(err.Error(), "GenericError") {
		t.Errorf("exec of a missing program: %v, want the agent's error", err)
	}
}

func TestAgentNotUp(t *testing.T) {
	// QEMU accepts on the socket while the guest has not opened its end:
	// nothing ever answers.
	defer func(d time.Duration) { agentSyncTimeout = d }(agentSyncTimeout)
	agentSyncTimeout = 100 * time.Millisecond
	sock := filepath.Join(t.TempDir(), fAgent)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c // held open, silent, until the test ends
		}
	}()
	defer func() {
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := dialAgent(ctx, sock); err != errAgentNotUp {
		t.Errorf("dialAgent to a silent agent: %v, want errAgentNotUp", err)
	}
}
