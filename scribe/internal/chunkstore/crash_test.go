package chunkstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The crash test runs a child process (this test binary) that writes a
// deterministic sequence and prints "synced N" after each Sync (every 8
// writes, or after every write: then each overwrite pairs its data with
// the journal's open block, see Store.writeJournaled); the parent
// SIGKILLs it at a random point, reopens the disk, and checks that every
// write acknowledged by a sync reads back, that bytes touched by writes
// after it hold one of the values those writes could have left, and that
// Check passes.

const (
	crashExtents = 4
	crashVSD     = 0x5c
)

type crashWrite struct {
	key  ChunkKey
	off  int64
	data []byte
}

// crashOp returns write number i of the sequence for seed.
func crashOp(seed uint64, i int) crashWrite {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	e := r.IntN(crashExtents)
	off := r.Int64N(DefaultChunkSize - 1)
	n := 1 + r.Int64N(min(DefaultChunkSize-off, 48<<10))
	p := make([]byte, n)
	for j := range p {
		p[j] = byte(r.Uint32())
	}
	return crashWrite{ChunkKey{VSD: ID{crashVSD}, Extent: uint64(e)}, off, p}
}

func TestMain(m *testing.M) {
	if path := os.Getenv("SHOAL_CHUNKSTORE_CRASH_DISK"); path != "" {
		seed, _ := strconv.ParseUint(os.Getenv("SHOAL_CHUNKSTORE_CRASH_SEED"), 10, 64)
		os.Exit(crashChild(path, seed))
	}
	os.Exit(m.Run())
}

func crashChild(path string, seed uint64) int {
	mode, _ := strconv.Atoi(os.Getenv("SHOAL_CHUNKSTORE_CRASH_IO"))
	every, _ := strconv.Atoi(os.Getenv("SHOAL_CHUNKSTORE_CRASH_SYNC_EVERY"))
	dev, err := OpenFile(path, FileOptions{Direct: os.Getenv("SHOAL_CHUNKSTORE_CRASH_DIRECT") == "1", IO: IOMode(mode)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := Open(dev)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		w := crashOp(seed, i)
		if err := s.Write(ctx, w.key, 1, w.off, w.data, false); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if (i+1)%every == 0 {
			if err := s.Sync(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			fmt.Printf("synced %d\n", i+1)
		}
	}
}

func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary; skipped in -short")
	}
	base := seed(t)
	for _, every := range []int{8, 1} {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s, sync every %d", m.name, every), func(t *testing.T) { testCrash(t, base, m.opts, every) })
		}
	}
}

func testCrash(t *testing.T, base uint64, opts FileOptions, every int) {
	path, dev := newDisk(t, 64<<20, opts) // skips where the mode cannot run
	if _, err := Format(dev, FormatOptions{}); err != nil {
		t.Fatal(err)
	}
	dev.Close()
	// model holds the content every byte must have; the disk starts zero.
	model := make([][]byte, crashExtents)
	for i := range model {
		model[i] = make([]byte, DefaultChunkSize)
	}
	r := rand.New(rand.NewPCG(base, 0))
	for round := range 6 {
		rseed := base*100 + uint64(round)
		killAfter := (1 + r.IntN(12)) * 8 / every // sync lines to wait for
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SHOAL_CHUNKSTORE_CRASH_DISK="+path, fmt.Sprintf("SHOAL_CHUNKSTORE_CRASH_SEED=%d", rseed),
			fmt.Sprintf("SHOAL_CHUNKSTORE_CRASH_IO=%d", opts.IO), fmt.Sprintf("SHOAL_CHUNKSTORE_CRASH_SYNC_EVERY=%d", every))
		if opts.Direct {
			cmd.Env = append(cmd.Env, "SHOAL_CHUNKSTORE_CRASH_DIRECT=1")
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		acked := 0
		for lines := 0; sc.Scan(); {
			if n, ok := strings.CutPrefix(sc.Text(), "synced "); ok {
				acked, _ = strconv.Atoi(n)
				lines++
				if lines == killAfter {
					cmd.Process.Signal(syscall.SIGKILL)
				}
			}
		}
		cmd.Wait()
		if acked == 0 {
			t.Fatalf("round %d: child acknowledged nothing; stderr: %s", round, stderr.String())
		}
		// Apply the acknowledged writes, and note which bytes the next
		// writes (issued, maybe persisted, never acknowledged) may hold.
		for i := range acked {
			w := crashOp(rseed, i)
			copy(model[w.key.Extent][w.off:], w.data)
		}
		var pending []crashWrite
		for i := acked; i < acked+every; i++ {
			pending = append(pending, crashOp(rseed, i))
		}
		s := reopen(t, path, opts)
		if err := s.Check(context.Background()); err != nil {
			t.Fatalf("round %d (seed %d): check after kill: %v", round, rseed, err)
		}
		for e := range crashExtents {
			got := make([]byte, DefaultChunkSize)
			if err := s.Read(context.Background(), ChunkKey{VSD: ID{crashVSD}, Extent: uint64(e)}, 0, got); err != nil {
				t.Fatalf("round %d: read extent %d: %v", round, e, err)
			}
			for off := range got {
				if got[off] == model[e][off] {
					continue
				}
				ok := false
				for _, w := range pending {
					if w.key.Extent == uint64(e) && int64(off) >= w.off && int64(off) < w.off+int64(len(w.data)) && w.data[int64(off)-w.off] == got[off] {
						ok = true
						break
					}
				}
				if !ok {
					t.Fatalf("round %d: extent %d byte %d is %#x, acknowledged %#x, and no pending write explains it", round, e, off, got[off], model[e][off])
				}
			}
			model[e] = got // what is on disk is now the truth
		}
		s.Close()
		t.Logf("round %d: killed after %d acknowledged writes", round, acked)
	}
}
