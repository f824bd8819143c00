package disks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

var (
	node    = chunkstore.ID{1}
	cluster = chunkstore.ID{2}
)

// sparse makes a 64 MiB sparse file; junk, when set, is written at 0.
func sparse(t *testing.T, path string, junk []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if junk != nil {
		if _, err := f.WriteAt(junk, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// formatAs formats path as a store of another node/cluster.
func formatAs(t *testing.T, path string, nodeID, clusterID chunkstore.ID) {
	t.Helper()
	dev, err := chunkstore.OpenFile(path, chunkstore.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if _, err := chunkstore.Format(dev, chunkstore.FormatOptions{NodeID: nodeID, ClusterID: clusterID}); err != nil {
		t.Fatal(err)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	sparse(t, p("disk1"), nil)                        // blank: formatted
	sparse(t, p("disk2"), nil)                        // ours already
	formatAs(t, p("disk2"), node, cluster)            //
	sparse(t, p("disk3"), []byte("ext4 or whatever")) // foreign data: left alone
	sparse(t, p("disk4"), nil)                        // other cluster's store: left alone
	formatAs(t, p("disk4"), node, chunkstore.ID{9})   //
	sparse(t, p("disk5"), []byte("forced"))           // foreign data, but forced
	sparse(t, p("other"), nil)                        // not matched by the glob

	cfg := Config{Globs: []string{p("disk*")}, NodeID: node, ClusterID: cluster, ForceFormat: []string{p("disk5")}, Buffered: true}
	ds, probs, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range ds {
			if err := d.Store.Check(context.Background()); err != nil {
				t.Errorf("Check %s: %v", d.Path, err)
			}
			d.Close()
		}
	})
	type row struct {
		Path      string
		Formatted bool
	}
	var got []row
	for _, d := range ds {
		got = append(got, row{filepath.Base(d.Path), d.Formatted})
		sb := d.Store.Superblock()
		if sb.NodeID != node || sb.ClusterID != cluster {
			t.Errorf("%s: superblock node %s cluster %s", d.Path, sb.NodeID, sb.ClusterID)
		}
		if d.Free() != d.Size() || d.Size() <= 0 {
			t.Errorf("%s: free %d size %d, want equal and positive", d.Path, d.Free(), d.Size())
		}
	}
	want := []row{{"disk1", true}, {"disk2", false}, {"disk5", true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("disks opened (-want +got):\n%s", diff)
	}
	if len(probs) != 2 || probs[0].Path != p("disk3") || !errors.Is(probs[0].Err, chunkstore.ErrForeignData) ||
		probs[1].Path != p("disk4") || !errors.Is(probs[1].Err, ErrForeignStore) {
		t.Errorf("problems = %v, want disk3 foreign data, disk4 foreign store", probs)
	}

	// Opening again formats nothing and finds the same disks.
	for _, d := range ds {
		d.Close()
	}
	ds2, _, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ds2 {
		if d.ID() != ds[i].ID() || d.Formatted {
			t.Errorf("reopen %s: id %s formatted %v, was %s", d.Path, d.ID(), d.Formatted, ds[i].ID())
		}
	}
	ds = ds2

	if _, _, err := Open(context.Background(), Config{Globs: []string{p("x")}}); err == nil {
		t.Error("Open without node and cluster IDs succeeded")
	}
}

func TestBlockDevices(t *testing.T) {
	root := t.TempDir()
	write := func(rel, s string) {
		t.Helper()
		path := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(rel string) {
		if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("sys/block/sda/size", "1000\n") // boot disk: partitions, sda2 mounted
	write("sys/block/sda/sda1/partition", "1\n")
	write("sys/block/sda/sda2/partition", "2\n")
	write("sys/block/sdb/size", "2000\n") // a blank data disk
	mkdir("sys/block/sdb/holders")
	write("sys/block/nvme0n1/size", "3000\n") // another
	write("sys/block/sdc/size", "0\n")        // no medium
	write("sys/block/loop0/size", "10\n")     // virtual
	write("sys/block/vdb/size", "10\n")       // held by device-mapper
	mkdir("sys/block/vdb/holders/dm-0")
	write("sys/block/vdc/size", "10\n") // whole-disk swap
	write("proc/self/mountinfo", "22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw\n23 22 0:5 / /proc rw - proc proc rw\n")
	write("proc/swaps", "Filename Type Size Used Priority\n/dev/vdc partition 10 0 -2\n")

	got, err := Discover(Config{SysRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/dev/nvme0n1", "/dev/sdb"}, got); diff != "" {
		t.Errorf("block devices (-want +got):\n%s", diff)
	}
}
