package replvol_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

func TestConfigValidate(t *testing.T) {
	c := newCluster(t, 1)
	good := replvol.Config{VSD: vsdID, Size: mib, Pool: c.Pool("")}
	tests := map[string]func(*replvol.Config){
		"zero VSD":       func(c *replvol.Config) { c.VSD = chunkstore.ID{} },
		"no size":        func(c *replvol.Config) { c.Size = 0 },
		"4 replicas":     func(c *replvol.Config) { c.Replicas = 4 },
		"no pool":        func(c *replvol.Config) { c.Pool = nil },
		"negative delay": func(c *replvol.Config) { c.Timeout = -1 },
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, mutate := range tests {
		cfg := good
		mutate(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
		if _, err := replvol.Open(context.Background(), cfg); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	if got := replvol.DefaultConfig(); got.Replicas != 2 || got.Timeout == 0 {
		t.Errorf("defaults %+v", got)
	}
}

// TestReplicaCounts writes and reads through 1, 2 and 3 replicas on a
// 3-node cluster and checks each extent's copies sit on distinct nodes.
func TestReplicaCounts(t *testing.T) {
	for _, n := range []int{1, 2, 3} {
		t.Run(string(rune('0'+n)), func(t *testing.T) {
			c := newCluster(t, 3)
			v, err := replvol.Open(context.Background(), replvol.Config{VSD: vsdID, Size: 8 * mib, Replicas: n, Epoch: 1, Pool: c.Pool("node1"), LocalNode: "node1", Log: quiet})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			data := bytes.Repeat([]byte{byte(n)}, 3*mib)
			if err := v.WriteAt(context.Background(), data, mib/2, true); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(data))
			if err := v.ReadAt(context.Background(), got, mib/2); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back: err %v, equal %v", err, bytes.Equal(got, data))
			}
			for e := range uint64(4) {
				if hs := holders(c, e); len(hs) != n {
					t.Errorf("extent %d on nodes %v, want %d distinct", e, hs, n)
				}
			}
			if st := v.Status(); st.Extents != 4 || len(st.Degraded) != 0 || st.BytesUsed != int64(n)*3*mib {
				t.Errorf("status %+v, want 4 extents, none degraded, %d bytes", st, n*3*mib)
			}
		})
	}
}

// TestOpenRefusedWithTooManyNodesDown: with two of three nodes down some
// extents may have no visible copy at all, so Open refuses rather than
// serve them as holes.
func TestOpenRefusedWithTooManyNodesDown(t *testing.T) {
	c := newCluster(t, 3)
	v := open(t, c.Pool("node1"), 1, "node1")
	if err := v.WriteAt(context.Background(), []byte("data"), 0, true); err != nil {
		t.Fatal(err)
	}
	v.Close()
	for _, n := range []string{"node2", "node3"} {
		if err := c.Stop(n); err != nil {
			t.Fatal(err)
		}
	}
	_, err := replvol.Open(context.Background(), replvol.Config{VSD: vsdID, Size: volume, Epoch: 2, Pool: c.Pool("node1"), Log: quiet})
	if !errors.Is(err, replvol.ErrTooFewNodes) {
		t.Fatalf("open with 2 of 3 nodes down: %v, want ErrTooFewNodes", err)
	}
}

// TestCheckFindsDivergentReplicas: a replica changed behind the Volume's
// back is reported.
func TestCheckFindsDivergentReplicas(t *testing.T) {
	c := newCluster(t, 3)
	ctx := context.Background()
	v, err := replvol.Open(ctx, replvol.Config{VSD: vsdID, Size: volume, Epoch: 1, Pool: c.Pool(""), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), 0, false); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(ctx); err != nil {
		t.Fatalf("check of a healthy volume: %v", err)
	}
	key := chunkstore.ChunkKey{VSD: vsdID, Extent: 0}
	s := c.Stores(holders(c, 0)[0])[0]
	info, _ := s.Info(key)
	if err := s.WriteStamped(ctx, key, 1, info.Stamp, 0, []byte("diverged"), false); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(ctx); err == nil {
		t.Fatal("check missed a replica holding other data")
	}
	// Put it back so the cluster's own check stays clean.
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), 0, false); err != nil {
		t.Fatal(err)
	}
}
