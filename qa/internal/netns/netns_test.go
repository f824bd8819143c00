package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, tool := range []string{"ip", "nft", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

// ping reports whether from reaches addr within a second.
func ping(tag, from, addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Run(ctx, "ip", "netns", "exec", NodeName(tag, from), "ping", "-c1", "-W1", addr)
	return err == nil
}

// deleteTag deletes the namespaces of the switch and nodes tagged tag.
func deleteTag(t *testing.T, ctx context.Context, tag string) {
	t.Helper()
	names, _ := List(ctx, Prefix+tag+"-")
	for _, n := range names {
		if err := Delete(ctx, n); err != nil {
			t.Error(err)
		}
	}
}

func TestFastSwitchCablePartition(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	tag := fmt.Sprintf("t%d", os.Getpid()%100000)
	t.Cleanup(func() {
		deleteTag(t, ctx, tag)
		if left, _ := List(ctx, Prefix+tag+"-"); len(left) > 0 {
			t.Errorf("namespaces left: %v", left)
		}
	})
	if err := CreateSwitch(ctx, tag, "10.89.0.1/24"); err != nil {
		t.Fatal(err)
	}
	for i, n := range []string{"a", "b"} {
		if err := AddNode(ctx, tag, n, fmt.Sprintf("10.89.0.%d/24", 11+i), fmt.Sprintf("fd53:686f:616c::%d/64", 11+i)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := NodeIfaceInfo(ctx, tag, "b")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node b: %+v", b)
	var ll string
	for _, a := range b.Addrs {
		if len(a) > 4 && a[:4] == "fe80" {
			ll = a + "%" + NodeIface
		}
	}
	if ll == "" {
		t.Fatalf("node b has no link-local address: %v", b.Addrs)
	}
	for _, dst := range []string{"10.89.0.12", "fd53:686f:616c::12", ll, "10.89.0.1"} {
		if !ping(tag, "a", dst) {
			t.Errorf("a cannot ping %s", dst)
		}
	}

	if err := SetCable(ctx, tag, "b", false); err != nil {
		t.Fatal(err)
	}
	if up, err := CableUp(ctx, tag, "b"); err != nil || up {
		t.Errorf("CableUp after pull = %v, %v", up, err)
	}
	if ping(tag, "a", "10.89.0.12") {
		t.Error("a reaches b with b's cable pulled")
	}
	if err := SetCable(ctx, tag, "b", true); err != nil {
		t.Fatal(err)
	}
	if !ping(tag, "a", "10.89.0.12") {
		t.Error("a cannot reach b after the cable is back")
	}

	a, err := NodeIfaceInfo(ctx, tag, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := Isolate(ctx, tag, "a", []Iface{b}); err != nil {
		t.Fatal(err)
	}
	if err := Isolate(ctx, tag, "b", []Iface{a}); err != nil {
		t.Fatal(err)
	}
	if on, err := Isolated(ctx, tag, "a"); err != nil || !on {
		t.Errorf("Isolated(a) = %v, %v", on, err)
	}
	for _, dst := range []string{"10.89.0.12", "fd53:686f:616c::12", ll} {
		if ping(tag, "a", dst) {
			t.Errorf("a reaches %s across the partition", dst)
		}
	}
	if !ping(tag, "a", "10.89.0.1") {
		t.Error("partition of a from b also cut a from the switch")
	}
	for _, n := range []string{"a", "b"} {
		if err := Unisolate(ctx, tag, n); err != nil {
			t.Fatal(err)
		}
	}
	if !ping(tag, "a", "fd53:686f:616c::12") {
		t.Error("a cannot reach b after heal")
	}
}

// TestNodeIfaceInfoBridged: when netd has made eth0 a port of its LAN
// bridge, the node's addresses sit on the bridge, and NodeIfaceInfo
// reports them with eth0's MAC.
func TestNodeIfaceInfoBridged(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	tag := fmt.Sprintf("b%d", os.Getpid()%100000)
	t.Cleanup(func() { deleteTag(t, ctx, tag) })
	if err := CreateSwitch(ctx, tag, "10.88.0.1/24"); err != nil {
		t.Fatal(err)
	}
	if err := AddNode(ctx, tag, "a"); err != nil {
		t.Fatal(err)
	}
	before, err := NodeIfaceInfo(ctx, tag, "a")
	if err != nil {
		t.Fatal(err)
	}
	ns := NodeName(tag, "a")
	for _, args := range [][]string{
		{"link", "add", "br-lan", "type", "bridge"},
		{"link", "set", "br-lan", "address", before.MAC},
		{"link", "set", NodeIface, "master", "br-lan"},
		{"addr", "add", "10.88.0.21/24", "dev", "br-lan"},
		{"link", "set", "br-lan", "up"},
	} {
		if _, err := Run(ctx, "ip", append([]string{"-n", ns}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	got, err := NodeIfaceInfo(ctx, tag, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.MAC != before.MAC {
		t.Errorf("MAC = %s, want eth0's %s", got.MAC, before.MAC)
	}
	if !slices.Contains(got.Addrs, "10.88.0.21") {
		t.Errorf("addresses %v lack the bridge's 10.88.0.21", got.Addrs)
	}
}
