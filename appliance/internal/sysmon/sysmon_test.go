package sysmon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeProc writes a /proc with process pid and threads tid → start time
// (a negative start writes a malformed stat line).
func fakeProc(t *testing.T, pid int, threads map[int]int) string {
	t.Helper()
	proc := t.TempDir()
	for tid, start := range threads {
		dir := filepath.Join(proc, strconv.Itoa(pid), "task", strconv.Itoa(tid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// A name with a space and a parenthesis, as comm may have.
		line := fmt.Sprintf("%d (shoal (x) y) S 1 %d %d 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 9 0 %d 1000 10 18446744073709551615\n", tid, pid, pid, start)
		if start < 0 {
			line = fmt.Sprintf("%d (shoal) S 1 2 3\n", tid)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return proc
}

func TestFind(t *testing.T) {
	for _, tc := range []struct {
		name    string
		threads map[int]int
		want    int
		wantErr string
	}{
		{"oldest after main", map[int]int{100: 5, 101: 5, 102: 5, 140: 9}, 101, ""},
		{"start time beats ID", map[int]int{100: 5, 90: 7, 130: 6}, 130, ""},
		{"same tick: lowest ID", map[int]int{100: 5, 120: 6, 110: 6}, 110, ""},
		{"main thread only", map[int]int{100: 5}, 0, "no thread but its main one"},
		{"malformed stat", map[int]int{100: 5, 101: -1}, 0, "fields after the name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := find(fakeProc(t, 100, tc.threads), 100)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("find = %d, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("find = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestSetSlack(t *testing.T) {
	proc := t.TempDir()
	if err := os.Mkdir(filepath.Join(proc, "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(proc, "7", "timerslack_ns")
	if err := os.WriteFile(path, []byte("50000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := setSlack(proc, 7, 500*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "500000" {
		t.Fatalf("slack file holds %q, want 500000", b)
	}
	if err := setSlack(proc, 8, time.Millisecond); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("slack of a missing thread: %v, want ErrNotExist", err)
	}
}
