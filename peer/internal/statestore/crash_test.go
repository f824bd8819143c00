package statestore

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
)

const crashEnv = "SHOAL_STATESTORE_CRASH_DIR"

// TestCrashChild is the child of TestCrashKill9: it writes records with
// fsync on and prints each key once Write has returned.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("child process of TestCrashKill9 only")
	}
	round := os.Getenv(crashEnv + "_ROUND")
	s, err := Open(Config{Path: filepath.Join(dir, "crash.db"), NodeID: "crash"})
	if err != nil {
		fmt.Println("open error:", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		key := fmt.Sprintf("vm/r%s-%d", round, i)
		ops := []crdt.Op{set("v", key), {Field: "n", Incr: true, Delta: 1}, {Field: "s", Add: true, Elem: key}}
		if _, err := s.Write(key, ops...); err != nil {
			fmt.Println("write error:", err)
			os.Exit(1)
		}
		if i%7 == 3 {
			fmt.Printf("deleting vm/r%s-%d\n", round, i-1)
			if _, err := s.Delete(fmt.Sprintf("vm/r%s-%d", round, i-1)); err != nil {
				fmt.Println("delete error:", err)
				os.Exit(1)
			}
			fmt.Printf("deleted vm/r%s-%d\n", round, i-1)
		}
		fmt.Printf("ack %s\n", key)
	}
}

// TestCrashKill9 kills a writing child with SIGKILL at random moments,
// several rounds on the same file; after each, the store passes Check and
// holds every write the child had acknowledged.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 3))
	dir := t.TempDir()
	acked := map[string]bool{} // key → live
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, fmt.Sprintf("%s_ROUND=%d", crashEnv, round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		kill := time.After(time.Duration(50+r.IntN(400)) * time.Millisecond)
		killed := false
		for !killed {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: child exited early", round)
				}
				handleCrashLine(t, l, acked)
			case <-kill:
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		for l := range lines {
			handleCrashLine(t, l, acked)
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("round %d: child wait: %v", round, err)
		}
		s, err := Open(Config{Path: filepath.Join(dir, "crash.db"), NodeID: "crash"})
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		if err := s.Check(); err != nil {
			t.Errorf("round %d: Check after kill -9: %v", round, err)
		}
		missing := 0
		for k, live := range acked {
			rec, err := s.Get(k)
			switch {
			case live && (err != nil || string(rec.Value("v")) != k):
				missing++
				t.Errorf("round %d: acknowledged %s missing: %v", round, k, err)
			case !live && err == nil:
				t.Errorf("round %d: acknowledged delete of %s lost", round, k)
			}
		}
		s.Close()
		t.Logf("round %d: %d acknowledged keys verified", round, len(acked))
	}
	if len(acked) == 0 {
		t.Fatal("the child acknowledged nothing")
	}
}

func handleCrashLine(t *testing.T, l string, acked map[string]bool) {
	switch {
	case strings.HasPrefix(l, "ack "):
		acked[strings.TrimPrefix(l, "ack ")] = true
	case strings.HasPrefix(l, "deleting "):
		// not acknowledged yet: the delete may or may not be durable
		delete(acked, strings.TrimPrefix(l, "deleting "))
	case strings.HasPrefix(l, "deleted "):
		acked[strings.TrimPrefix(l, "deleted ")] = false
	case strings.Contains(l, "error"):
		t.Errorf("child: %s", l)
	}
}
