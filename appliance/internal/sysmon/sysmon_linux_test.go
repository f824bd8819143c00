package sysmon

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func slackOf(t *testing.T, tid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/timerslack_ns")
	if err != nil {
		t.Skipf("no timerslack_ns here: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// TestRelax sets this test process's sysmon slack and checks that it
// changed only on the thread found, which is not the main thread.
func TestRelax(t *testing.T) {
	before := slackOf(t, os.Getpid())
	tid, err := Relax(time.Millisecond)
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("setting another thread's timer slack needs CAP_SYS_NICE: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := setSlack("/proc", tid, 50*time.Microsecond); err != nil {
			t.Error(err)
		}
	})
	if tid == os.Getpid() {
		t.Fatalf("Relax picked the main thread %d", tid)
	}
	if got := slackOf(t, tid); got != "1000000" {
		t.Fatalf("thread %d slack %s, want 1000000", tid, got)
	}
	if got := slackOf(t, os.Getpid()); got != before {
		t.Fatalf("main thread slack changed %s → %s", before, got)
	}
	if _, err := Relax(0); err == nil {
		t.Fatal("Relax(0) succeeded")
	}
}
