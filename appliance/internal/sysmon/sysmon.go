package sysmon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrUnsupported is returned by Relax on systems without
// /proc/TID/timerslack_ns.
var ErrUnsupported = errors.New("sysmon timer slack: only on Linux")

// DefaultSlack is the slack Relax is meant to be called with: sysmon
// ticks at most about every half millisecond while the process is busy.
const DefaultSlack = 500 * time.Microsecond

// find returns the thread ID of sysmon in process pid, reading proc (the
// /proc file system): the thread other than pid with the earliest start
// time, then the lowest ID.
func find(proc string, pid int) (int, error) {
	dir := filepath.Join(proc, strconv.Itoa(pid), "task")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("find sysmon thread: %w", err)
	}
	best, bestStart := 0, uint64(0)
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil || tid == pid {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		start, err := startTime(string(b))
		if err != nil {
			return 0, fmt.Errorf("find sysmon thread: task %d: %w", tid, err)
		}
		if best == 0 || start < bestStart || start == bestStart && tid < best {
			best, bestStart = tid, start
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("find sysmon thread: process %d has no thread but its main one", pid)
	}
	return best, nil
}

// startTime parses field 22 (starttime, in clock ticks since boot) of a
// /proc/PID/task/TID/stat line. The command name (field 2) is in
// parentheses and may hold spaces or parentheses itself, so fields are
// counted after the last ')'.
func startTime(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat line %q has no command name", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("stat line %q has %d fields after the name, want at least 20", stat, len(f))
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat start time %q: %w", f[19], err)
	}
	return v, nil
}

// setSlack writes slack to the timer slack of thread tid.
func setSlack(proc string, tid int, slack time.Duration) error {
	path := filepath.Join(proc, strconv.Itoa(tid), "timerslack_ns")
	if err := os.WriteFile(path, []byte(strconv.FormatInt(slack.Nanoseconds(), 10)), 0); err != nil {
		return fmt.Errorf("set timer slack of sysmon thread %d: %w", tid, err)
	}
	return nil
}
