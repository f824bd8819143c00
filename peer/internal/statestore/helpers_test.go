package statestore

import (
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/hlc"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomised tests (0: from SHOAL_SEED or random)")

func testSeed(t testing.TB) uint64 {
	t.Helper()
	s := *seedFlag
	if s == 0 {
		if e := os.Getenv("SHOAL_SEED"); e != "" {
			s, _ = strconv.ParseUint(e, 10, 64)
		}
	}
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d (replay with -seed=%d or SHOAL_SEED=%d)", s, s, s)
	return s
}

// fakeTime is a settable clock shared by the stores of a test.
type fakeTime struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeTime() *fakeTime { return &fakeTime{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)} }

func (f *fakeTime) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }

func (f *fakeTime) Add(d time.Duration) { f.mu.Lock(); defer f.mu.Unlock(); f.t = f.t.Add(d) }

// openTest opens a store in dir with NoSync and runs Check at cleanup.
func openTest(t testing.TB, dir, node string, ft *fakeTime, mod func(*Config)) *Store {
	t.Helper()
	cfg := Config{Path: filepath.Join(dir, node+".db"), NodeID: node, NoSync: true, Logger: slog.New(slog.DiscardHandler)}
	if ft != nil {
		cfg.Now = ft.Now
		cfg.Clock = hlc.NewClock(ft.Now, 0)
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil {
			t.Errorf("Check %s: %v", node, err)
		}
		s.Close()
	})
	return s
}

func mustWrite(t testing.TB, s *Store, key string, ops ...crdt.Op) *crdt.Change {
	t.Helper()
	c, err := s.Write(key, ops...)
	if err != nil {
		t.Fatalf("write %s: %v", key, err)
	}
	return c
}

func set(f, v string) crdt.Op { return crdt.Op{Field: f, Set: true, Value: []byte(v)} }

// sync1 brings dst up to date with src the way the replicator does: log
// entries when src has them, else a chunked snapshot. It acknowledges both
// ways. maxBytes bounds each message.
func sync1(t testing.TB, dst, src *Store, maxBytes int) {
	t.Helper()
	for range 10000 {
		vv, err := dst.VV()
		if err != nil {
			t.Fatal(err)
		}
		src.Ack(dst.NodeID(), dst.Origin(), vv)
		ch, err := src.ChangesSince(vv, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Snapshot {
			transferSnapshot(t, dst, src, maxBytes)
			continue
		}
		if _, err := dst.Apply(ch.Changes); err != nil {
			t.Fatal(err)
		}
		if !ch.More {
			svv, _ := src.VV()
			dst.Ack(src.NodeID(), src.Origin(), svv)
			return
		}
	}
	t.Fatal("sync did not finish")
}

func transferSnapshot(t testing.TB, dst, src *Store, maxBytes int) {
	t.Helper()
	after := ""
	for {
		sn, err := src.Snapshot(after, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		// exercise the wire format on the way
		sn, err = crdt.DecodeSnapshot(crdt.EncodeSnapshot(sn))
		if err != nil {
			t.Fatal(err)
		}
		if err := dst.ImportSnapshot(sn); err != nil {
			t.Fatal(err)
		}
		if !sn.More {
			return
		}
		after = sn.Entries[len(sn.Entries)-1].Key
	}
}

func digest(t testing.TB, s *Store) string {
	t.Helper()
	d, err := s.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", d[:8])
}
