package claim

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ballot(round uint64, node string) Ballot { return Ballot{Round: round, Node: node, Inc: 1} }

// stores returns a fresh store of every kind; each is checked at cleanup.
func stores(t *testing.T) map[string]func() Store {
	return map[string]func() Store{
		"mem": func() Store {
			s := NewMemStore()
			t.Cleanup(func() { checkStore(t, s) })
			return s
		},
		"bolt": func() Store { return openBolt(t, filepath.Join(t.TempDir(), "claims.db")) },
	}
}

func openBolt(t *testing.T, path string) *BoltStore {
	t.Helper()
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		checkStore(t, s)
		s.Close()
	})
	return s
}

func checkStore(t *testing.T, s Store) {
	t.Helper()
	if err := s.Check(); err != nil {
		t.Errorf("store check: %v", err)
	}
}

type step struct {
	prepare *PrepareRequest
	accept  *AcceptRequest
	wantOK  bool
	want    Record // record in the reply
}

func prep(res string, e uint64, b Ballot) *PrepareRequest {
	return &PrepareRequest{Resource: res, Epoch: e, Ballot: b}
}

func acc(res string, e uint64, b Ballot, h string) *AcceptRequest {
	return &AcceptRequest{Resource: res, Epoch: e, Ballot: b, Holder: h}
}

func TestAcceptorRules(t *testing.T) {
	a1, a2, a3 := ballot(1, "a"), ballot(2, "a"), ballot(3, "b")
	tests := []struct {
		name  string
		steps []step
	}{
		{"promise then accept", []step{
			{prepare: prep("vm/1", 1, a1), wantOK: true, want: Record{Epoch: 1, Promised: a1}},
			{accept: acc("vm/1", 1, a1, "n1"), wantOK: true, want: Record{Epoch: 1, Promised: a1, Accepted: &Accepted{1, a1, "n1"}}},
		}},
		{"duplicate prepare and accept are idempotent", []step{
			{prepare: prep("vm/1", 1, a1), wantOK: true, want: Record{Epoch: 1, Promised: a1}},
			{prepare: prep("vm/1", 1, a1), wantOK: true, want: Record{Epoch: 1, Promised: a1}},
			{accept: acc("vm/1", 1, a1, "n1"), wantOK: true, want: Record{Epoch: 1, Promised: a1, Accepted: &Accepted{1, a1, "n1"}}},
			{accept: acc("vm/1", 1, a1, "n1"), wantOK: true, want: Record{Epoch: 1, Promised: a1, Accepted: &Accepted{1, a1, "n1"}}},
		}},
		{"lower ballot refused after promise", []step{
			{prepare: prep("vm/1", 1, a2), wantOK: true, want: Record{Epoch: 1, Promised: a2}},
			{prepare: prep("vm/1", 1, a1), want: Record{Epoch: 1, Promised: a2}},
			{accept: acc("vm/1", 1, a1, "n1"), want: Record{Epoch: 1, Promised: a2}},
		}},
		{"accept without promise at a fresh epoch", []step{
			{accept: acc("vm/1", 4, a1, "n1"), wantOK: true, want: Record{Epoch: 4, Promised: a1, Accepted: &Accepted{4, a1, "n1"}}},
		}},
		{"one holder per epoch even at a higher ballot", []step{
			{accept: acc("vm/1", 1, a1, "n1"), wantOK: true, want: Record{Epoch: 1, Promised: a1, Accepted: &Accepted{1, a1, "n1"}}},
			{prepare: prep("vm/1", 1, a3), wantOK: true, want: Record{Epoch: 1, Promised: a3, Accepted: &Accepted{1, a1, "n1"}}},
			{accept: acc("vm/1", 1, a3, "n2"), want: Record{Epoch: 1, Promised: a3, Accepted: &Accepted{1, a1, "n1"}}},
			{accept: acc("vm/1", 1, a3, "n1"), wantOK: true, want: Record{Epoch: 1, Promised: a3, Accepted: &Accepted{1, a3, "n1"}}},
		}},
		{"higher epoch supersedes, lower refused", []step{
			{accept: acc("vm/1", 1, a1, "n1"), wantOK: true, want: Record{Epoch: 1, Promised: a1, Accepted: &Accepted{1, a1, "n1"}}},
			{prepare: prep("vm/1", 2, a1), wantOK: true, want: Record{Epoch: 2, Promised: a1, Accepted: &Accepted{1, a1, "n1"}}},
			{prepare: prep("vm/1", 1, a3), want: Record{Epoch: 2, Promised: a1, Accepted: &Accepted{1, a1, "n1"}}},
			{accept: acc("vm/1", 1, a3, "n1"), want: Record{Epoch: 2, Promised: a1, Accepted: &Accepted{1, a1, "n1"}}},
			{accept: acc("vm/1", 2, a1, "n2"), wantOK: true, want: Record{Epoch: 2, Promised: a1, Accepted: &Accepted{2, a1, "n2"}}},
		}},
		{"resources are independent", []step{
			{prepare: prep("vm/1", 5, a2), wantOK: true, want: Record{Epoch: 5, Promised: a2}},
			{prepare: prep("vm/2", 1, a1), wantOK: true, want: Record{Epoch: 1, Promised: a1}},
		}},
	}
	for kind, mk := range stores(t) {
		for _, tt := range tests {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				a := NewAcceptor(mk())
				for i, s := range tt.steps {
					var r Reply
					var err error
					if s.prepare != nil {
						r, err = a.Prepare(*s.prepare)
					} else {
						r, err = a.Accept(*s.accept)
					}
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if r.OK != s.wantOK {
						t.Errorf("step %d: ok = %v, want %v", i, r.OK, s.wantOK)
					}
					if d := cmp.Diff(s.want, r.Record); d != "" {
						t.Errorf("step %d: record (-want +got):\n%s", i, d)
					}
				}
				if err := a.Check(); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

func TestAcceptorRejectsBadInputWithoutChange(t *testing.T) {
	a := NewAcceptor(NewMemStore())
	if _, err := a.Prepare(PrepareRequest{Resource: "vm/1", Epoch: 1, Ballot: ballot(1, "a")}); err != nil {
		t.Fatal(err)
	}
	bad := []AcceptRequest{
		{Resource: "", Epoch: 1, Ballot: ballot(2, "a"), Holder: "n1"},
		{Resource: "vm/1", Epoch: 0, Ballot: ballot(2, "a"), Holder: "n1"},
		{Resource: "vm/1", Epoch: 1, Ballot: Ballot{}, Holder: "n1"},
		{Resource: "vm/1", Epoch: 1, Ballot: ballot(2, "a"), Holder: ""},
		{Resource: "vm/1", Epoch: 1, Ballot: ballot(2, "a"), Holder: "bad holder"},
		{Resource: "vm 1", Epoch: 1, Ballot: ballot(2, "a"), Holder: "n1"},
	}
	for _, q := range bad {
		if _, err := a.Accept(q); err == nil {
			t.Errorf("Accept(%+v) succeeded, want an error", q)
		}
	}
	r, err := a.Read(ReadRequest{Resource: "vm/1"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Record{Epoch: 1, Promised: ballot(1, "a")}, r.Record); d != "" {
		t.Errorf("record changed by bad input (-want +got):\n%s", d)
	}
}

func TestBoltRestartKeepsPromises(t *testing.T) {
	path := filepath.Join(t.TempDir(), "claims.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAcceptor(s)
	if _, err := a.Prepare(PrepareRequest{Resource: "vm/1", Epoch: 3, Ballot: ballot(7, "b")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Accept(AcceptRequest{Resource: "vm/2", Epoch: 1, Ballot: ballot(1, "a"), Holder: "n1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	a = NewAcceptor(openBolt(t, path))
	r, err := a.Prepare(PrepareRequest{Resource: "vm/1", Epoch: 3, Ballot: ballot(6, "z")})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK {
		t.Errorf("restarted acceptor promised ballot below its promise: %+v", r)
	}
	r, err = a.Accept(AcceptRequest{Resource: "vm/2", Epoch: 1, Ballot: ballot(9, "c"), Holder: "n2"})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK {
		t.Errorf("restarted acceptor accepted a second holder for vm/2 epoch 1: %+v", r)
	}
	names, err := a.Store().Resources()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"vm/1", "vm/2"}, names); d != "" {
		t.Errorf("resources (-want +got):\n%s", d)
	}
}

func TestBoltCheckFindsCorruptRecord(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "claims.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatalf("fresh store: %v", err)
	}
	// Write garbage behind the store's back.
	if err := s.db.Update(func(tx *boltTx) error {
		return tx.Bucket(bucketClaims).Put([]byte("vm/1"), []byte(`{"epoch":0,"accepted":{"epoch":5}}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err == nil {
		t.Error("Check passed on a corrupt record")
	}
	if _, err := s.Load("vm/1"); err == nil {
		t.Error("Load returned a corrupt record without error")
	}
}
