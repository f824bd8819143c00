package hlc

import (
	"errors"
	"sync"
	"testing"
	"time"
)

type fakeTime struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeTime) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeTime) add(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestNowMonotonic(t *testing.T) {
	ft := &fakeTime{t: epoch}
	c := NewClock(ft.now, 0)
	prev := c.Now()
	for i := range 1000 {
		if i%7 == 0 {
			ft.add(-3 * time.Millisecond) // physical clock steps back
		}
		if i%11 == 0 {
			ft.add(5 * time.Millisecond)
		}
		ts := c.Now()
		if ts.Compare(prev) <= 0 {
			t.Fatalf("step %d: %v not after %v", i, ts, prev)
		}
		prev = ts
	}
}

func TestLogicalOverflow(t *testing.T) {
	ft := &fakeTime{t: epoch}
	c := NewClock(ft.now, 0)
	c.Observe(Timestamp{Wall: epoch.UnixMilli(), Logical: ^uint32(0)})
	got := c.Now()
	want := Timestamp{Wall: epoch.UnixMilli() + 1}
	if got != want {
		t.Fatalf("Now after max logical = %v, want %v", got, want)
	}
}

func TestUpdateOffsetBound(t *testing.T) {
	ft := &fakeTime{t: epoch}
	c := NewClock(ft.now, 500*time.Millisecond)
	base := epoch.UnixMilli()
	tests := []struct {
		name    string
		remote  Timestamp
		wantErr bool
	}{
		{"past", Timestamp{Wall: base - 10_000}, false},
		{"now", Timestamp{Wall: base, Logical: 3}, false},
		{"within bound", Timestamp{Wall: base + 500}, false},
		{"beyond bound", Timestamp{Wall: base + 501}, true},
		{"far ahead", Timestamp{Wall: base + int64(time.Hour/time.Millisecond)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := c.Now()
			err := c.Update(tt.remote)
			if got := errors.Is(err, ErrClockOffset); got != tt.wantErr {
				t.Fatalf("Update(%v) = %v, want offset error %v", tt.remote, err, tt.wantErr)
			}
			next := c.Now()
			if !tt.wantErr && next.Compare(tt.remote) <= 0 {
				t.Errorf("Now after Update(%v) = %v, not above it", tt.remote, next)
			}
			if tt.wantErr && next.Wall != before.Wall {
				t.Errorf("refused timestamp moved the clock: %v -> %v", before, next)
			}
		})
	}
}

// A node with a clock far ahead does not win forever: its timestamps are
// refused, and one just inside the bound is overtaken once real time
// passes the bound.
func TestFastClockDoesNotWinForever(t *testing.T) {
	slow := &fakeTime{t: epoch}
	fast := &fakeTime{t: epoch.Add(10 * time.Second)}
	cs, cf := NewClock(slow.now, 0), NewClock(fast.now, 0)
	if err := cs.Update(cf.Now()); !errors.Is(err, ErrClockOffset) {
		t.Fatalf("10 s ahead: Update = %v, want ErrClockOffset", err)
	}
	// A clock 400 ms ahead is within the bound and accepted.
	near := &fakeTime{t: epoch.Add(400 * time.Millisecond)}
	cn := NewClock(near.now, 0)
	ahead := cn.Now()
	if err := cs.Update(ahead); err != nil {
		t.Fatalf("400 ms ahead: Update = %v", err)
	}
	slow.add(time.Second)
	// The slow node's next local write is above the fast node's older one.
	if got := cs.Now(); got.Compare(ahead) <= 0 {
		t.Fatalf("slow node's later write %v does not beat %v", got, ahead)
	}
}

func TestEncodingOrderAndRoundTrip(t *testing.T) {
	ts := []Timestamp{{}, {Wall: 1}, {Wall: 1, Logical: 1}, {Wall: 1 << 40, Logical: 7}, {Wall: 1<<62 + 5, Logical: 1 << 31}}
	var prev []byte
	for i, x := range ts {
		b, _ := x.AppendBinary(nil)
		if len(b) != EncodedLen {
			t.Fatalf("len = %d", len(b))
		}
		got, err := Decode(b)
		if err != nil || got != x {
			t.Fatalf("Decode(Encode(%v)) = %v, %v", x, got, err)
		}
		if i > 0 && string(prev) >= string(b) {
			t.Errorf("byte order of %v not after %v", x, ts[i-1])
		}
		prev = b
	}
	if _, err := Decode(make([]byte, 5)); !errors.Is(err, ErrBadTimestamp) {
		t.Errorf("short Decode err = %v", err)
	}
	bad := []byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := Decode(bad); !errors.Is(err, ErrBadTimestamp) {
		t.Errorf("negative wall Decode err = %v", err)
	}
}

func TestConcurrentNow(t *testing.T) {
	c := NewClock(nil, 0)
	var wg sync.WaitGroup
	seen := make([][]Timestamp, 4)
	for g := range seen {
		wg.Go(func() {
			for range 1000 {
				seen[g] = append(seen[g], c.Now())
			}
		})
	}
	wg.Wait()
	all := map[Timestamp]bool{}
	for _, s := range seen {
		for _, x := range s {
			if all[x] {
				t.Fatalf("timestamp %v issued twice", x)
			}
			all[x] = true
		}
	}
}
