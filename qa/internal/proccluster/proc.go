package proccluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvTag is set to the cluster tag in the environment of every process the
// harness starts; Down finds leftovers by it.
const EnvTag = "SHOAL_QA_CLUSTER"

// procRecord identifies one started process across invocations: the pid
// and its start time (so a reused pid is not mistaken for it).
type procRecord struct {
	Pid   int      `json:"pid"`
	Start uint64   `json:"start"` // field 22 of /proc/PID/stat
	Argv  []string `json:"argv"`
}

// procStat returns the state letter and start time of pid.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return f[0][0], start, err
}

// alive reports whether r's process still runs (a zombie does not).
func (r procRecord) alive() bool {
	st, start, err := procStat(r.Pid)
	return err == nil && start == r.Start && st != 'Z' && st != 'X'
}

// state returns "running", "frozen" or "dead".
func (r procRecord) state() string {
	st, start, err := procStat(r.Pid)
	switch {
	case err != nil || start != r.Start || st == 'Z' || st == 'X':
		return "dead"
	case st == 'T':
		return "frozen"
	}
	return "running"
}

func (r procRecord) signal(sig syscall.Signal) error {
	if !r.alive() {
		return nil
	}
	if err := syscall.Kill(r.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, r.Pid, err)
	}
	return nil
}

func writeRecord(path string, r procRecord) error {
	b, _ := json.Marshal(r)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func readRecord(path string) (procRecord, error) {
	var r procRecord
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// start starts cmd in its own session and returns its record and a channel
// closed when it exits. The Cluster's reapers own the waiting goroutine.
func (c *Cluster) start(cmd *exec.Cmd) (procRecord, <-chan struct{}, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return procRecord{}, nil, fmt.Errorf("start %s: %w", strings.Join(cmd.Args, " "), err)
	}
	r := procRecord{Pid: cmd.Process.Pid, Argv: cmd.Args}
	_, r.Start, _ = procStat(r.Pid)
	exited := make(chan struct{})
	c.reapers.Add(1)
	go func() {
		defer c.reapers.Done()
		cmd.Wait()
		close(exited)
	}()
	return r, exited, nil
}

// waitGone waits until none of pids is alive or timeout passes, and
// returns those still alive.
func waitGone(ctx context.Context, recs []procRecord, timeout time.Duration) []procRecord {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var left []procRecord
		for _, r := range recs {
			if r.alive() {
				left = append(left, r)
			}
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return left
		case <-deadline.C:
			return left
		case <-tick.C:
		}
	}
}

// stopAll sends SIGCONT and SIGTERM to recs, waits up to grace, then
// SIGKILLs what is left and waits for it.
func stopAll(ctx context.Context, recs []procRecord, grace time.Duration) error {
	for _, r := range recs {
		r.signal(syscall.SIGCONT)
		r.signal(syscall.SIGTERM)
	}
	left := waitGone(ctx, recs, grace)
	for _, r := range left {
		r.signal(syscall.SIGKILL)
	}
	if left = waitGone(ctx, left, 10*time.Second); len(left) > 0 {
		return fmt.Errorf("processes survive SIGKILL: %v", left)
	}
	return nil
}

// taggedProcs scans /proc for processes whose environment has EnvTag=tag
// (any tag if tag is ""), skipping this process.
func taggedProcs(tag string) []procRecord {
	ents, _ := os.ReadDir("/proc")
	var recs []procRecord
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			v, ok := bytes.CutPrefix(kv, []byte(EnvTag+"="))
			if ok && (tag == "" || string(v) == tag) {
				if st, start, err := procStat(pid); err == nil && st != 'Z' {
					recs = append(recs, procRecord{Pid: pid, Start: start})
				}
				break
			}
		}
	}
	return recs
}
