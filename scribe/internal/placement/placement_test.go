package placement

import (
	"fmt"
	"math"
	"testing"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// cluster returns nodes×perNode disks; free(n, d) gives each disk's free space.
func cluster(nodes, perNode int, free func(n, d int) int64) []Disk {
	var out []Disk
	for n := range nodes {
		for d := range perNode {
			out = append(out, Disk{Node: fmt.Sprintf("node%d", n), ID: chunkstore.ID{byte(n), byte(d), 0x77}, Free: free(n, d)})
		}
	}
	return out
}

func TestChooseDistinctNodes(t *testing.T) {
	tests := []struct {
		name            string
		nodes, perNode  int
		replicas, wantN int
	}{
		{"3 nodes, 2 replicas", 3, 2, 2, 2},
		{"3 nodes, 3 replicas", 3, 4, 3, 3},
		{"2 nodes, 3 replicas", 2, 3, 3, 2},
		{"1 node, 2 replicas", 1, 4, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disks := cluster(tt.nodes, tt.perNode, func(n, d int) int64 { return int64(1+d) << 30 })
			for e := range uint64(2000) {
				got := Choose(disks, chunkstore.ID{9}, e, tt.replicas)
				if len(got) != tt.wantN {
					t.Fatalf("extent %d: %d disks, want %d", e, len(got), tt.wantN)
				}
				seen := map[string]bool{}
				for _, d := range got {
					if seen[d.Node] {
						t.Fatalf("extent %d: two replicas on %s: %v", e, d.Node, got)
					}
					seen[d.Node] = true
				}
			}
		})
	}
}

func TestChooseDeterministic(t *testing.T) {
	disks := cluster(4, 3, func(n, d int) int64 { return 1 << 30 })
	for e := range uint64(100) {
		a, b := Choose(disks, chunkstore.ID{1}, e, 2), Choose(disks, chunkstore.ID{1}, e, 2)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("extent %d: %v then %v", e, a, b)
		}
	}
}

// TestFirstReplicaProportionalToFree: the first replica lands on each disk
// in proportion to its free space (weighted rendezvous hashing), within
// 10 % of the expected share over 60000 extents.
func TestFirstReplicaProportionalToFree(t *testing.T) {
	disks := cluster(3, 3, func(n, d int) int64 { return int64(1+n+2*d) << 30 })
	var total int64
	for _, d := range disks {
		total += d.Free
	}
	const extents = 60000
	count := map[chunkstore.ID]int{}
	for e := range uint64(extents) {
		count[Choose(disks, chunkstore.ID{5}, e, 1)[0].ID]++
	}
	for _, d := range disks {
		want := float64(extents) * float64(d.Free) / float64(total)
		if got := float64(count[d.ID]); math.Abs(got-want) > 0.1*want {
			t.Errorf("disk %v (free %d GiB): %0.f first replicas, want %.0f ±10%%", d.ID[:2], d.Free>>30, got, want)
		}
	}
}

// TestGiBTouchesEveryDisk: the 1024 extents of a 1 GiB VSD with two
// replicas use every disk of a 3-node cluster, none overloaded.
func TestGiBTouchesEveryDisk(t *testing.T) {
	disks := cluster(3, 4, func(n, d int) int64 { return 100 << 30 })
	count := map[chunkstore.ID]int{}
	for e := range uint64(1024) {
		for _, d := range Choose(disks, chunkstore.ID{0xab}, e, 2) {
			count[d.ID]++
		}
	}
	want := 2 * 1024 / len(disks)
	for _, d := range disks {
		if c := count[d.ID]; c < want/2 || c > 2*want {
			t.Errorf("disk %v holds %d chunks, want about %d", d.ID[:2], c, want)
		}
	}
}

func TestNoFreeSpaceSkipped(t *testing.T) {
	disks := cluster(3, 1, func(n, d int) int64 { return int64(n) << 30 }) // node0 full
	for e := range uint64(500) {
		for _, d := range Choose(disks, chunkstore.ID{1}, e, 3) {
			if d.Node == "node0" {
				t.Fatalf("extent %d placed on a full disk", e)
			}
		}
	}
}

func TestReplace(t *testing.T) {
	disks := cluster(4, 2, func(n, d int) int64 { return 1 << 30 })
	for e := range uint64(500) {
		held := Choose(disks, chunkstore.ID{2}, e, 2)
		d, ok := Replace(disks, chunkstore.ID{2}, e, held[:1])
		if !ok {
			t.Fatalf("extent %d: no replacement", e)
		}
		if d.Node == held[0].Node {
			t.Fatalf("extent %d: replacement %v on the node of the surviving replica", e, d)
		}
		// A replacement is deterministic: the best disk off the held nodes.
		if again, _ := Replace(disks, chunkstore.ID{2}, e, held[:1]); again != d {
			t.Fatalf("extent %d: replacement %v then %v", e, d, again)
		}
	}
	if _, ok := Replace(cluster(2, 1, func(int, int) int64 { return 1 }), chunkstore.ID{}, 0, cluster(2, 1, func(int, int) int64 { return 1 })); ok {
		t.Fatal("replacement found with every node already holding the extent")
	}
}

// TestChooseNear: with locality, every extent has a replica on the
// serving node, spread over its disks; the other replicas still cover
// every other disk and never share a node; a serving node much fuller
// than the rest, or full, gets placement without locality.
func TestChooseNear(t *testing.T) {
	tests := []struct {
		name      string
		free      func(n, d int) int64
		wantLocal bool
	}{
		{"equal disks", func(n, d int) int64 { return 100 << 30 }, true},
		{"serving node a bit fuller", func(n, d int) int64 { return int64(100-40*min(1, 1-n)) << 30 }, true},
		{"serving node much fuller", func(n, d int) int64 { return int64(100-70*min(1, 1-n)) << 30 }, false},
		{"serving node full", func(n, d int) int64 { return int64(100*min(1, n)) << 30 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disks := cluster(3, 4, tt.free)
			count := map[chunkstore.ID]int{}
			local := 0
			for e := range uint64(2048) {
				got := ChooseNear(disks, chunkstore.ID{0xcd}, e, 2, "node0")
				if len(got) != 2 || got[0].Node == got[1].Node {
					t.Fatalf("extent %d: %v, want 2 disks on distinct nodes", e, got)
				}
				for _, d := range got {
					if d.Free <= 0 {
						t.Fatalf("extent %d on a full disk %v", e, d)
					}
					count[d.ID]++
				}
				if got[0].Node == "node0" {
					local++
				}
			}
			if tt.wantLocal && local != 2048 {
				t.Fatalf("%d of 2048 extents have a replica on the serving node, want all", local)
			}
			if !tt.wantLocal && local > 2048*3/4 {
				t.Fatalf("%d of 2048 extents start on the fuller serving node, want placement by free space", local)
			}
			for _, d := range disks {
				if d.Free > 0 && count[d.ID] == 0 {
					t.Errorf("disk %v (node %s) holds nothing", d.ID[:2], d.Node)
				}
			}
		})
	}
	if got := ChooseNear(cluster(3, 1, func(int, int) int64 { return 1 }), chunkstore.ID{}, 0, 2, "elsewhere"); len(got) != 2 {
		t.Fatalf("unknown serving node: %v, want plain placement", got)
	}
}
