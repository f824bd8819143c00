package crdt

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-hci/shoal/peer/internal/hlc"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomised tests (0: from SHOAL_SEED or random)")

// testSeed returns the seed to use and logs it so a failure can be replayed
// with -seed or SHOAL_SEED.
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
	t.Logf("seed %d (replay with -seed=%d)", s, s)
	return s
}

// history makes random deltas from several origins, each writing on its
// own replica that sees a random subset of the others' deltas.
func history(r *rand.Rand, origins, n int) []*Record {
	type replica struct {
		name string
		wall int64
		seq  uint64
		st   *Record
	}
	reps := make([]*replica, origins)
	for i := range reps {
		reps[i] = &replica{name: fmt.Sprintf("n%d", i), wall: 1000 + r.Int64N(50)}
	}
	var deltas []*Record
	for range n {
		rp := reps[r.IntN(len(reps))]
		// see some earlier deltas
		for range r.IntN(3) {
			if len(deltas) > 0 {
				rp.st = Merge(rp.st, deltas[r.IntN(len(deltas))])
			}
		}
		rp.wall += r.Int64N(3)
		rp.seq++
		st := Stamp{TS: hlc.Timestamp{Wall: rp.wall, Logical: uint32(r.IntN(2))}, Origin: rp.name}
		field := fmt.Sprintf("f%d", r.IntN(3))
		var op Op
		switch r.IntN(7) {
		case 0, 1:
			op = Op{Field: field, Set: true, Value: []byte(strconv.Itoa(r.IntN(5)))}
		case 2:
			op = Op{Field: "s" + field, Add: true, Elem: strconv.Itoa(r.IntN(4))}
		case 3:
			op = Op{Field: "s" + field, Remove: true, Elem: strconv.Itoa(r.IntN(4))}
		case 4, 5:
			op = Op{Field: "c" + field, Incr: true, Delta: r.Int64N(11) - 5}
		case 6:
			op = Op{Delete: true}
		}
		d, err := Delta(rp.st, 1+uint32(r.IntN(2)), st, Dot{Origin: rp.name, Seq: rp.seq}, []Op{op})
		if err != nil {
			panic(err)
		}
		rp.st = Merge(rp.st, d)
		deltas = append(deltas, d)
	}
	return deltas
}

func mergeAll(rs []*Record) *Record {
	var out *Record
	for _, r := range rs {
		out = Merge(out, r)
	}
	return out
}

func encOrNil(r *Record) []byte {
	if r == nil {
		return nil
	}
	return EncodeRecord(r)
}

func TestMergeLaws(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 1))
	for iter := range 300 {
		ds := history(r, 1+r.IntN(4), 1+r.IntN(30))
		pick := func() *Record {
			var sub []*Record
			for _, d := range ds {
				if r.IntN(2) == 0 {
					sub = append(sub, d)
				}
			}
			return mergeAll(sub)
		}
		a, b, c := pick(), pick(), pick()
		if a == nil || b == nil || c == nil {
			continue
		}
		check := func(law string, x, y *Record) {
			t.Helper()
			if !bytes.Equal(encOrNil(x), encOrNil(y)) {
				t.Fatalf("iter %d: %s broken:\n%s", iter, law, cmp.Diff(x, y))
			}
		}
		check("commutativity", Merge(a, b), Merge(b, a))
		check("associativity", Merge(Merge(a, b), c), Merge(a, Merge(b, c)))
		check("idempotence", Merge(a, a), a)
		check("absorption", Merge(Merge(a, b), b), Merge(a, b))
		// any order of all deltas, with duplicates, gives the same state
		want := mergeAll(ds)
		shuf := append([]*Record(nil), ds...)
		shuf = append(shuf, ds[:r.IntN(len(ds))]...)
		r.Shuffle(len(shuf), func(i, j int) { shuf[i], shuf[j] = shuf[j], shuf[i] })
		check("order independence", mergeAll(shuf), want)
		// round trip of every state
		for _, x := range []*Record{a, b, c, want} {
			got, err := DecodeRecord(EncodeRecord(x))
			if err != nil {
				t.Fatalf("iter %d: decode own encoding: %v", iter, err)
			}
			check("encoding round trip", got, x)
		}
	}
}

func TestMergeDoesNotAlias(t *testing.T) {
	st := Stamp{TS: hlc.Timestamp{Wall: 5}, Origin: "a"}
	a, _ := Delta(nil, 1, st, Dot{"a", 1}, []Op{{Field: "x", Set: true, Value: []byte("1")}, {Field: "s", Add: true, Elem: "e"}})
	before := EncodeRecord(a)
	m := Merge(a, nil)
	m.Fields["x"].Reg.Value[0] = '9'
	m.Fields["s"].Set["e"].Adds[0].Origin = "zz"
	if !bytes.Equal(EncodeRecord(a), before) {
		t.Fatal("mutating a merge result changed its input")
	}
}

func at(wall int64, origin string) Stamp {
	return Stamp{TS: hlc.Timestamp{Wall: wall}, Origin: origin}
}

func TestSemantics(t *testing.T) {
	mustDelta := func(cur *Record, st Stamp, seq uint64, ops ...Op) *Record {
		t.Helper()
		d, err := Delta(cur, 1, st, Dot{st.Origin, seq}, ops)
		if err != nil {
			t.Fatal(err)
		}
		return Merge(cur, d)
	}
	t.Run("lww tiebreak by origin", func(t *testing.T) {
		a := mustDelta(nil, at(10, "a"), 1, Op{Field: "x", Set: true, Value: []byte("A")})
		b := mustDelta(nil, at(10, "b"), 1, Op{Field: "x", Set: true, Value: []byte("B")})
		if got := string(Merge(a, b).Value("x")); got != "B" {
			t.Errorf("x = %q, want B (higher origin wins a tie)", got)
		}
	})
	t.Run("delete then re-create", func(t *testing.T) {
		r := mustDelta(nil, at(10, "a"), 1, Op{Field: "x", Set: true, Value: []byte("1")}, Op{Field: "y", Set: true, Value: []byte("2")})
		del := mustDelta(r, at(20, "b"), 1, Op{Delete: true})
		if del.Live() {
			t.Fatalf("deleted record is live: %+v", del)
		}
		re := mustDelta(del, at(30, "a"), 2, Op{Field: "x", Set: true, Value: []byte("3")})
		// a concurrent older write of y arriving late stays deleted
		late := mustDelta(nil, at(15, "c"), 1, Op{Field: "y", Set: true, Value: []byte("old")})
		got := Merge(re, late)
		if string(got.Value("x")) != "3" || got.Value("y") != nil {
			t.Errorf("after re-create: x=%q y=%q, want 3 and absent", got.Value("x"), got.Value("y"))
		}
	})
	t.Run("or-set add wins over concurrent remove", func(t *testing.T) {
		base := mustDelta(nil, at(10, "a"), 1, Op{Field: "s", Add: true, Elem: "e"})
		rem := mustDelta(base, at(20, "b"), 1, Op{Field: "s", Remove: true, Elem: "e"})
		add := mustDelta(base, at(15, "c"), 1, Op{Field: "s", Add: true, Elem: "e"})
		if got := Merge(rem, add).Members("s"); !cmp.Equal(got, []string{"e"}) {
			t.Errorf("members = %v, want [e]", got)
		}
		if got := rem.Members("s"); len(got) != 0 {
			t.Errorf("after remove members = %v, want none", got)
		}
	})
	t.Run("pn counter", func(t *testing.T) {
		a := mustDelta(nil, at(10, "a"), 1, Op{Field: "c", Incr: true, Delta: 5})
		a = mustDelta(a, at(11, "a"), 2, Op{Field: "c", Incr: true, Delta: -2})
		b := mustDelta(nil, at(10, "b"), 1, Op{Field: "c", Incr: true, Delta: 7})
		m := Merge(Merge(a, b), a)
		if got := m.Count("c"); got != 10 {
			t.Errorf("count = %d, want 10", got)
		}
	})
	t.Run("tombstone collection", func(t *testing.T) {
		r := mustDelta(nil, at(10, "a"), 1, Op{Field: "s", Add: true, Elem: "e"}, Op{Field: "x", Set: true, Value: []byte("1")})
		r = mustDelta(r, at(11, "a"), 2, Op{Field: "s", Remove: true, Elem: "e"})
		if !r.HasTombstones() {
			t.Fatal("remove left no tombstone")
		}
		if r.CollectTombstones(func(Dot) bool { return false }) {
			t.Error("collected an unstable tombstone")
		}
		if !r.CollectTombstones(func(d Dot) bool { return d.Seq <= 2 }) || r.HasTombstones() {
			t.Errorf("stable tombstone not collected: %+v", r)
		}
		if string(r.Value("x")) != "1" {
			t.Errorf("collection lost a live field")
		}
	})
}

func TestSchemaView(t *testing.T) {
	v1 := Schema{Type: "vm", Version: 1, Fields: []FieldSpec{{Name: "name", Kind: KindRegister}}}
	v2 := Schema{Type: "vm", Version: 2, Fields: []FieldSpec{
		{Name: "name", Kind: KindRegister},
		{Name: "cpus", Kind: KindRegister, Default: []byte("1"), Since: 2},
		{Name: "tags", Kind: KindSet, Since: 2},
	}}
	for _, s := range []Schema{v1, v2} {
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	// a v1 writer's record read by v2: default filled
	old, _ := Delta(nil, 1, at(1, "a"), Dot{"a", 1}, []Op{{Field: "name", Set: true, Value: []byte("web")}})
	got := v2.View(old)
	want := View{Schema: 1, Values: map[string][]byte{"name": []byte("web"), "cpus": []byte("1")},
		Sets: map[string][]string{"tags": nil}, Counters: map[string]int64{}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("v2 view of v1 record (-want +got):\n%s", d)
	}
	// a v2 writer's record read by v1: unknown fields ignored, and kept by merge
	nw, _ := Delta(old, 2, at(2, "b"), Dot{"b", 1}, []Op{{Field: "cpus", Set: true, Value: []byte("4")}})
	merged := Merge(old, nw)
	got1 := v1.View(merged)
	if d := cmp.Diff([]string{"cpus"}, got1.Unknown); d != "" || string(got1.Values["name"]) != "web" {
		t.Errorf("v1 view: %+v", got1)
	}
	if merged.Schema != 2 || string(merged.Value("cpus")) != "4" {
		t.Errorf("merge lost the new field or schema: %+v", merged)
	}
}

func TestDeltaRejectsBadOps(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
	}{
		{"no kind", []Op{{Field: "x"}}},
		{"two kinds", []Op{{Field: "x", Set: true, Add: true, Elem: "e"}}},
		{"empty field", []Op{{Set: true}}},
		{"empty elem", []Op{{Field: "s", Add: true}}},
		{"big value", []Op{{Field: "x", Set: true, Value: make([]byte, MaxValueLen+1)}}},
		{"delete with set", []Op{{Delete: true}, {Field: "x", Set: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Delta(nil, 1, at(1, "a"), Dot{"a", 1}, tt.ops); err == nil {
				t.Errorf("Delta(%+v) succeeded", tt.ops)
			}
		})
	}
}

func TestValidKey(t *testing.T) {
	for k, ok := range map[string]bool{
		"vm/web1": true, "event/2026-01-01T00:00:00Z-n1": true, "a-b/x/y": true,
		"": false, "vm": false, "/x": false, "vm/": false, "VM/x": false, "vm/a\x00": false,
	} {
		if err := ValidKey(k); (err == nil) != ok {
			t.Errorf("ValidKey(%q) = %v, want ok %v", k, err, ok)
		}
	}
}

func TestVersionVector(t *testing.T) {
	a := VersionVector{"x": 3, "y": 1}
	b := VersionVector{"x": 2, "z": 4}
	if got, want := Min(a, b), (VersionVector{"x": 2}); !got.Equal(want) {
		t.Errorf("Min = %v, want %v", got, want)
	}
	c := a.Clone()
	c.Merge(b)
	if !c.Dominates(a) || !c.Dominates(b) || a.Dominates(b) {
		t.Errorf("merge/dominates wrong: %v", c)
	}
	got, err := DecodeVV(EncodeVV(c))
	if err != nil || !got.Equal(c) {
		t.Errorf("vv round trip = %v, %v", got, err)
	}
}
