package vmcluster

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"log/slog"
)

// TestSwitchDaemon runs the switch daemon without DHCP or API forward (no
// root needed), plays two guests' NICs and drives faults through the
// control socket as other processes do.
func TestSwitchDaemon(t *testing.T) {
	dir, err := os.MkdirTemp("", "shv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st := &State{Dir: dir, Tag: "abcdef", Slots: 2, Nodes: []NodeState{
		{Name: "node1", Slot: 1, MACs: []string{macFor(1, 0), macFor(1, 1)}},
		{Name: "node2", Slot: 2, MACs: []string{macFor(2, 0), macFor(2, 1)}},
	}}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	var serveErr error
	go func() {
		defer wg.Done()
		serveErr = ServeSwitch(ctx, dir, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if serveErr != nil {
			t.Errorf("ServeSwitch: %v", serveErr)
		}
	})
	for i := 0; ; i++ {
		if _, err := control(ctx, dir, ctlRequest{Op: "ping"}); err == nil {
			break
		} else if i > 200 {
			t.Fatalf("switch daemon never answered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := &Cluster{st: st, opts: Options{}.withDefaults()}

	// Each "guest" binds the QEMU side of its first NIC's port.
	nic := func(slot int) *net.UnixConn {
		p := filepath.Join(dir, "sw", portName(slot, 0)+".sock")
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	a, b := nic(1), nic(2)
	swOf := func(slot int) *net.UnixAddr {
		return &net.UnixAddr{Name: filepath.Join(dir, "sw", "sw-"+portName(slot, 0)+".sock"), Net: "unixgram"}
	}
	frame := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x5a, 1, 0, 0x88, 0xb5}, "hi"...)
	// passes sends a broadcast from node1 and says whether node2 got it.
	passes := func() bool {
		t.Helper()
		if _, err := a.WriteToUnix(frame, swOf(1)); err != nil {
			t.Fatal(err)
		}
		b.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 100)
		n, _, err := b.ReadFromUnix(buf)
		return err == nil && string(buf[14:n]) == "hi"
	}
	if !passes() {
		t.Fatal("a broadcast does not pass the switch")
	}
	if err := c.Partition(ctx, []string{"node1"}, []string{"node2"}); err != nil {
		t.Fatal(err)
	}
	if passes() {
		t.Error("a frame crossed the partition")
	}
	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if !passes() {
		t.Error("frames do not pass after heal")
	}
	if err := c.Drop(ctx, "node2", true); err != nil {
		t.Fatal(err)
	}
	if passes() {
		t.Error("a frame reached a node whose ports drop")
	}
	if err := c.Delay(ctx, "node1", 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	rep, err := control(ctx, dir, ctlRequest{Op: "stats"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]PortStats{}
	for n, s := range rep.Stats {
		got[n] = PortStats{Down: s.Down, Group: s.Group, Delay: s.Delay}
	}
	want := map[string]PortStats{
		"s1-0": {Delay: 5 * time.Millisecond}, "s1-1": {Delay: 5 * time.Millisecond},
		"s2-0": {Down: true}, "s2-1": {Down: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("port states (-want +got)\n%s", diff)
	}
	if rep.Stats["s2-0"].Dropped == 0 {
		t.Errorf("port s2-0 counted no drops: %+v", rep.Stats["s2-0"])
	}
	if _, err := control(ctx, dir, ctlRequest{Op: "down", Ports: []string{"s9-0"}}); err == nil {
		t.Error("a fault on a port that does not exist was accepted")
	}
	if err := c.Partition(ctx, []string{"node1"}, []string{"node7"}); err == nil {
		t.Error("a partition naming an unknown node was accepted")
	}
}
