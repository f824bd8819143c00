package qemu

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// watchPoll is how long one poll of the pidfd may block before the
// watcher checks whether it should stop.
const watchPollMillis = 250

// startProcess starts QEMU in its own session with stdin from /dev/null
// and stdout/stderr appended to logPath. It returns the pid; the caller
// reaps it through a watcher.
func startProcess(bin string, args []string, dir, logPath string) (int, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open qemu log: %w", err)
	}
	defer logf.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	p, err := os.StartProcess(bin, append([]string{bin}, args...), &os.ProcAttr{
		Dir:   dir,
		Files: []*os.File{null, logf, logf},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", bin, err)
	}
	pid := p.Pid
	p.Release() // reaped by the watcher with wait4
	return pid, nil
}

// isQEMUFor reports whether pid is alive and is the QEMU whose QMP
// socket is qmpPath (guards against a recycled pid).
func isQEMUFor(pid int, qmpPath string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return strings.Contains(string(b), "path="+opt(qmpPath)+",")
}

// watcher closes exited when the process ends, reaping it if it is our
// child. It works for processes started by an earlier daemon too.
type watcher struct {
	exited chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

func watchProcess(pid int) (*watcher, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("pid %d: %w", pid, ErrNotRunning)
		}
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	w := &watcher{exited: make(chan struct{}), stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer unix.Close(fd)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, watchPollMillis)
			if err != nil && !errors.Is(err, unix.EINTR) {
				continue
			}
			if n > 0 {
				var ws unix.WaitStatus
				unix.Wait4(pid, &ws, unix.WNOHANG, nil) // ECHILD if not ours
				close(w.exited)
				return
			}
		}
	}()
	return w, nil
}

func (w *watcher) close() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}

func kill(pid int) error { return unix.Kill(pid, unix.SIGKILL) }
