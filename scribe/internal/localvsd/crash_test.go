package localvsd

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
	"github.com/shoal-hci/shoal/scribe/internal/patterncheck"
)

// The server-crash test runs the whole node-local stack (chunk store,
// Volume, NBD server) in a child process, drives it with a Go NBD client
// and the pattern checker, SIGKILLs the server at random points, restarts
// it on the same disk and verifies every flushed or FUA write.

const crashVSDSize = 64 << 20

var crashVSD = chunkstore.ID{0xc5}

func TestMain(m *testing.M) {
	if disk := os.Getenv("SHOAL_LOCALVSD_SERVE_DISK"); disk != "" {
		os.Exit(serveChild(disk, os.Getenv("SHOAL_LOCALVSD_SERVE_SOCK"), os.Getenv("SHOAL_LOCALVSD_DIRECT") == "1"))
	}
	os.Exit(m.Run())
}

func serveChild(disk, sock string, direct bool) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 2 }
	dev, err := chunkstore.OpenFile(disk, chunkstore.FileOptions{Direct: direct})
	if err != nil {
		return fail(err)
	}
	store, err := chunkstore.Open(dev)
	if err != nil {
		return fail(err)
	}
	v, err := New(Config{Store: store, VSD: crashVSD, Size: crashVSDSize, Epoch: 1})
	if err != nil {
		return fail(err)
	}
	srv, err := nbd.New(nbd.Config{})
	if err != nil {
		return fail(err)
	}
	srv.AddExport("v", v, nbd.ExportOptions{})
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fmt.Println("ready")
	if err := srv.Serve(ctx, ln); err != nil {
		return fail(err)
	}
	return 0
}

func TestServerCrashKeepsFlushedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary as an NBD server; skipped in -short")
	}
	seed := uint64(rand.Uint32())
	if s := os.Getenv("SHOAL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (rerun with SHOAL_SEED=%d)", seed, seed)
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) { testServerCrash(t, seed, direct) })
	}
}

func testServerCrash(t *testing.T, seed uint64, direct bool) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 128<<20); err != nil {
		t.Fatal(err)
	}
	fdev, err := chunkstore.OpenFile(disk, chunkstore.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chunkstore.Format(fdev, chunkstore.FormatOptions{}); err != nil {
		t.Fatal(err)
	}
	fdev.Close()
	sockDir, err := os.MkdirTemp("", "crash")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "s.sock")

	start := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SHOAL_LOCALVSD_SERVE_DISK="+disk, "SHOAL_LOCALVSD_SERVE_SOCK="+sock)
		if direct {
			cmd.Env = append(cmd.Env, "SHOAL_LOCALVSD_DIRECT=1")
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("server child: %q, %v", line, err)
		}
		return cmd
	}
	dial := func() *nbd.Client {
		t.Helper()
		c, err := nbd.Dial(context.Background(), "unix", sock, "v")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	chk, err := patterncheck.New(patterncheck.Config{Blocks: crashVSDSize / 4096, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	for round := range 4 {
		cmd := start()
		c := dial()
		if err := chk.Verify(c); err != nil {
			t.Fatalf("round %d: after restart: %v", round, err)
		}
		writes := 200 + r.IntN(600)
		killAt := writes/2 + r.IntN(writes/2)
		killed := make(chan struct{})
		for i := range writes {
			if i == killAt {
				// Kill while the client keeps writing: requests are in
				// flight when the server dies.
				go func() { cmd.Process.Signal(syscall.SIGKILL); close(killed) }()
			}
			// Hot blocks get overwritten; FUA now and then; flush every 16.
			b := r.Int64N(crashVSDSize / 4096)
			if r.IntN(2) == 0 {
				b = r.Int64N(64)
			}
			err := chk.Write(c, b, r.IntN(16) == 0)
			if err == nil && i%16 == 15 {
				err = chk.Flush(c)
			}
			if err != nil {
				if i < killAt {
					t.Fatalf("round %d: write %d before the kill: %v", round, i, err)
				}
				break // the server is gone
			}
		}
		<-killed
		cmd.Wait()
		c.Close()
		t.Logf("round %d: killed the server at write %d, %d blocks acknowledged", round, killAt, chk.Acked())
	}
	cmd := start()
	c := dial()
	if err := chk.Verify(c); err != nil {
		t.Fatalf("final verify: %v", err)
	}
	c.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	dev, err := chunkstore.OpenFile(disk, chunkstore.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := chunkstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(context.Background()); err != nil {
		t.Errorf("check after %d server crashes: %v", 4, err)
	}
}
