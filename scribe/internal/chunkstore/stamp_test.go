package chunkstore

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStampPersistsAndOnlyGrows(t *testing.T) { onDevices(t, testStampPersistsAndOnlyGrows) }

func testStampPersistsAndOnlyGrows(t *testing.T, dopts FileOptions) {
	path, s := openStore(t, 32<<20, dopts)
	ctx := context.Background()
	k := ChunkKey{VSD: ID{1}, Extent: 3}
	a, b := ID{0xa}, ID{0xb}
	steps := []struct {
		name string
		do   func() error
		want Stamp
	}{
		{"first write", func() error {
			return s.WriteStamped(ctx, k, 1, Stamp{Gen: 5, Members: [3]ID{a, b}}, 0, make([]byte, BlockSize), false)
		}, Stamp{Gen: 5, Members: [3]ID{a, b}}},
		{"older stamp ignored", func() error {
			return s.WriteStamped(ctx, k, 1, Stamp{Gen: 4, Members: [3]ID{b}}, 0, []byte("x"), false)
		}, Stamp{Gen: 5, Members: [3]ID{a, b}}},
		{"set newer", func() error { return s.SetStamp(ctx, k, 1, Stamp{Gen: 6, Members: [3]ID{a}}, true) }, Stamp{Gen: 6, Members: [3]ID{a}}},
		{"zero keeps newer", func() error { return s.ZeroStamped(ctx, k, 1, Stamp{Gen: 6, Members: [3]ID{b}}, 0, 10, false) }, Stamp{Gen: 6, Members: [3]ID{a}}},
		{"zero raises", func() error {
			return s.ZeroStamped(ctx, k, 1, Stamp{Gen: 7, Members: [3]ID{b}}, BlockSize, BlockSize, false)
		}, Stamp{Gen: 7, Members: [3]ID{b}}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		info, ok := s.Info(k)
		if !ok {
			t.Fatalf("%s: chunk gone", st.name)
		}
		if diff := cmp.Diff(st.want, info.Stamp); diff != "" {
			t.Fatalf("%s: stamp (-want +got):\n%s", st.name, diff)
		}
	}
	if err := s.SetStamp(ctx, ChunkKey{VSD: ID{1}, Extent: 99}, 1, Stamp{Gen: 9}, false); err != nil {
		t.Fatalf("stamp of an absent chunk: %v", err)
	}
	if _, ok := s.Info(ChunkKey{VSD: ID{1}, Extent: 99}); ok {
		t.Fatal("stamping an absent chunk created it")
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := reopen(t, path, dopts)
	defer s2.Close()
	info, _ := s2.Info(k)
	if diff := cmp.Diff(Stamp{Gen: 7, Members: [3]ID{b}}, info.Stamp); diff != "" {
		t.Fatalf("stamp after reopen (-want +got):\n%s", diff)
	}
	if err := s2.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFence(t *testing.T) { onDevices(t, testFence) }

func testFence(t *testing.T, dopts FileOptions) {
	_, s := openStore(t, 32<<20, dopts)
	ctx := context.Background()
	vsd := ID{2}
	k0, k1 := ChunkKey{VSD: vsd, Extent: 0}, ChunkKey{VSD: vsd, Extent: 1}
	other := ChunkKey{VSD: ID{3}, Extent: 0}
	for _, k := range []ChunkKey{k0, other} {
		if err := s.Write(ctx, k, 1, 0, []byte("old"), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Fence(ctx, vsd, 2); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"overwrite": s.Write(ctx, k0, 1, 0, []byte("stale"), false),
		"allocate":  s.Write(ctx, k1, 1, 0, []byte("stale"), false),
		"stamp":     s.SetStamp(ctx, k0, 1, Stamp{Gen: 1}, false),
		"refence":   s.Fence(ctx, vsd, 1),
	} {
		if !errors.Is(err, ErrStaleEpoch) {
			t.Errorf("%s at the old epoch after a fence: %v, want ErrStaleEpoch", name, err)
		}
	}
	if info, _ := s.Info(k0); info.Epoch != 2 {
		t.Errorf("fenced chunk at epoch %d, want 2", info.Epoch)
	}
	if _, ok := s.Info(k1); ok {
		t.Error("a refused allocation left a chunk")
	}
	if err := s.Write(ctx, other, 1, 0, []byte("fine"), false); err != nil {
		t.Errorf("another VSD is not fenced: %v", err)
	}
	if err := s.Write(ctx, k1, 2, 0, []byte("new"), false); err != nil {
		t.Errorf("write at the fence epoch: %v", err)
	}
}
