package statestore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/hlc"
)

func TestWriteGetListDelete(t *testing.T) {
	s := openTest(t, t.TempDir(), "n1", newFakeTime(), nil)
	mustWrite(t, s, "vm/a", set("name", "web"), set("cpus", "2"))
	mustWrite(t, s, "vm/a", set("cpus", "4")) // field-level: name kept
	mustWrite(t, s, "vm/b", crdt.Op{Field: "tags", Add: true, Elem: "prod"}, crdt.Op{Field: "boots", Incr: true, Delta: 3})
	mustWrite(t, s, "node/x", set("state", "up"))

	r, err := s.Get("vm/a")
	if err != nil {
		t.Fatal(err)
	}
	if got := map[string]string{"name": string(r.Value("name")), "cpus": string(r.Value("cpus"))}; !cmp.Equal(got, map[string]string{"name": "web", "cpus": "4"}) {
		t.Errorf("vm/a = %v", got)
	}
	list, rev, err := s.List("vm/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range list {
		keys = append(keys, e.Key)
	}
	if !cmp.Equal(keys, []string{"vm/a", "vm/b"}) || rev != 4 {
		t.Errorf("List(vm/) = %v at rev %d, want [vm/a vm/b] at 4", keys, rev)
	}
	if b, _ := s.Get("vm/b"); b.Count("boots") != 3 || !cmp.Equal(b.Members("tags"), []string{"prod"}) {
		t.Errorf("vm/b = %+v", b)
	}
	mustWrite(t, s, "vm/a", crdt.Op{Delete: true})
	if _, err := s.Get("vm/a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after delete: %v, want ErrNotFound", err)
	}
	mustWrite(t, s, "vm/a", set("name", "again"))
	if r, err := s.Get("vm/a"); err != nil || string(r.Value("name")) != "again" || r.Value("cpus") != nil {
		t.Errorf("re-created vm/a = %+v, %v", r, err)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	s := openTest(t, t.TempDir(), "n1", newFakeTime(), nil)
	d0 := digest(t, s)
	bad := []struct {
		key string
		ops []crdt.Op
	}{
		{"nokey", []crdt.Op{set("a", "b")}},
		{"vm/a", nil},
		{"vm/a", []crdt.Op{{Field: "a"}}},
		{"vm/a", []crdt.Op{set("a", "1"), {Field: "", Set: true}}},
	}
	for _, b := range bad {
		if _, err := s.Write(b.key, b.ops...); err == nil {
			t.Errorf("Write(%q, %+v) succeeded", b.key, b.ops)
		}
	}
	if vv, _ := s.VV(); len(vv) != 0 || digest(t, s) != d0 {
		t.Errorf("bad writes changed state: vv %v", vv)
	}
}

func TestApplySkipsGapsAndDuplicates(t *testing.T) {
	dir, ft := t.TempDir(), newFakeTime()
	a, b := openTest(t, dir, "a", ft, nil), openTest(t, dir, "b", ft, nil)
	var cs []*crdt.Change
	for i := range 3 {
		cs = append(cs, mustWrite(t, a, "vm/x", set("n", string(rune('0'+i)))))
	}
	n, err := b.Apply([]*crdt.Change{cs[1], cs[2]})
	if err != nil || n != 0 {
		t.Fatalf("apply with a gap = %d, %v; want 0", n, err)
	}
	n, err = b.Apply([]*crdt.Change{cs[0], cs[0], cs[1], cs[2], cs[1]})
	if err != nil || n != 3 {
		t.Fatalf("apply in order with duplicates = %d, %v; want 3", n, err)
	}
	if digest(t, a) != digest(t, b) {
		t.Error("digests differ")
	}
}

func TestApplyRefusesClockFarAhead(t *testing.T) {
	dir := t.TempDir()
	slow, fast := newFakeTime(), newFakeTime()
	fast.Add(10 * time.Second)
	a, b := openTest(t, dir, "a", fast, nil), openTest(t, dir, "b", slow, nil)
	c := mustWrite(t, a, "vm/x", set("owner", "a"))
	n, err := b.Apply([]*crdt.Change{c})
	if !errors.Is(err, hlc.ErrClockOffset) || n != 0 {
		t.Fatalf("Apply of a change 10 s ahead = %d, %v; want ErrClockOffset", n, err)
	}
	if _, err := b.Get("vm/x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused change was merged: %v", err)
	}
	// b's own later write is not beaten by a's far-future stamp
	mustWrite(t, b, "vm/x", set("owner", "b"))
	if r, _ := b.Get("vm/x"); string(r.Value("owner")) != "b" {
		t.Errorf("owner = %q", r.Value("owner"))
	}
}

func TestWatchResumeAndResync(t *testing.T) {
	s := openTest(t, t.TempDir(), "n1", newFakeTime(), func(c *Config) { c.RevRetain = 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := s.Watch("vm/", 0)
	mustWrite(t, s, "vm/a", set("x", "1"))
	mustWrite(t, s, "node/n", set("x", "1"))
	mustWrite(t, s, "vm/b", set("x", "1"))
	ev, err := w.Next(ctx)
	if err != nil || ev.Key != "vm/a" || ev.Rev != 1 {
		t.Fatalf("first event = %+v, %v", ev, err)
	}
	// reconnect: resume from the last handled revision
	w = s.Watch("vm/", ev.Rev)
	ev, err = w.Next(ctx)
	if err != nil || ev.Key != "vm/b" || ev.Rev != 3 {
		t.Fatalf("resumed event = %+v, %v; want vm/b at 3", ev, err)
	}
	// a blocked watcher wakes on a write
	done := make(chan Event)
	go func() {
		e, _ := w.Next(ctx)
		done <- e
	}()
	mustWrite(t, s, "vm/a", crdt.Op{Delete: true})
	if e := <-done; e.Key != "vm/a" || e.Record != nil {
		t.Errorf("delete event = %+v", e)
	}
	for i := range 10 {
		mustWrite(t, s, "vm/c", set("i", string(rune('a'+i))))
	}
	if _, err := s.Watch("vm/", 1).Next(ctx); !errors.Is(err, ErrResync) {
		t.Errorf("watch from compacted revision: %v, want ErrResync", err)
	}
	// a duplicate merge that changes nothing visible makes no event
	r0, _ := s.Revision()
	vv, _ := s.VV()
	ch, _ := s.ChangesSince(crdt.VersionVector{}, 1<<20)
	_ = vv
	if _, err := s.Apply(ch.Changes); err != nil {
		t.Fatal(err)
	}
	if r1, _ := s.Revision(); r1 != r0 {
		t.Errorf("revision moved %d -> %d on duplicates", r0, r1)
	}
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := s.Watch("vm/", r0).Next(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with cancelled ctx: %v", err)
	}
}

func TestSnapshotWhenBehindCompaction(t *testing.T) {
	dir, ft := t.TempDir(), newFakeTime()
	small := func(c *Config) { c.LogRetain = 10 }
	a, b := openTest(t, dir, "a", ft, small), openTest(t, dir, "b", ft, small)
	for i := range 50 {
		mustWrite(t, a, "vm/"+string(rune('a'+i%26)), set("i", string(rune('0'+i%10))))
	}
	vv, _ := b.VV()
	ch, err := a.ChangesSince(vv, 1<<20)
	if err != nil || !ch.Snapshot {
		t.Fatalf("ChangesSince from empty past compaction = %+v, %v; want snapshot", ch, err)
	}
	sync1(t, b, a, 200) // small chunks
	if digest(t, a) != digest(t, b) {
		t.Fatal("digests differ after snapshot")
	}
	// after the snapshot, b serves changes from the new floor on
	mustWrite(t, a, "vm/z", set("late", "1"))
	sync1(t, b, a, 1<<20)
	av, _ := a.VV()
	bv, _ := b.VV()
	if !av.Equal(bv) || digest(t, a) != digest(t, b) {
		t.Errorf("not converged: %v vs %v", av, bv)
	}
}

func TestSchemaVersionRecorded(t *testing.T) {
	sch := crdt.Schema{Type: "vm", Version: 3, Fields: []crdt.FieldSpec{{Name: "name", Kind: crdt.KindRegister}}}
	s := openTest(t, t.TempDir(), "n1", newFakeTime(), func(c *Config) { c.Schemas = map[string]crdt.Schema{"vm": sch} })
	mustWrite(t, s, "vm/a", set("name", "x"), set("future", "kept"))
	r, _ := s.Get("vm/a")
	v := sch.View(r)
	if v.Schema != 3 || string(v.Values["name"]) != "x" || !cmp.Equal(v.Unknown, []string{"future"}) {
		t.Errorf("view = %+v", v)
	}
}

func TestEventsRetention(t *testing.T) {
	ft := newFakeTime()
	s := openTest(t, t.TempDir(), "n1", ft, nil)
	for i := range 10 {
		if _, err := s.AddEvent("member-joined", "node joined", map[string]string{"node": string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
		ft.Add(time.Minute)
	}
	n, err := s.PruneEvents(6, 0)
	if err != nil || n != 4 {
		t.Fatalf("prune by count = %d, %v; want 4", n, err)
	}
	n, err = s.PruneEvents(0, 3*time.Minute+time.Second)
	if err != nil || n != 3 {
		t.Fatalf("prune by age = %d, %v; want 3", n, err)
	}
	evs, _, _ := s.List(EventPrefix)
	if len(evs) != 3 || string(evs[0].Record.Value("attr.node")) != "h" {
		t.Errorf("left %d events, first %+v", len(evs), evs)
	}
}

// A watcher that reconnects often, while writes race with it, sees every
// revision of its prefix exactly once, in order.
func TestWatchReconnectNoMissNoDuplicate(t *testing.T) {
	s := openTest(t, t.TempDir(), "n1", newFakeTime(), nil)
	const writes = 400
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		for i := range writes {
			key := "vm/a"
			if i%3 == 0 {
				key = "node/x" // other prefix: not seen by the watcher
			}
			if _, err := s.Write(key, set("i", string(rune('0'+i%10)))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var got []uint64
	var last uint64
	w := s.Watch("vm/", 0)
	for len(got) < writes-(writes+2)/3 {
		ev, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("after %d events: %v", len(got), err)
		}
		got = append(got, ev.Rev)
		last = ev.Rev
		if len(got)%37 == 0 {
			w = s.Watch("vm/", last) // reconnect
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("revision %d after %d: duplicate or out of order", got[i], got[i-1])
		}
	}
	// every vm/ revision is there: count them from the revision log
	all := s.Watch("", 0)
	var want []uint64
	for {
		c2, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
		ev, err := all.Next(c2)
		cancel2()
		if err != nil {
			break
		}
		if ev.Key == "vm/a" {
			want = append(want, ev.Rev)
		}
	}
	if !cmp.Equal(got, want) {
		t.Errorf("watcher saw %d revisions, the log has %d for vm/", len(got), len(want))
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Path: "/tmp/x.db", NodeID: "3f2a"}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"minimal", func(*Config) {}, true},
		{"no path", func(c *Config) { c.Path = "" }, false},
		{"no node", func(c *Config) { c.NodeID = "" }, false},
		{"hash in node", func(c *Config) { c.NodeID = "a#1" }, false},
		{"space in node", func(c *Config) { c.NodeID = "a b" }, false},
		{"negative retain", func(c *Config) { c.LogRetain = -1 }, false},
		{"schema type mismatch", func(c *Config) {
			c.Schemas = map[string]crdt.Schema{"vm": {Type: "node", Version: 1}}
		}, false},
		{"schema ok", func(c *Config) {
			c.Schemas = map[string]crdt.Schema{"vm": {Type: "vm", Version: 2, Fields: []crdt.FieldSpec{{Name: "a", Kind: crdt.KindRegister, Since: 2}}}}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
	if got := NodeOf("3f2a#12"); got != "3f2a" {
		t.Errorf("NodeOf = %q", got)
	}
}
