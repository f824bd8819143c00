package crdt

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus in testdata")

// corpus returns valid encodings of every kind, from a fixed seed.
func corpus() (records, changes, snaps, vvs [][]byte) {
	r := rand.New(rand.NewPCG(7, 7))
	for i := range 6 {
		ds := history(r, 3, 5+i*3)
		st := mergeAll(ds)
		records = append(records, EncodeRecord(st), EncodeRecord(ds[0]))
		changes = append(changes, EncodeChange(&Change{Origin: "n1", Seq: uint64(i + 1), Key: fmt.Sprintf("vm/v%d", i), Delta: ds[len(ds)-1]}))
		sn := &SnapshotChunk{VV: VersionVector{"n0": 4, "n1": uint64(i + 1)}, After: "vm/a", More: i%2 == 0}
		sn.Entries = append(sn.Entries, Entry{Key: "vm/b", Record: st}, Entry{Key: "vm/c", Record: ds[0]})
		if !st.Empty() && !ds[0].Empty() {
			snaps = append(snaps, EncodeSnapshot(sn))
		}
		vvs = append(vvs, EncodeVV(VersionVector{"n0": uint64(i), "n1": 300}))
	}
	return
}

func TestWriteCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	rs, cs, ss, vs := corpus()
	for name, list := range map[string][][]byte{"FuzzDecodeRecord": rs, "FuzzDecodeChange": cs, "FuzzDecodeSnapshot": ss, "FuzzDecodeVV": vs} {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, b := range list {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// fuzzCanonical checks that decode never panics and accepts only
// canonical input.
func fuzzCanonical[T any](f *testing.F, seeds [][]byte, decode func([]byte) (T, error), encode func(T) []byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decode(b)
		if err != nil {
			return
		}
		if got := encode(v); !bytes.Equal(got, b) {
			t.Fatalf("accepted non-canonical input:\n in %x\nout %x", b, got)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	rs, _, _, _ := corpus()
	fuzzCanonical(f, rs, DecodeRecord, EncodeRecord)
}

func FuzzDecodeChange(f *testing.F) {
	_, cs, _, _ := corpus()
	fuzzCanonical(f, cs, DecodeChange, EncodeChange)
}

func FuzzDecodeSnapshot(f *testing.F) {
	_, _, ss, _ := corpus()
	fuzzCanonical(f, ss, DecodeSnapshot, EncodeSnapshot)
}

func FuzzDecodeVV(f *testing.F) {
	_, _, _, vs := corpus()
	fuzzCanonical(f, vs, DecodeVV, EncodeVV)
}
