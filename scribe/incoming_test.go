package scribe_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
	"github.com/shoal-hci/shoal/scribe/internal/patterncheck"
)

// TestIncoming is the hand-over of a VSD in a live migration: node 0
// (the source) has it open; node 1 (the destination) serves
// NAME@incoming without claiming it: reads before the hand-over see the
// source's data, a write waits; once the claim names node 1 at the next
// epoch (the source's switchover hook claims it), node 1 opens the VSD
// at that epoch, the write completes, and the source's writes are
// refused; it does so without any request too. A hand-over that never
// comes fails the waiting request (EIO).
func TestIncoming(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three peers and three scribes")
	}
	nodes := newCluster(t)
	src, dst := nodes[0], nodes[1]
	createVSD(t, src.peer.Client, "mig", 16<<20, 2)
	c0 := dial(t, src, "mig")
	const blocks = 64 // of 64 KiB: 4 MiB
	ck, err := patterncheck.New(patterncheck.Config{BlockSize: 64 << 10, Blocks: blocks, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	writeSome(t, ck, c0, 0, blocks)
	before, err := src.peer.Client.GetClaim(t.Context(), scribe.ClaimResource("mig"))
	if err != nil {
		t.Fatal(err)
	}

	// The plain name is still refused on the destination while the
	// source has it open; the incoming name is answered.
	if c, err := nbd.Dial(t.Context(), "unix", dst.sock, "mig"); err == nil {
		c.Close()
		t.Fatal("node 1 opened mig while node 0 has it open")
	}
	cin := dial(t, dst, scribe.IncomingExport("mig"))
	if cin.Size() != 16<<20 {
		t.Fatalf("incoming export size %d, want %d", cin.Size(), 16<<20)
	}
	if err := ck.Verify(cin); err != nil {
		t.Fatalf("read through the incoming export before the hand-over: %v", err)
	}
	if now, err := src.peer.Client.GetClaim(t.Context(), scribe.ClaimResource("mig")); err != nil || now.Epoch != before.Epoch || now.Holder != src.peer.ID() {
		t.Fatalf("claim after reads through the incoming export: %+v, %v; want %+v unchanged", now, err, before)
	}

	// A write waits for the hand-over.
	block := make([]byte, 64<<10)
	block[0] = 0x5a
	wrote := make(chan error, 1)
	go func() { wrote <- cin.WriteAt(block, 0, true) }()
	select {
	case err := <-wrote:
		t.Fatalf("write through the incoming export returned before the hand-over: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := c0.WriteAt(block, 64<<10, true); err != nil {
		t.Fatalf("the source writes on while the destination waits: %v", err)
	}
	handOver(t, src, dst, "mig", before.Epoch)
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("write after the hand-over: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("write through the incoming export still waiting 30 s after the hand-over")
	}
	got := make([]byte, 64<<10)
	if err := cin.ReadAt(got, 64<<10); err != nil || string(got) != string(block) {
		t.Fatalf("the source's last write before the hand-over does not read back on the destination (err %v)", err)
	}
	if err := c0.WriteAt(block, 0, true); !nbd.IsRemote(err, 1) { // EPERM
		t.Fatalf("write by the source after the hand-over: %v, want EPERM", err)
	}
	waitOwner(t, src, "mig", dst, before.Epoch+1)
	// Another session of the plain name on the destination shares the open.
	c1 := dial(t, dst, "mig")
	if err := c1.ReadAt(got, 0); err != nil || got[0] != 0x5a {
		t.Fatalf("plain session on the new owner: read %#x, %v", got[0], err)
	}
	if now, err := src.peer.Client.GetClaim(t.Context(), scribe.ClaimResource("mig")); err != nil || now.Epoch != before.Epoch+1 {
		t.Fatalf("claim after the hand-over: %+v, %v; want epoch %d (no extra round)", now, err, before.Epoch+1)
	}

	// Without any request, the destination opens the VSD as soon as the
	// claim moves: the status names it, the source is fenced.
	createVSD(t, src.peer.Client, "idle", 8<<20, 2)
	ci := dial(t, src, "idle")
	if err := ci.WriteAt(block, 0, true); err != nil {
		t.Fatal(err)
	}
	dial(t, dst, scribe.IncomingExport("idle"))
	idle, err := src.peer.Client.GetClaim(t.Context(), scribe.ClaimResource("idle"))
	if err != nil {
		t.Fatal(err)
	}
	handOver(t, src, dst, "idle", idle.Epoch)
	// No request was made on the incoming session.
	waitOwner(t, src, "idle", dst, idle.Epoch+1)
	if err := ci.WriteAt(block, 0, true); !nbd.IsRemote(err, 1) { // EPERM
		t.Fatalf("write by the source after an idle hand-over: %v, want EPERM", err)
	}

	// No hand-over: the waiting request fails with EIO.
	defer scribe.SetIncomingTiming(time.Second, 50*time.Millisecond)()
	createVSD(t, src.peer.Client, "stay", 8<<20, 2)
	if err := dial(t, src, "stay").WriteAt(block, 0, true); err != nil {
		t.Fatal(err)
	}
	cs := dial(t, nodes[2], scribe.IncomingExport("stay"))
	if err := cs.Flush(); !nbd.IsRemote(err, 5) {
		t.Fatalf("flush with no hand-over: %v, want EIO", err)
	}
	for _, bad := range []string{"nope@incoming", "stay@incoming@incoming", "@incoming", "Stay@incoming"} {
		if c, err := nbd.Dial(t.Context(), "unix", dst.sock, bad); err == nil {
			c.Close()
			t.Errorf("dial %q succeeded", bad)
		}
	}
}

// handOver claims VSD name at epoch+1 for node to, from node from, as the
// source's switchover hook does.
func handOver(t *testing.T, from, to *node, name string, epoch uint64) {
	t.Helper()
	req := client.ClaimRequest{Resource: scribe.ClaimResource(name), Epoch: epoch + 1, Holder: to.peer.ID()}
	if _, err := from.peer.Client.Claim(t.Context(), req); err != nil {
		t.Fatal(err)
	}
}

// waitOwner waits until the status of VSD name, read on node on, names
// owner at epoch.
func waitOwner(t *testing.T, on *node, name string, owner *node, epoch uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s served at epoch %d by node %s in its status", name, epoch, owner.peer.ID()), func() (bool, string) {
		rec, err := on.peer.Client.GetState(t.Context(), scribe.VSDStatusPrefix+name)
		if err != nil {
			return false, err.Error()
		}
		st := scribe.ParseVSDStatus(rec)
		return st.Owner == owner.peer.ID() && st.Epoch == epoch, fmt.Sprintf("%+v", st)
	})
}
