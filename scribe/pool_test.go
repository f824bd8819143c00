package scribe

import (
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/chunksvc"
)

func TestPoolReplica(t *testing.T) {
	// A port nobody listens on: dials are refused at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	now := time.Unix(1000, 0)
	p := &pool{
		self: "me", local: chunksvc.Local(nil), dialTimeout: time.Second,
		now: func() time.Time { return now }, conns: map[string]*conn{},
	}
	p.update([]NodeRecord{
		{Node: "me", Addr: "ignored"},
		{Node: "up", Addr: dead, Disks: []DiskInfo{{ID: chunkstore.ID{1}, Free: 10}}},
		{Node: "down", Addr: dead, Disks: []DiskInfo{{ID: chunkstore.ID{2}, Free: 20}}},
		{Node: "gone", Addr: dead, Disks: []DiskInfo{{ID: chunkstore.ID{3}}}},
	}, []client.Member{
		{ID: "me", State: client.StateAlive}, {ID: "up", State: client.StateAlive},
		{ID: "down", State: client.StateFailed}, {ID: "gone", State: client.StateLeft},
	})

	nodes := p.Nodes()
	slices.Sort(nodes)
	if diff := cmp.Diff([]string{"down", "me", "up"}, nodes); diff != "" {
		t.Errorf("Nodes() (-want +got):\n%s", diff)
	}
	if r, err := p.Replica("me"); err != nil || r != p.local {
		t.Fatalf("Replica(self) = %v, %v; want the local replica", r, err)
	}
	// Disks: members up or down, not those that left.
	got := map[string]int64{}
	for _, d := range p.Disks() {
		got[d.Node] = d.Free
	}
	if len(got) != 2 || got["up"] != 10 || got["down"] != 20 {
		t.Errorf("Disks() by node = %v, want up:10 down:20", got)
	}
	for _, node := range []string{"down", "gone", "stranger"} {
		if _, err := p.Replica(node); !errors.Is(err, chunksvc.ErrUnreachable) {
			t.Errorf("Replica(%s) = %v, want ErrUnreachable", node, err)
		}
	}
	// A refused dial is remembered for redialAfter: no new dial.
	if _, err := p.Replica("up"); !errors.Is(err, chunksvc.ErrUnreachable) {
		t.Fatalf("Replica(up) with its service down = %v, want ErrUnreachable", err)
	}
	failed := p.conns["up"].failed
	now = now.Add(redialAfter / 2)
	if _, err := p.Replica("up"); err == nil || p.conns["up"].failed != failed {
		t.Errorf("Replica(up) right after a refused dial: %v, dialled again: %v", err, p.conns["up"].failed != failed)
	}
	now = now.Add(redialAfter)
	if _, err := p.Replica("up"); err == nil || p.conns["up"].failed == failed {
		t.Errorf("Replica(up) after redialAfter: %v, dialled again: %v", err, p.conns["up"].failed != failed)
	}
	p.close()
}

// TestPoolCountsReturns: a node seen down, then up, counts once (open
// VSDs with unavailable extents rescan then); first sight does not count.
func TestPoolCountsReturns(t *testing.T) {
	p := &pool{self: "me", conns: map[string]*conn{}}
	recs := []NodeRecord{{Node: "a", Addr: "x"}, {Node: "b", Addr: "y"}}
	steps := []struct {
		a, b string
		want uint64
	}{
		{client.StateAlive, client.StateFailed, 0},
		{client.StateAlive, client.StateFailed, 0},
		{client.StateAlive, client.StateAlive, 1},
		{client.StateSuspect, client.StateAlive, 1},
		{client.StateFailed, client.StateAlive, 1},
		{client.StateAlive, client.StateAlive, 2},
	}
	for i, s := range steps {
		p.update(recs, []client.Member{{ID: "a", State: s.a}, {ID: "b", State: s.b}})
		if got := p.returned(); got != s.want {
			t.Fatalf("step %d: returned %d, want %d", i, got, s.want)
		}
	}
}
