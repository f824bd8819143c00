package replicate

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/hlc"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus in testdata")

func sampleChanges() []*crdt.Change {
	st := crdt.Stamp{TS: hlc.Timestamp{Wall: 1_700_000_000_000, Logical: 2}, Origin: "n1#1"}
	d1, _ := crdt.Delta(nil, 1, st, crdt.Dot{Origin: "n1#1", Seq: 1}, []crdt.Op{
		{Field: "name", Set: true, Value: []byte(`"web"`)},
		{Field: "tags", Add: true, Elem: "prod"},
		{Field: "boots", Incr: true, Delta: 2},
	})
	st.TS.Logical++
	d2, _ := crdt.Delta(nil, 1, st, crdt.Dot{Origin: "n1#1", Seq: 2}, []crdt.Op{{Delete: true}})
	return []*crdt.Change{{Origin: "n1#1", Seq: 1, Key: "vm/web", Delta: d1}, {Origin: "n1#1", Seq: 2, Key: "vm/old", Delta: d2}}
}

func sampleMessages() (pushes []*PushMsg, pulls []*PullRequest, resps []*PullResponse) {
	cs := sampleChanges()
	vv := crdt.VersionVector{"n1#1": 2, "n2#3": 7}
	pushes = []*PushMsg{{From: "n1", Origin: "n1#1", Changes: cs}, {From: "n2", Origin: "n2#1"}}
	pulls = []*PullRequest{
		{From: "n2", Origin: "n2#3", VV: vv},
		{From: "n3", Origin: "n3#1", Snapshot: true, SnapshotAfter: "vm/a"},
		{From: "n2", Origin: "n2#3", VVHash: HashVV(vv)},
		{From: "n2", Origin: "n2#3", VV: vv, Resync: crdt.VersionVector{"n4": 1, "n5": 2}},
	}
	snap := &crdt.SnapshotChunk{VV: vv, More: true, Entries: []crdt.Entry{{Key: "vm/web", Record: cs[0].Delta}}}
	resps = []*PullResponse{
		{From: "n1", Origin: "n1#1", Same: true},
		{From: "n1", Origin: "n1#1", VV: vv, Changes: cs, More: true},
		{From: "n1", Origin: "n1#1", VV: vv, Snapshot: snap},
		{From: "n1", Origin: "n1#1", VV: vv, Reset: true},
		{From: "n1", Origin: "n1#1", Reset: true, Resync: crdt.VersionVector{"n2": 1}},
		{From: "n1", Origin: "n1#1", NeedVV: true},
	}
	return
}

func TestMessageRoundTrip(t *testing.T) {
	pushes, pulls, resps := sampleMessages()
	opt := cmp.Comparer(func(a, b *crdt.Record) bool { return crdt.Equal(a, b) })
	for _, m := range pushes {
		got, err := UnmarshalPush(m.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(m, got, opt); d != "" {
			t.Errorf("push round trip (-want +got):\n%s", d)
		}
	}
	for _, q := range pulls {
		got, err := UnmarshalPullRequest(q.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(q, got, opt); d != "" {
			t.Errorf("pull round trip (-want +got):\n%s", d)
		}
	}
	for _, r := range resps {
		got, err := UnmarshalPullResponse(r.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(r, got, opt, cmp.Comparer(func(a, b crdt.VersionVector) bool { return a.Equal(b) })); d != "" {
			t.Errorf("response round trip (-want +got):\n%s", d)
		}
		// and as JSON, for transports that prefer it
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back PullResponse
		if err := json.Unmarshal(j, &back); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.Marshal(), r.Marshal()) {
			t.Errorf("JSON round trip changed the message: %s", j)
		}
	}
	if _, err := UnmarshalPush([]byte("garbage")); err == nil {
		t.Error("garbage decoded")
	}
}

func TestWriteCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	pushes, pulls, resps := sampleMessages()
	files := map[string][][]byte{}
	for _, m := range pushes {
		files["FuzzUnmarshalPush"] = append(files["FuzzUnmarshalPush"], m.Marshal())
	}
	for _, q := range pulls {
		files["FuzzUnmarshalPullRequest"] = append(files["FuzzUnmarshalPullRequest"], q.Marshal())
	}
	for _, r := range resps {
		files["FuzzUnmarshalPullResponse"] = append(files["FuzzUnmarshalPullResponse"], r.Marshal())
	}
	for name, list := range files {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, b := range list {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%d", i)), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// fuzzMessage checks that decoding never panics and accepts only
// canonical encodings.
func fuzzMessage[T interface{ Marshal() []byte }](f *testing.F, seeds []T, decode func([]byte) (T, error)) {
	for _, s := range seeds {
		f.Add(s.Marshal())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			return
		}
		if got := m.Marshal(); !bytes.Equal(got, b) {
			t.Fatalf("accepted non-canonical input:\n in %x\nout %x", b, got)
		}
	})
}

func FuzzUnmarshalPush(f *testing.F) {
	p, _, _ := sampleMessages()
	fuzzMessage(f, p, UnmarshalPush)
}

func FuzzUnmarshalPullRequest(f *testing.F) {
	_, q, _ := sampleMessages()
	fuzzMessage(f, q, UnmarshalPullRequest)
}

func FuzzUnmarshalPullResponse(f *testing.F) {
	_, _, r := sampleMessages()
	fuzzMessage(f, r, UnmarshalPullResponse)
}
