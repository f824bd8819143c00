package statestore

import (
	"errors"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
)

func hasTomb(t *testing.T, s *Store, key string) bool {
	t.Helper()
	es, err := s.Dump()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Key == key {
			return e.Record.Del != nil
		}
	}
	return false
}

func threeNodes(t *testing.T, horizon time.Duration) (*fakeTime, []*Store) {
	ft := newFakeTime()
	dir := t.TempDir()
	var ss []*Store
	for _, id := range []string{"a", "b", "c"} {
		ss = append(ss, openTest(t, dir, id, ft, func(c *Config) { c.RejoinHorizon = horizon }))
	}
	for _, s := range ss {
		if err := s.SetMembers([]string{"a", "b", "c"}); err != nil {
			t.Fatal(err)
		}
	}
	return ft, ss
}

func TestTombstoneNotCollectedUntilEveryMemberAcked(t *testing.T) {
	_, ss := threeNodes(t, time.Hour)
	a, b, c := ss[0], ss[1], ss[2]
	mustWrite(t, a, "vm/x", set("name", "x"))
	sync1(t, b, a, 1<<20)
	sync1(t, c, a, 1<<20)
	mustWrite(t, a, "vm/x", crdt.Op{Delete: true})
	sync1(t, b, a, 1<<20) // b has the delete and acked it; c has not
	if st, err := a.CollectGarbage(); err != nil || st.Collected != 0 {
		t.Fatalf("collected with c not acknowledging: %+v, %v", st, err)
	}
	if !hasTomb(t, a, "vm/x") {
		t.Fatal("tombstone gone before c acknowledged")
	}
	sync1(t, c, a, 1<<20)
	sync1(t, a, c, 1<<20) // a pulls from c and so learns what c has applied
	sync1(t, a, b, 1<<20)
	st, err := a.CollectGarbage()
	if err != nil || st.Collected != 1 {
		t.Fatalf("collection after every ack: %+v, %v", st, err)
	}
	if es, _ := a.Dump(); len(es) != 0 {
		t.Errorf("record left after collection: %+v", es)
	}
}

func TestRejoinHorizonForcesResync(t *testing.T) {
	ft, ss := threeNodes(t, time.Hour)
	a, b, c := ss[0], ss[1], ss[2]
	mustWrite(t, a, "vm/x", set("name", "x"))
	mustWrite(t, a, "vm/keep", set("name", "k"))
	for _, s := range []*Store{b, c} {
		sync1(t, s, a, 1<<20)
		sync1(t, a, s, 1<<20)
	}
	// c goes away; a deletes vm/x; c, offline, writes to vm/x
	mustWrite(t, a, "vm/x", crdt.Op{Delete: true})
	sync1(t, b, a, 1<<20)
	ft.Add(10 * time.Second)
	mustWrite(t, c, "vm/x", set("owner", "c"))
	if st, _ := a.CollectGarbage(); st.Collected != 0 {
		t.Fatal("collected while c holds collection back")
	}
	ft.Add(2 * time.Hour)
	sync1(t, b, a, 1<<20) // b stays in touch
	st, err := a.CollectGarbage()
	if err != nil || len(st.Expelled) != 1 || st.Expelled[0] != "c" || st.Collected != 1 {
		t.Fatalf("collection past the horizon: %+v, %v", st, err)
	}
	// c comes back: its old origin must resync, its acks are ignored
	if must, _ := a.MustResync("c", c.Origin()); !must {
		t.Fatal("c not marked for resync")
	}
	old := c.Origin()
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if c.Origin() == old {
		t.Fatal("reset kept the old origin")
	}
	if need, _ := c.NeedsReset(); !need {
		t.Fatal("NeedsReset false before the snapshot arrived")
	}
	transferSnapshot(t, c, a, 100)
	if need, _ := c.NeedsReset(); need {
		t.Fatal("NeedsReset true after the snapshot")
	}
	if _, err := c.Get("vm/x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted record came back on c: %v", err)
	}
	vv, _ := c.VV()
	if err := a.Ack("c", c.Origin(), vv); err != nil {
		t.Fatal(err)
	}
	if must, _ := a.MustResync("c", c.Origin()); must {
		t.Error("resync mark kept after c came back under a new origin")
	}
	mustWrite(t, c, "vm/new", set("by", "c"))
	for range 2 {
		for _, p := range [][2]*Store{{a, c}, {b, a}, {c, b}, {a, b}} {
			sync1(t, p[0], p[1], 1<<20)
		}
	}
	if digest(t, a) != digest(t, c) || digest(t, a) != digest(t, b) {
		t.Error("not converged after c's resync")
	}
	for _, s := range ss {
		if _, err := s.Get("vm/x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: deleted vm/x came back: %v", s.NodeID(), err)
		}
		if _, err := s.Get("vm/keep"); err != nil {
			t.Errorf("%s: vm/keep lost: %v", s.NodeID(), err)
		}
	}
}

// Writes concurrent with a delete that reach a node late must not bring
// the record back after the node collected the tombstone: collection waits
// until this node has applied what every member had when it acknowledged.
func TestLateConcurrentWriteAfterCollection(t *testing.T) {
	ft, ss := threeNodes(t, time.Hour)
	a, b, c := ss[0], ss[1], ss[2]
	mustWrite(t, a, "vm/x", set("name", "x"))
	for _, s := range []*Store{b, c} {
		sync1(t, s, a, 1<<20)
	}
	ft.Add(time.Millisecond)
	late := mustWrite(t, c, "vm/x", set("owner", "c")) // concurrent, older stamp
	ft.Add(time.Millisecond)
	mustWrite(t, b, "vm/x", crdt.Op{Delete: true})
	// c learns of the delete from b and acknowledges it to a, but a has not got c's write
	sync1(t, c, b, 1<<20)
	sync1(t, a, b, 1<<20)
	vv, _ := c.VV()
	a.Ack("c", c.Origin(), vv)
	st, err := a.CollectGarbage()
	if err != nil || st.Collected != 0 || st.Blocked == "" {
		t.Fatalf("collected before applying c's concurrent write: %+v, %v", st, err)
	}
	if _, err := a.Apply([]*crdt.Change{late}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get("vm/x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("older concurrent write resurrected vm/x: %v", err)
	}
}

func TestQuorate(t *testing.T) {
	for _, tc := range []struct {
		self          string
		members, live []string
		want          bool
	}{
		{"a", []string{"b", "c"}, []string{"b"}, true},                // 2 of 3
		{"c", []string{"a", "b"}, nil, false},                         // 1 of 3
		{"a", []string{"b"}, nil, true},                               // 1 of 2, lowest ID
		{"b", []string{"a"}, nil, false},                              // 1 of 2, not lowest
		{"c", []string{"a", "b", "d"}, []string{"a"}, true},           // 2 of 4 with the lowest
		{"c", []string{"a", "b", "d"}, []string{"d"}, false},          // 2 of 4 without it
		{"e", []string{"a", "b", "c", "d"}, []string{"d"}, false},     // 2 of 5
		{"e", []string{"a", "b", "c", "d"}, []string{"c", "d"}, true}, // 3 of 5
		{"a", nil, nil, true},                                         // alone
	} {
		if got := quorate(tc.self, tc.members, tc.live); got != tc.want {
			t.Errorf("quorate(%s, %v, live %v) = %v, want %v", tc.self, tc.members, tc.live, got, tc.want)
		}
	}
}

// A node that hears only a minority of the members past the horizon
// expels nobody and keeps its tombstones.
func TestMinorityKeepsTombstones(t *testing.T) {
	ft := newFakeTime()
	dir := t.TempDir()
	ids := []string{"a", "b", "c", "d", "e"}
	var ss []*Store
	for _, id := range ids {
		s := openTest(t, dir, id, ft, func(c *Config) { c.RejoinHorizon = time.Hour })
		if err := s.SetMembers(ids); err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	for _, x := range ss {
		for _, y := range ss {
			if x != y {
				sync1(t, x, y, 1<<20)
			}
		}
	}
	d, e := ss[3], ss[4]
	mustWrite(t, e, "vm/x", set("name", "x"))
	sync1(t, d, e, 1<<20)
	mustWrite(t, e, "vm/x", crdt.Op{Delete: true})
	ft.Add(2 * time.Hour)
	sync1(t, d, e, 1<<20)
	sync1(t, e, d, 1<<20)
	st, err := e.CollectGarbage()
	if err != nil || len(st.Expelled) != 0 || st.Collected != 0 || st.Blocked == "" {
		t.Fatalf("minority collection: %+v, %v", st, err)
	}
	if !hasTomb(t, e, "vm/x") {
		t.Error("minority dropped a tombstone")
	}
	// the majority side expels d and e; a node that learns the marks adopts them
	a, b, c := ss[0], ss[1], ss[2]
	sync1(t, a, b, 1<<20)
	sync1(t, a, c, 1<<20)
	if st, err := a.CollectGarbage(); err != nil || len(st.Expelled) != 2 {
		t.Fatalf("majority collection: %+v, %v", st, err)
	}
	marks, err := a.ResyncMarks()
	if err != nil {
		t.Fatal(err)
	}
	if added, err := b.AdoptResync(marks); err != nil || !added {
		t.Fatalf("AdoptResync = %v, %v", added, err)
	}
	if added, _ := b.AdoptResync(marks); added {
		t.Error("the same marks adopted twice")
	}
	if must, _ := b.MustResync("e", e.Origin()); !must {
		t.Error("adopted mark not enforced")
	}
	if added, _ := e.AdoptResync(marks); !added {
		t.Error("e did not adopt d's mark")
	}
	if must, _ := e.MustResync("e", e.Origin()); must {
		t.Error("a node marked itself")
	}
}
