package statestore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/hlc"
)

// TestConvergenceProperty runs many random histories: N replicas, random
// field writes, deletes and re-creates, set adds/removes, counter
// increments, pushes delivered in random order with duplication and loss,
// pulls (log or chunked snapshot), tombstone collection. At the end every
// replica has the same version vector, digest and canonical bytes, and
// what readers see equals a reference merge of every write ever made (so
// nothing was lost and nothing deleted came back).
func TestConvergenceProperty(t *testing.T) {
	seed := testSeed(t)
	runs := 100
	if testing.Short() {
		runs = 8
	}
	for i := range runs {
		s := seed + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) { convergenceRun(t, s) })
	}
}

type push struct {
	to int
	c  *crdt.Change
}

func randomOps(r *rand.Rand) []crdt.Op {
	f := "f" + strconv.Itoa(r.IntN(3))
	switch r.IntN(10) {
	case 0, 1, 2:
		return []crdt.Op{set(f, strconv.Itoa(r.IntN(100)))}
	case 3:
		return []crdt.Op{set(f, "x"), set("g", strconv.Itoa(r.IntN(5)))}
	case 4, 5:
		return []crdt.Op{{Field: "s", Add: true, Elem: strconv.Itoa(r.IntN(4))}}
	case 6:
		return []crdt.Op{{Field: "s", Remove: true, Elem: strconv.Itoa(r.IntN(4))}}
	case 7, 8:
		return []crdt.Op{{Field: "c", Incr: true, Delta: r.Int64N(21) - 10}}
	}
	return []crdt.Op{{Delete: true}}
}

func convergenceRun(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 2))
	n := 3 + r.IntN(5)
	retain := []int{2, 8, 10000}[r.IntN(3)]
	ft := newFakeTime()
	dir := t.TempDir()
	stores := make([]*Store, n)
	ids := make([]string, n)
	for i := range stores {
		ids[i] = fmt.Sprintf("n%d", i)
		// clocks skewed within the offset bound: nothing may be refused
		skew := time.Duration(r.IntN(400)) * time.Millisecond
		stores[i] = openTest(t, dir, ids[i], ft, func(c *Config) {
			c.LogRetain, c.RevRetain = retain, 50
			c.Clock = hlc.NewClock(func() time.Time { return ft.Now().Add(skew) }, 0)
		})
	}
	for _, s := range stores {
		if err := s.SetMembers(ids); err != nil {
			t.Fatal(err)
		}
	}
	ref := map[string]*crdt.Record{}
	var inflight []push
	steps := 100 + r.IntN(200)
	for range steps {
		ft.Add(time.Duration(r.IntN(5)) * time.Millisecond)
		switch x := r.IntN(20); {
		case x < 8: // local write, pushed to some peers, sometimes twice
			i := r.IntN(n)
			key := "vm/" + strconv.Itoa(r.IntN(6))
			c := mustWrite(t, stores[i], key, randomOps(r)...)
			ref[key] = crdt.Merge(ref[key], c.Delta)
			for j := range stores {
				if j != i && r.IntN(2) == 0 {
					inflight = append(inflight, push{j, c})
					if r.IntN(5) == 0 {
						inflight = append(inflight, push{j, c})
					}
				}
			}
		case x < 14: // deliver a random push; some are lost
			if len(inflight) == 0 {
				continue
			}
			k := r.IntN(len(inflight))
			p := inflight[k]
			inflight = append(inflight[:k], inflight[k+1:]...)
			if r.IntN(6) == 0 {
				continue
			}
			c, err := crdt.DecodeChange(crdt.EncodeChange(p.c))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stores[p.to].Apply([]*crdt.Change{c}); err != nil {
				t.Fatal(err)
			}
		case x < 17: // anti-entropy pull with a random message size bound
			i, j := r.IntN(n), r.IntN(n)
			if i != j {
				sync1(t, stores[i], stores[j], 50+r.IntN(3000))
			}
		case x < 19:
			if _, err := stores[r.IntN(n)].CollectGarbage(); err != nil {
				t.Fatal(err)
			}
		default:
			r.Shuffle(len(inflight), func(a, b int) { inflight[a], inflight[b] = inflight[b], inflight[a] })
		}
	}
	// heal: two passes around a ring spread everything everywhere
	for range 2 {
		for i := range stores {
			sync1(t, stores[(i+1)%n], stores[i], 50+r.IntN(3000))
		}
	}
	vv0, _ := stores[0].VV()
	d0 := digest(t, stores[0])
	for i, s := range stores {
		vv, _ := s.VV()
		if !vv.Equal(vv0) {
			t.Fatalf("replica %d version vector %v, replica 0 %v", i, vv, vv0)
		}
		if d := digest(t, s); d != d0 {
			t.Fatalf("replica %d digest %s, replica 0 %s", i, d, d0)
		}
		for key, want := range ref {
			got, err := s.Get(key)
			if err != nil {
				got = nil
			}
			if !crdt.Equal(got, want.Visible()) {
				t.Fatalf("replica %d %s differs from the reference merge:\n%s", i, key, cmp.Diff(want.Visible(), got))
			}
		}
	}
	// everyone acknowledges everyone, collects, and the full canonical
	// state (tombstones included) is then byte-identical
	for _, s := range stores {
		for _, o := range stores {
			vv, _ := o.VV()
			if err := s.Ack(o.NodeID(), o.Origin(), vv); err != nil {
				t.Fatal(err)
			}
		}
	}
	var dump0 []byte
	for i, s := range stores {
		if st, err := s.CollectGarbage(); err != nil || st.Blocked != "" {
			t.Fatalf("replica %d final collection: %+v, %v", i, st, err)
		}
		es, err := s.Dump()
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		for _, e := range es {
			if e.Record.HasTombstones() {
				t.Fatalf("replica %d kept a stable tombstone in %s", i, e.Key)
			}
			b = append(b, e.Key...)
			b = append(b, crdt.EncodeRecord(e.Record)...)
		}
		if i == 0 {
			dump0 = b
		} else if !bytes.Equal(b, dump0) {
			t.Fatalf("replica %d canonical state differs from replica 0", i)
		}
	}
}
