package vmcluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// Down finds what a cluster started by the tag in the environment, so it
// works without the state file: check that finding.
func TestTaggedProcesses(t *testing.T) {
	start := func(tag string) *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		cmd.Env = append(os.Environ(), EnvTag+"="+tag)
		if err := cmd.Start(); err != nil {
			t.Skipf("cannot start sleep: %v", err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		// Start returns once the child began its exec; the kernel fills
		// /proc/PID/environ a moment later.
		environ := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "environ")
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if b, err := os.ReadFile(environ); err == nil && len(b) > 0 {
				break
			}
		}
		return cmd
	}
	ours, other := start("a1b2c3"), start("ffffff")
	got := tagged("a1b2c3")
	if !slices.Contains(got, ours.Process.Pid) || slices.Contains(got, other.Process.Pid) {
		t.Errorf("tagged(a1b2c3) = %v: want %d and not %d", got, ours.Process.Pid, other.Process.Pid)
	}
	if all := tagged(""); !slices.Contains(all, ours.Process.Pid) || !slices.Contains(all, other.Process.Pid) {
		t.Errorf("tagged(\"\") = %v: want both %d and %d", all, ours.Process.Pid, other.Process.Pid)
	}
	if a := alive([]int{ours.Process.Pid}); len(a) != 1 {
		t.Errorf("alive = %v, want the running sleep", a)
	}
	ours.Process.Kill()
	ours.Wait()
	if a := alive([]int{ours.Process.Pid}); len(a) != 0 {
		t.Errorf("alive = %v after the process ended, want none", a)
	}
}
