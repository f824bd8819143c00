package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestParseBeacon(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"unclaimed", fmt.Sprintf(`{"v":1,"node_id":%q,"state":"unclaimed"}`, id), true},
		{"member", fmt.Sprintf(`{"v":1,"node_id":%q,"state":"member","cluster_id":"c"}`, id), true},
		{"member without cluster", fmt.Sprintf(`{"v":1,"node_id":%q,"state":"member"}`, id), false},
		{"unclaimed with cluster", fmt.Sprintf(`{"v":1,"node_id":%q,"state":"unclaimed","cluster_id":"c"}`, id), false},
		{"bad version", fmt.Sprintf(`{"v":2,"node_id":%q,"state":"unclaimed"}`, id), false},
		{"short id", `{"v":1,"node_id":"12","state":"unclaimed"}`, false},
		{"junk", `xx`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseBeacon([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("ParseBeacon err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadBeacon) {
				t.Errorf("err %v is not ErrBadBeacon", err)
			}
		})
	}
}

func FuzzParseBeacon(f *testing.F) {
	f.Add(Beacon{NodeID: "0123456789abcdef0123456789abcdef", State: StateUnclaimed}.Marshal())
	f.Add(Beacon{NodeID: "0123456789abcdef0123456789abcdef", State: StateMember, ClusterID: "x", Addrs: []string{"::1"}}.Marshal())
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := ParseBeacon(p)
		if err != nil {
			return
		}
		if _, err := ParseBeacon(b.Marshal()); err != nil {
			t.Fatalf("re-encoded beacon does not parse: %v", err)
		}
	})
}

func TestAnnouncersHearEachOther(t *testing.T) {
	hub := NewHub()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var as []*Announcer
	for i := range 3 {
		id := fmt.Sprintf("%032x", i+1)
		a := New(Config{Conn: hub.Conn(), Interval: 10 * time.Millisecond, Self: func() Beacon {
			return Beacon{NodeID: id, State: StateUnclaimed}
		}})
		as = append(as, a)
		wg.Add(1)
		go func() { defer wg.Done(); a.Run(ctx) }()
	}
	defer func() { cancel(); wg.Wait() }()
	for i, a := range as {
		var n int
		for range 500 {
			if n = len(a.Peers()); n == 2 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if n != 2 {
			t.Errorf("announcer %d hears %d peers, want 2", i, n)
		}
	}
}
