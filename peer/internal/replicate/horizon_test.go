package replicate

import (
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/statestore"
)

// raceBuild is set in race builds (race_test.go): fewer seeds there.
var raceBuild bool

// splitGroups cuts ids into k random groups of at least least nodes each.
func splitGroups(r *rand.Rand, ids []string, k, least int) [][]string {
	p := slices.Clone(ids)
	r.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
	groups := make([][]string, k)
	for i := range k {
		groups[i], p = slices.Clone(p[:least]), p[least:]
	}
	for _, id := range p {
		g := r.IntN(k)
		groups[g] = append(groups[g], id)
	}
	return groups
}

// quorateGroup returns the index of the group that may expel the others
// (more than half of all nodes, or exactly half with the lowest ID), or -1.
func quorateGroup(ids []string, groups [][]string) int {
	lowest := slices.Min(ids)
	for i, g := range groups {
		if 2*len(g) > len(ids) || 2*len(g) == len(ids) && slices.Contains(g, lowest) {
			return i
		}
	}
	return -1
}

// A partition into groups of several nodes that lasts longer than the
// rejoin horizon, with writes and deletes on every side all along: after
// the heal every replica holds exactly the merge of the writes of the
// side that kept its state (the quorum side, or every side when none is
// a quorum), so no record deleted there comes back from the other side,
// and every replica ends digest-equal. Replay one seed with -seed=N.
func TestLongPartitionOfGroups(t *testing.T) {
	seed := testSeed(t)
	seeds := 6
	if raceBuild || testing.Short() {
		seeds = 2
	}
	for i := range seeds {
		s := seed + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { longPartition(t, s) })
		})
	}
}

func longPartition(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x40))
	n := 4 + r.IntN(4)
	const horizon = 2 * time.Minute
	c := newCluster(t, n, seed, clusterOpts{
		store: func(_ int, sc *statestore.Config) { sc.RejoinHorizon = horizon; sc.LogRetain = 20 + r.IntN(200) },
		node: func(_ int, nc *Config) {
			nc.PullInterval, nc.GCInterval, nc.MaxMessageBytes = 300*time.Millisecond, 5*time.Second, 500+r.IntN(4000)
		},
	})
	c.start()
	type write struct {
		ch    *crdt.Change
		node  int
		apart bool // written during the partition
	}
	var writes []write
	for range 100 {
		i := r.IntN(n)
		writes = append(writes, write{randomWrite(t, r, c.stores[i]), i, false})
		time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
	}
	c.waitConverged(t, time.Minute)

	k := 2
	if n >= 5 && r.IntN(3) == 0 {
		k = 3 // possibly no quorum anywhere: nobody expels, nothing is lost
	}
	least := 2
	if k == 3 {
		least = 1
	}
	groups := splitGroups(r, c.ids, k, least)
	q := quorateGroup(c.ids, groups)
	t.Logf("%d nodes, partition %v, quorum side %d", n, groups, q)
	c.net.Partition(groups...)
	index := map[string]int{}
	for i, id := range c.ids {
		index[id] = i
	}
	for end := time.Now().Add(2*horizon + time.Minute); time.Now().Before(end); {
		i := r.IntN(n)
		writes = append(writes, write{randomWrite(t, r, c.stores[i]), i, true})
		time.Sleep(time.Duration(200+r.IntN(600)) * time.Millisecond)
	}
	keeps := make([]bool, n) // whose partition writes must survive
	for gi, g := range groups {
		for _, id := range g {
			keeps[index[id]] = q < 0 || gi == q
		}
	}
	for i, s := range c.stores {
		if !keeps[i] {
			continue
		}
		others := 0
		for j := range n {
			if must, _ := s.MustResync(c.ids[j], c.stores[j].Origin()); must {
				others++
			}
		}
		if want := 0; q >= 0 {
			want = n - len(groups[q])
			if others != want {
				t.Errorf("%s marked %d nodes for resync, want %d", c.ids[i], others, want)
			}
		} else if others != want {
			t.Errorf("%s marked %d nodes for resync without a quorum", c.ids[i], others)
		}
	}
	c.net.Heal()
	c.waitConverged(t, 2*time.Minute)
	c.stop()

	// The oracle: a fresh replica that merges every write that must
	// survive and never collects a tombstone.
	ref, err := statestore.Open(statestore.Config{Path: filepath.Join(t.TempDir(), "ref.db"), NodeID: "ref", NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	var keep []*crdt.Change
	for _, w := range writes {
		if !w.apart || keeps[w.node] {
			keep = append(keep, w.ch)
		}
	}
	if k, err := ref.Apply(keep); err != nil || k != len(keep) {
		t.Fatalf("oracle applied %d of %d changes: %v", k, len(keep), err)
	}
	for i, s := range c.stores {
		if resets := c.nodes[i].Stats().Resets; (resets > 0) == keeps[i] {
			t.Errorf("%s reset %d times; it was on the %s side", c.ids[i], resets, map[bool]string{true: "keeping", false: "expelled"}[keeps[i]])
		}
		if d := diffStores(t, ref, s); d != "" {
			t.Errorf("%s differs from the merge of the surviving writes:\n%s", c.ids[i], d)
		}
	}
}

// diffStores lists the keys whose visible records differ between a and b.
func diffStores(t *testing.T, a, b *statestore.Store) string {
	t.Helper()
	ea, _, err := a.List("")
	if err != nil {
		t.Fatal(err)
	}
	eb, _, err := b.List("")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][2]string{}
	for _, e := range ea {
		v := m[e.Key]
		v[0] = showRecord(e.Record)
		m[e.Key] = v
	}
	for _, e := range eb {
		v := m[e.Key]
		v[1] = showRecord(e.Record)
		m[e.Key] = v
	}
	var out string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if v := m[k]; v[0] != v[1] {
			out += fmt.Sprintf("  %s: want %s, got %s\n", k, v[0], v[1])
		}
	}
	return out
}

func showRecord(r *crdt.Record) string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(r.Fields)) {
		switch f := r.Fields[name]; f.Kind {
		case crdt.KindRegister:
			out = append(out, fmt.Sprintf("%s=%s", name, r.Value(name)))
		case crdt.KindSet:
			out = append(out, fmt.Sprintf("%s=%v", name, r.Members(name)))
		default:
			out = append(out, fmt.Sprintf("%s=%d", name, r.Count(name)))
		}
	}
	return "{" + strings.Join(out, " ") + "}"
}
